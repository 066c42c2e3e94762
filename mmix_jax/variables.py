"""How the steps talk to a Flax Linen model: its collections, its train flag, its sown losses.

A model's variables are `params` plus any other collections it creates at init (`batch_stats`,
a counter, a cache...): the *model state*, carried by `TrainState.model_state` and updated by
every train step (all of it is passed as mutable). Two collections are not state: `losses` and
`intermediates` are sown afresh by each call. What a model sows into `losses` during the
training pass (e.g. a mixture-of-experts balancing loss) is added to the step's loss.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

LOSS_COLLECTION = "losses"
SOWN_COLLECTIONS = (LOSS_COLLECTION, "intermediates")


def model_state_of(variables: Any) -> dict[str, Any]:
    """The collections of `variables` that a state carries: all but params and sown ones."""
    return {name: value for name, value in dict(variables).items()
            if name != "params" and name not in SOWN_COLLECTIONS}


def mode_kwargs(module: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The steps' `train=` in the model's own terms: passed on if its `__call__` takes `train`
    (or **kwargs), as `deterministic=not train` if it takes flax's usual `deterministic`,
    dropped if it takes neither (a model with one behaviour)."""
    if "train" not in kwargs:
        return kwargs
    parameters = inspect.signature(type(module).__call__).parameters
    if "train" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    kwargs = dict(kwargs)
    train = kwargs.pop("train")
    if "deterministic" in parameters:
        kwargs["deterministic"] = not train
    return kwargs


def train_flag(apply_fn: Callable[..., Any], train: bool) -> dict[str, Any]:
    """`{"train": train}` in the terms of the module behind `apply_fn` (a bound `module.apply`);
    as it is for any other function."""
    module = getattr(apply_fn, "__self__", None)
    if isinstance(module, nn.Module):
        return mode_kwargs(module, {"train": train})
    return {"train": train}


def variables_of(state: Any, params: Any) -> dict[str, Any]:
    """The variables for `state.apply_fn` with `params`: our TrainState's params and
    model_state, or, for any other state with `params` and `apply_fn` (e.g. flax's
    TrainState), params plus its `batch_stats` if it has any."""
    model_state = getattr(state, "model_state", None)
    if model_state is None:
        stats = getattr(state, "batch_stats", None)
        model_state = {"batch_stats": stats} if stats else {}
    return {"params": params, **model_state}


def with_model_state(state: Any, model_state: dict[str, Any]) -> Any:
    """`state` carrying the updated `model_state` (the collections a train pass returned):
    all of it in our TrainState, its batch_stats in any other state (see `variables_of`)."""
    if hasattr(state, "model_state"):
        return state.replace(model_state=model_state)
    if "batch_stats" in model_state:  # a state without model_state passed only its batch_stats
        return state.replace(batch_stats=model_state["batch_stats"])
    return state


def apply_training(apply_fn: Callable[..., Any], variables: dict[str, Any], inputs: jax.Array,
                   *, rngs: Optional[dict[str, jax.Array]], **kwargs: Any
                   ) -> tuple[Any, dict[str, Any], Optional[jax.Array]]:
    """A training pass: (output, updated model state, sum of the sown losses or None).

    Every collection of `variables` but params is mutable, and so is `losses`."""
    state = model_state_of(variables)
    out, updates = apply_fn(variables, inputs, **train_flag(apply_fn, True), rngs=rngs,
                            mutable=[*state, LOSS_COLLECTION], **kwargs)
    updates = dict(updates)
    return out, {name: updates.get(name, value) for name, value in state.items()}, sown_loss(updates)


def sown_loss(updates: dict[str, Any]) -> Optional[jax.Array]:
    """The sum of every value sown into `losses` (None when nothing was: a static fact)."""
    leaves = jax.tree.leaves(updates.get(LOSS_COLLECTION, {}))
    if not leaves:
        return None
    return sum((jnp.sum(leaf.astype(jnp.float32)) for leaf in leaves), jnp.zeros((), jnp.float32))


def mean_over(model_state: Any, axis_name: Optional[str]) -> Any:
    """The model state averaged over `axis_name` (e.g. per-device BatchNorm statistics);
    integer leaves (counters, which every device advances alike) take their maximum."""
    if axis_name is None:
        return model_state
    return jax.tree.map(
        lambda leaf: jax.lax.pmean(leaf, axis_name)
        if jnp.issubdtype(leaf.dtype, jnp.inexact) else jax.lax.pmax(leaf, axis_name),
        model_state)


__all__ = ["LOSS_COLLECTION", "SOWN_COLLECTIONS", "apply_training", "mean_over", "mode_kwargs",
           "model_state_of", "sown_loss", "train_flag", "variables_of", "with_model_state"]
