"""Data parallelism: a mesh over all devices and the steps under `shard_map` inside one `jit`.

The batch is sharded on the "data" axis and the state replicated. Each device runs the step it
is given (`mixup_step`, the semi-supervised step, or a user's own) on its local batch: with
our steps, k and λ come from the shared step key and the permutation from the key folded with
the device's index (no cross-device gather); gradients, BatchNorm running statistics and
metrics are averaged over the axis. One code path serves 1 device, N local
devices and N processes (global arrays built from each process's share).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mmix_jax.models import DATA_AXIS
from mmix_jax.state import TrainState
from mmix_jax.step import Batch, Metrics, eval_step


def make_mesh(devices: Optional[list[jax.Device]] = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process) on the data axis.

    Its axis is of type Auto, as a user's `Mesh(...)` is: arrays placed on it combine with
    arrays on the user's own meshes (`jax.make_mesh` would make it Explicit, which does not).
    The steps only need the axis's name; pass any 1-D mesh of yours with axis "data" instead.
    """
    devices = list(devices if devices is not None else jax.devices())
    return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of `tree` on all devices of `mesh`."""
    return jax.device_put(tree, replicated(mesh))


def process_share(global_batch: Any) -> Any:
    """This process's contiguous share of each array of a global batch (a dict, or a tree of
    them such as {"labeled": ..., "unlabeled": ...}); all of it with one process."""
    count, index = jax.process_count(), jax.process_index()

    def share(value: np.ndarray) -> np.ndarray:
        size = value.shape[0]
        if size % count:
            raise ValueError(f"global batch of {size} is not divisible by {count} processes.")
        per = size // count
        return value[index * per:(index + 1) * per]

    return jax.tree.map(share, global_batch)


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Global arrays sharded on the data axis from each process's share of the batch (a tree)."""
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    return jax.tree.map(lambda v: jax.make_array_from_process_local_data(sharding, v),
                        local_batch)


def check_divisible(global_batch_size: int, mesh: Mesh, what: str = "config.batch_size",
                    per_device: int = 1) -> None:
    """Raises ValueError unless the batch splits evenly over the mesh's devices, with at least
    `per_device` examples on each (2 when they are mixed: each mixes within its own batch)."""
    devices = mesh.devices.size
    if global_batch_size % devices:
        raise ValueError(f"{what} = {global_batch_size} is not divisible by the {devices} devices: "
                         f"use a multiple of {devices}.")
    if global_batch_size // devices < per_device:
        raise ValueError(f"{what} = {global_batch_size} gives {global_batch_size // devices} "
                         f"example(s) per device on {devices} devices, and each device mixes "
                         f"within its own batch: use at least {per_device * devices}.")


class StepWithConstants:
    """A compiled step called with replicated `constants` (e.g. a ZCA matrix) as its last
    argument: passed on every call, never embedded in the program (a closed-over array is a
    literal in every compiled step: 4 MB of matrix, 8 MB of StableHLO)."""

    def __init__(self, jitted: jax.stages.Wrapped, constants: Any, mesh: Mesh):
        self.jitted, self.constants = jitted, replicate(constants, mesh)

    def __call__(self, *args: Any) -> Any:
        return self.jitted(*args, self.constants)

    def lower(self, *args: Any) -> Any:
        return self.jitted.lower(*args, self.constants)

    def trace(self, *args: Any) -> Any:
        return self.jitted.trace(*args, self.constants)


def _sharded_jit(per_device: Callable[..., Any], mesh: Mesh, in_specs: tuple, out_specs: Any,
                 constants: Any, donate: bool = False) -> Callable[..., Any]:
    """jit(shard_map(per_device)); with `constants`, one more replicated argument for them."""
    if constants is not None:
        in_specs = (*in_specs, P())
    jitted = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=in_specs,
                                   out_specs=out_specs), donate_argnums=(0,) if donate else ())
    return jitted if constants is None else StepWithConstants(jitted, constants, mesh)


