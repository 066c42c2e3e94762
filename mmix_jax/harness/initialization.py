"""A run's TrainState: built once under jit straight onto the mesh, or only shaped (the restore
target), from one pure builder, so a fresh start and a resume agree on the state's structure."""

from __future__ import annotations

from typing import Any, Callable, Union

import jax
import jax.numpy as jnp

from mmix_jax import parallel
from mmix_jax.data.datasets import SemiSupervisedBatches, TrainBatches
from mmix_jax.harness.checkpoint import abstract_like
from mmix_jax.harness.configuration import RunSpec
from mmix_jax.optim import make_optimizer
from mmix_jax.state import TrainState, create_train_state, with_teacher

Batches = Union[TrainBatches, SemiSupervisedBatches]


def state_builder(spec: RunSpec, batches: Batches
                  ) -> tuple[Callable[[jax.Array], TrainState], Any]:
    """(init_key ↦ a fresh TrainState with the paper's SGD and a mean teacher where the run uses
    one, the learning-rate schedule per step). Pure, so it is jitted straight onto the mesh
    (`initial_state`) or only shaped (`abstract_state`)."""
    tx, schedule = make_optimizer(spec.optimizer, batches.steps_per_epoch)
    example = batches[0]
    example = example.get("labeled", example)
    sample_input = jnp.zeros(example["image"].shape, jnp.float32)
    model = spec.model.build(spec.num_classes)
    uses_teacher = spec.semi_supervised is not None and spec.semi_supervised.spec.uses_teacher

    def build(init_key: jax.Array) -> TrainState:
        state = create_train_state(model, tx, init_key, sample_input, init=spec.model.init)
        return with_teacher(state) if uses_teacher else state

    return build, schedule


def abstract_state(build: Callable[[jax.Array], TrainState], mesh: jax.sharding.Mesh) -> Any:
    """The state's shapes, replicated on `mesh`, without computing it: the restore target."""
    return abstract_like(jax.eval_shape(build, jax.random.key(0)), parallel.replicated(mesh))


def initial_state(build: Callable[[jax.Array], TrainState], init_key: jax.Array,
                  mesh: jax.sharding.Mesh) -> TrainState:
    """The fresh state, computed once under jit straight into its replicated placement."""
    return jax.jit(build, out_shardings=parallel.replicated(mesh))(init_key)


__all__ = ["abstract_state", "initial_state", "state_builder"]
