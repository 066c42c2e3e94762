"""The paper's optimizer through optax: SGD, Nesterov momentum, L2 weight decay, step schedule.

PyTorch's SGD adds `weight_decay · w` to the gradient before the momentum buffer; the chain
add_decayed_weights → sgd(momentum, nesterov) does the same, and optax's Nesterov trace equals
PyTorch's (buffer = μ·buffer + g; update = g + μ·buffer; w −= lr·update).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import optax


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """SGD with (Nesterov) momentum and L2 decay; lr × decay_factor at each milestone epoch."""

    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = ()
    decay_factor: float = 0.1


def step_schedule(learning_rate: float, milestones: Sequence[int],
                  decay_factor: float) -> optax.Schedule:
    """`learning_rate`, multiplied by `decay_factor` from each milestone step on."""
    boundaries: dict[int, float] = {}
    for step in milestones:  # repeated milestones multiply
        boundaries[int(step)] = boundaries.get(int(step), 1.0) * decay_factor
    return optax.piecewise_constant_schedule(learning_rate, boundaries)


def paper_sgd(schedule: optax.Schedule, *, momentum: float = 0.9, nesterov: bool = True,
              weight_decay: float = 1e-4) -> optax.GradientTransformation:
    """SGD with (Nesterov) momentum and coupled L2 weight decay on every parameter, as in the paper."""
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov))


def make_optimizer(spec: OptimizerSpec, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimiser of `spec` and its learning-rate schedule, both per step."""
    schedule = step_schedule(spec.learning_rate, [m * steps_per_epoch for m in spec.milestones],
                             spec.decay_factor)
    return paper_sgd(schedule, momentum=spec.momentum, nesterov=spec.nesterov,
                     weight_decay=spec.weight_decay), schedule