# A training step as the sharded builders call it: step(state, local_batch, rng,
# axis_name=...) -> (state, metrics), e.g. functools.partial(mixup_step, config=spec).
TrainStepFn = Callable[..., tuple[Any, Metrics]]


def make_train_step(step: TrainStepFn, mesh: Mesh, *,
                    preprocess: Optional[Callable[..., Any]] = None, constants: Any = None,
                    donate: bool = True) -> Callable[[Any, Any, jax.Array], tuple[Any, Metrics]]:
    """jit(shard_map(step)) over `mesh`: `step(state, local_batch, rng, axis_name=DATA_AXIS)`
    runs on each device's share of the batch (any tree of arrays sharded on the data axis), with
    the state replicated; `preprocess(rng, local_batch)` runs first on device
    (`preprocess(rng, local_batch, constants)` when `constants` are given: see
    StepWithConstants), with the step key folded with the device's index.

    `step` is e.g. `functools.partial(mixup_step, config=spec)` or, for batches
    {"labeled", "unlabeled"}, `semi_supervised.paired_ssl_step(spec)` with
    `preprocess=each_part(preprocess)`. The returned function takes (replicated state,
    data-sharded batch, step key) and returns the replicated new state and metrics. The state
    is donated unless `donate=False`.
    """

    def per_device(state: Any, batch: Any, rng: jax.Array, *extra: Any):
        if preprocess is not None:
            prep_rng, rng = jax.random.split(rng)
            prep_rng = jax.random.fold_in(prep_rng, jax.lax.axis_index(DATA_AXIS))
            batch = preprocess(prep_rng, batch, *extra)
        return step(state, batch, rng, axis_name=DATA_AXIS)

    return _sharded_jit(per_device, mesh, (P(), P(DATA_AXIS), P()), (P(), P()), constants,
                        donate)


def each_part(preprocess: Callable[..., Batch],
              parts: tuple[str, ...] = ("labeled", "unlabeled")) -> Callable[..., Any]:
    """`preprocess(rng, batch, *constants)` applied to each named part of a batch of batches
    (e.g. {"labeled", "unlabeled"}), each with its own key split from `rng` in `parts` order."""

    def apply(rng: jax.Array, batches: dict[str, Batch], *extra: Any) -> dict[str, Batch]:
        keys = jax.random.split(rng, len(parts))
        return {part: preprocess(key, batches[part], *extra) for part, key in zip(parts, keys)}

    return apply


def make_eval_step(mesh: Mesh, *, preprocess: Optional[Callable[..., Batch]] = None,
                   constants: Any = None) -> Callable[[TrainState, Batch], Metrics]:
    """jit(shard_map(eval_step)) over `mesh`, summed over devices (`preprocess(local_batch)`, or
    `preprocess(local_batch, constants)`, first)."""

    def per_device(state: TrainState, batch: Batch, *extra: Any) -> Metrics:
        if preprocess is not None:
            batch = preprocess(batch, *extra)
        return jax.lax.psum(eval_step(state, batch), DATA_AXIS)

    return _sharded_jit(per_device, mesh, (P(), P(DATA_AXIS)), P(), constants)


def make_per_example_fn(mesh: Mesh, fn: Callable[..., Any], constants: Any = None
                        ) -> Callable[[TrainState, Batch], Any]:
    """jit(shard_map(fn)) for `fn(state, local_batch)` (or `fn(state, local_batch, constants)`)
    returning per-example arrays [B_local, ...]; the outputs come back sharded on the data axis
    (global [B, ...])."""
    return _sharded_jit(fn, mesh, (P(), P(DATA_AXIS)), P(DATA_AXIS), constants)


def to_host(tree: Any) -> Any:
    """Global (data-sharded) arrays as numpy on every process, in global order."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


__all__ = ["DATA_AXIS", "StepWithConstants", "check_divisible", "make_eval_step", "make_mesh",
           "make_per_example_fn", "make_train_step", "each_part", "to_host",
           "process_share", "replicate", "replicated", "shard_batch"]
