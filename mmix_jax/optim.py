"""The paper's optimizer through optax: SGD, Nesterov momentum, L2 weight decay, step schedule;
or ICT's cosine ramp-down of the learning rate; or, for Vision Transformers, AdamW with
decoupled weight decay on the kernels only and a cosine decay after a linear warm-up.

PyTorch's SGD adds `weight_decay · w` to the gradient before the momentum buffer; the chain
add_decayed_weights → sgd(momentum, nesterov) does the same, and optax's Nesterov trace equals
PyTorch's (buffer = μ·buffer + g; update = g + μ·buffer; w −= lr·update).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """SGD with (Nesterov) momentum and L2 decay. schedule "step": lr × decay_factor at each
    milestone epoch; "cosine": ICT's ramp-down, lr · ½(1 + cos(π·epoch / rampdown_epochs)) with
    the epoch fractional (per update), reaching 0 at `rampdown_epochs` (ICT sets it ~10 % past
    the last epoch, so training ends a little above 0)."""

    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = ()
    decay_factor: float = 0.1
    schedule: str = "step"
    rampdown_epochs: float = 0.0
    warmup_epochs: float = 0.0  # linear warm-up from 0 (Goyal et al. 2017), e.g. 5 on ImageNet
    name: str = "sgd"  # or "adamw": momentum/nesterov unused, b1/b2 used, decay decoupled
    b1: float = 0.9
    b2: float = 0.999


def step_schedule(learning_rate: float, milestones: Sequence[int],
                  decay_factor: float) -> optax.Schedule:
    """`learning_rate`, multiplied by `decay_factor` from each milestone step on."""
    boundaries: dict[int, float] = {}
    for step in milestones:  # repeated milestones multiply
        boundaries[int(step)] = boundaries.get(int(step), 1.0) * decay_factor
    return optax.piecewise_constant_schedule(learning_rate, boundaries)


SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adamw")


def cosine_rampdown_schedule(learning_rate: float, rampdown_steps: int) -> optax.Schedule:
    """ICT's `cosine_rampdown` per update: lr · ½(1 + cos(π·step / rampdown_steps)), 0 after."""
    return optax.cosine_decay_schedule(learning_rate, decay_steps=rampdown_steps, alpha=0.0)


def with_warmup(schedule: optax.Schedule, warmup_steps: int) -> optax.Schedule:
    """`schedule` scaled by (step + 1) / warmup_steps until it reaches 1: the milestones stay at
    their absolute steps (optax.join_schedules would shift them)."""
    def warmed(step):
        return schedule(step) * jnp.minimum(1.0, (step + 1) / max(warmup_steps, 1))
    return warmed


def paper_sgd(schedule: optax.Schedule, *, momentum: float = 0.9, nesterov: bool = True,
              weight_decay: float = 1e-4) -> optax.GradientTransformation:
    """SGD with (Nesterov) momentum and coupled L2 weight decay on every parameter, as in the paper."""
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov))


def kernels_only(params: Any) -> Any:
    """True for each kernel (a weight matrix or filter), False for biases, norms, embeddings."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def adamw(schedule: optax.Schedule, *, b1: float = 0.9, b2: float = 0.999,
          weight_decay: float = 1e-4) -> optax.GradientTransformation:
    """AdamW with decoupled weight decay (scaled by the schedule, as optax does) on kernels only."""
    return optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=kernels_only)


def make_optimizer(spec: OptimizerSpec, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimiser of `spec` and its learning-rate schedule, both per step."""
    if spec.schedule == "cosine":
        schedule = cosine_rampdown_schedule(spec.learning_rate,
                                            round(spec.rampdown_epochs * steps_per_epoch))
    else:
        schedule = step_schedule(spec.learning_rate,
                                 [m * steps_per_epoch for m in spec.milestones],
                                 spec.decay_factor)
    if spec.warmup_epochs > 0:
        schedule = with_warmup(schedule, round(spec.warmup_epochs * steps_per_epoch))
    if spec.name == "adamw":
        return adamw(schedule, b1=spec.b1, b2=spec.b2, weight_decay=spec.weight_decay), schedule
    return paper_sgd(schedule, momentum=spec.momentum, nesterov=spec.nesterov,
                     weight_decay=spec.weight_decay), schedule
