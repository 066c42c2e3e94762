"""Manifold Mixup for Flax NNX models: `mixable(model, points)`, `mixup_loss`, `mixup_step`.

    model = mmix_jax.nnx.mixable(MyCNN(rngs=nnx.Rngs(0)), points=("conv1", "blocks/0"))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    metrics = mmix_jax.nnx.mixup_step(model, optimizer, batch, rng, config=spec)

`mixable` returns the same model object with mix points: 0 = its input, i = the output of the
submodule at `points[i − 1]` (paths as `nnx.iter_modules` gives them, joined by "/"). It changes
no variable and no structure: the model's class and those of the named submodules are swapped
for subclasses whose `__call__` mixes (NNX's counterpart of Linen's method interception), so
`nnx.state(model)` and checkpoints are exactly the original's. The draw (k, perm, λ) reaches the
submodules through a context set for the duration of one forward pass, and a traced k is a
select (no control flow), so `mixup_step` under `nnx.jit` compiles once for every k.

Saving: the swapped-in classes are made at run time, so a mixable model does not pickle. Its
state is the original model's, so save `nnx.state(model)` (e.g. with Orbax's
`StandardCheckpointer`) and restore it with `nnx.update` into `mixable(YourModel(...), points)`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mmix_jax.errors import MixPointError
from mmix_jax.losses import get_loss
from mmix_jax.mixup import (
    MixDraw,
    MixSpec,
    check_mix_args,
    check_mix_points,
    maybe_mix,
    mix_targets,
    recording_mix_points,
    requested_points,
    sample_mix,
)
from mmix_jax.step import check_batch, check_label_range, check_logits, stream_keys


@dataclasses.dataclass
class _Pass:
    """The draw of the forward pass under way, and how often each point ran in it."""

    mix_layer: Optional[jax.Array]
    perm: Optional[jax.Array]
    lam: Optional[jax.Array]
    batch: int
    shapes: dict[int, list[tuple[int, ...]]]  # each point's variable shapes in the model
    calls: dict[int, int] = dataclasses.field(default_factory=dict)


def _variable_shapes(module: nnx.Module) -> list[tuple[int, ...]]:
    return [tuple(leaf.shape) for leaf in jax.tree.leaves(nnx.state(module))]


_CURRENT: contextvars.ContextVar[Optional[_Pass]] = contextvars.ContextVar("mmix_pass",
                                                                           default=None)


@functools.cache  # one class per (class, point, path): identical models share a compiled step
def _point_class(cls: type, point: int, path: str) -> type:
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = cls.__call__(self, *args, **kwargs)
        current = _CURRENT.get()
        if current is None:
            return out
        current.calls[point] = current.calls.get(point, 0) + 1
        if _variable_shapes(self) != current.shapes[point]:
            raise MixPointError(
                f"mix point {path!r} runs inside an NNX transform that slices its variables "
                "(nnx.scan or nnx.vmap over stacked layers): it would be mixed once per layer. "
                "Name a submodule outside the stack, or the module that runs the scan.")
        if current.calls[point] > 1:
            raise MixPointError(f"mix point {path!r} was called {current.calls[point]} times in "
                                "one forward pass (a shared submodule): name one used once.")
        if not isinstance(out, jax.Array) or out.ndim == 0 or out.shape[0] != current.batch:
            shape = getattr(out, "shape", type(out).__name__)
            raise MixPointError(f"mix point {path!r} returns {shape}, not a batch-major array "
                                f"[{current.batch}, ...]: name a submodule whose output is the "
                                "hidden state.")
        return maybe_mix(out, point, current.mix_layer, current.perm, current.lam)

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})


@functools.cache
def _model_class(cls: type, points: tuple[str, ...]) -> type:
    def __call__(self, x: jax.Array, *args: Any, mix_layer: Optional[jax.Array] = None,
                 perm: Optional[jax.Array] = None, lam: Optional[jax.Array] = None,
                 **kwargs: Any) -> Any:
        check_mix_args(x, mix_layer, perm, lam)
        modules = {"/".join(map(str, path)): module for path, module in nnx.iter_modules(self)}
        shapes = {i: _variable_shapes(modules[path]) for i, path in enumerate(points, 1)}
        current = _Pass(mix_layer, perm, lam, x.shape[0], shapes)
        token = _CURRENT.set(current)
        try:
            with recording_mix_points() as visited:
                out = cls.__call__(self, maybe_mix(x, 0, mix_layer, perm, lam), *args, **kwargs)
        finally:
            _CURRENT.reset(token)
        missing = [p for i, p in enumerate(points, 1) if i not in current.calls]
        if missing:
            raise MixPointError(f"mix point(s) {missing} were not called in the forward pass.")
        check_mix_points(requested_points(mix_layer), visited, self)
        return out

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                       "num_mix_points": len(points) + 1})


def mixable(model: nnx.Module, points: Sequence[str]) -> nnx.Module:
    """`model` itself, now taking mix_layer / perm / lam (module docstring)."""
    if isinstance(points, str):
        raise MixPointError(f"points = {points!r}: give a sequence of paths, e.g. ({points!r},).")
    if hasattr(type(model), "num_mix_points"):
        raise MixPointError(f"{type(model).__name__} already has mix points.")
    modules = {"/".join(map(str, path)): module for path, module in nnx.iter_modules(model)
               if path}
    missing = [p for p in points if p not in modules]
    if missing:
        raise MixPointError(f"mix point(s) {missing} are not submodules of "
                            f"{type(model).__name__}; its submodule paths are: {sorted(modules)}.")
    for point, path in enumerate(points, 1):
        modules[path].__class__ = _point_class(type(modules[path]), point, path)
    model.__class__ = _model_class(type(model), tuple(points))
    return model


def mixup_loss(model: nnx.Module, images: jax.Array, labels: jax.Array, draw: MixDraw, *,
               config: MixSpec) -> tuple[jax.Array, jax.Array]:
    """(loss, logits) of the mixed forward pass for a given draw: differentiate it w.r.t. the
    model in your own NNX step (`nnx.value_and_grad(..., has_aux=True)`)."""
    one_hot = jax.nn.one_hot(labels, config.num_classes, dtype=jnp.float32)
    if not config.mixes:
        logits = model(images)
        check_logits(logits, labels, config)
        return get_loss(config.loss)(logits, one_hot), logits
    with recording_mix_points() as visited:
        logits = model(images, **draw.model_kwargs(config.mix_layers, config.mixing))
    check_mix_points(config.mix_layers, visited, model)  # while tracing: no run-time cost
    check_logits(logits, labels, config)
    return get_loss(config.loss)(logits, mix_targets(one_hot, draw.perm, draw.lam)), logits


def model_stream_keys(model: nnx.Module, rng: jax.Array) -> dict[str, jax.Array]:
    """A key from `rng` for every RNG stream the model's layers draw from: "dropout" gets `rng`
    itself, any other stream (e.g. "default", when the model was built with `nnx.Rngs(0)`)
    `rng` folded with a hash of its name, so every stochastic layer follows the step's key."""
    tags = {node.tag for _, node in nnx.iter_graph(model) if isinstance(node, nnx.RngStream)}
    return stream_keys(tuple(sorted(tags | {"dropout"})), rng)


@functools.partial(nnx.jit, static_argnames=("config",), donate_argnums=(0, 1))
def mixup_step(model: nnx.Module, optimizer: nnx.Optimizer, batch: dict[str, jax.Array],
               rng: jax.Array, *, config: MixSpec) -> dict[str, jax.Array]:
    """One Manifold Mixup update of `model` in place (NNX); returns the step's metrics.

    k, λ, the permutation and dropout all come from `rng` (every RNG stream of the model is
    reseeded from it: `model_stream_keys`), inside the compiled step: one executable for every
    k, and the same (model, batch, rng) give the same update. Model and optimiser state are donated. The model
    should be in training mode (`model.train()`).
    """
    images, labels = check_batch(batch)  # the same checks as the Linen step
    check_label_range(labels, config)
    mix_rng, dropout_rng = jax.random.split(rng)
    # (mypy cannot tell the stream names from reseed's own keywords, graph and policy)
    nnx.reseed(model, **model_stream_keys(model, dropout_rng))  # type: ignore[arg-type]
    draw = sample_mix(mix_rng, labels.shape[0], alpha=config.alpha, mix_layers=config.mix_layers)
    loss_fn = functools.partial(mixup_loss, images=images, labels=labels, draw=draw,
                                config=config)
    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return {"loss": loss, "mixed_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
            "lam": draw.lam, "mix_layer": draw.layer.astype(jnp.float32),
            "grad_norm": optax.tree.norm(grads)}


__all__ = ["mixable", "mixup_loss", "mixup_step"]
