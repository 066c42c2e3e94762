"""The mixing itself: pure array functions, no Flax.

Manifold Mixup draws, once per batch, a mix point k from the eligible set, a weight
λ ~ Beta(α, α) and a permutation of the batch; the model then replaces its hidden state at k by
λ·h + (1−λ)·h[perm] and the targets are mixed the same way. Everything here is traceable, so
the draws happen inside the compiled step and one executable serves every k.

On accelerators the compiled step holds no control flow on device values (no `while`, `case`
or `if`: on XLA:GPU each one copies a predicate to the host and blocks the launch stream). A
traced k becomes a select at each eligible point (`MixPoint` carries the eligible set, so
ineligible points cost nothing) and λ comes from a loop-free Beta sampler (`mmix_jax.beta`).
XLA:CPU runs a conditional in place, with no host round trip, so on a CPU backend the default
mixing ("auto") keeps a `lax.cond` per eligible point, which skips the mixing work at the points
not drawn, where a select computes it at every eligible point (docs/performance.md measures
both). `MixSpec(mixing="select")` forces the select anywhere (e.g. to export a step for an
accelerator from a CPU host).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import threading
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mmix_jax.beta import symmetric_beta
from mmix_jax.errors import MixPointError, static_number, static_points
from mmix_jax.losses import LOSS_NAMES

# The mix point reported when a batch is not mixed (ERM). Never equal to a real point.
NO_MIX = -1
MIXING_MODES = ("auto", "select", "branch")
PARTIAL_MIX_ARGUMENTS = "mix_layer was given without perm and lam: pass all three or none."


def _backend() -> str:
    return jax.default_backend()


def selects(mixing: str) -> bool:
    """Whether `mixing` ("auto", "select" or "branch") mixes by select on this backend: "auto"
    selects on accelerators and branches on XLA:CPU, decided when the step is traced."""
    return mixing == "select" or (mixing == "auto" and _backend() != "cpu")


@dataclasses.dataclass(frozen=True)
class MixSpec:
    """Static description of the mixing a train step performs (hashable: a jit static arg).

    Attributes:
      num_classes: number of classes of the one-hot targets.
      alpha: Beta(α, α) parameter of λ; α = 0 means λ = 1 (no mixing).
      mix_layers: eligible mix points, k drawn uniformly from them. () is ERM, (0,) Input Mixup.
      loss: "bce" (the paper's code: BCE on softmax outputs) or "soft_ce".
      mixing: how a traced k reaches the mix points: "select" (no control flow), "branch" (a
        `lax.cond`) or "auto" (select on accelerators, branch on CPU; module docstring).
      rng_streams: the RNG streams the model draws from while training (flax `make_rng`
        names, e.g. "dropout", "drop_path"); each gets its own key from the step's key.
      check_labels: also check on device that every label is in [0, num_classes), with
        `jax.experimental.checkify`: run the step under `checkify.checkify(...)` and call
        `error.throw()`. Off by default (an unchecked label outside the range trains against
        an all-zero target); the harness checks its data on the host before training instead.
      add_sown_losses: add what the model sows into the `losses` collection during the
        training pass (e.g. an auxiliary balancing loss) to the loss; reported as `sown_loss`
        either way.
    """

    num_classes: int
    alpha: float = 2.0
    mix_layers: tuple[int, ...] = (0, 1, 2)
    loss: str = "bce"
    mixing: str = "auto"
    rng_streams: tuple[str, ...] = ("dropout",)
    check_labels: bool = False
    add_sown_losses: bool = True

    def __post_init__(self):
        # Coerced to Python numbers (hashable, static) and validated, each error naming its field.
        object.__setattr__(self, "num_classes",
                           static_number("MixSpec", "num_classes", self.num_classes, minimum=2,
                                         integer=True))
        object.__setattr__(self, "alpha", static_number("MixSpec", "alpha", self.alpha))
        object.__setattr__(self, "mix_layers",
                           static_points("MixSpec", "mix_layers", self.mix_layers))
        if isinstance(self.rng_streams, str) or not all(
                isinstance(name, str) and name for name in self.rng_streams):
            raise ValueError(f"MixSpec.rng_streams = {self.rng_streams!r}: must be a tuple of "
                             "stream names, e.g. ('dropout', 'drop_path').")
        object.__setattr__(self, "rng_streams", tuple(self.rng_streams))
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"MixSpec.loss = {self.loss!r}: must be one of {LOSS_NAMES}.")
        if self.mixing not in MIXING_MODES:
            raise ValueError(f"MixSpec.mixing = {self.mixing!r}: must be one of {MIXING_MODES}.")

    @property
    def mixes(self) -> bool:
        """Whether the step mixes at all (False for ERM, i.e. no eligible layer or α = 0)."""
        return bool(self.mix_layers) and self.alpha > 0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MixPoint:
    """A drawn mix point k (traced int32 scalar) with the static set it was drawn from.

    Passed as a model's `mix_layer`, it lets `maybe_mix` skip the points k can never be (no
    work there at all) and select at the others; a bare traced k selects at every point.
    """

    index: jax.Array
    eligible: tuple[int, ...] = dataclasses.field(metadata={"static": True})
    select: bool = dataclasses.field(default=True, metadata={"static": True})  # else lax.cond


MixLayer = Union[int, jax.Array, MixPoint, None]


class MixDraw(NamedTuple):
    """One batch's random mixing choices."""

    layer: jax.Array  # int32 scalar: the mix point k (NO_MIX when mix_layers is empty)
    lam: jax.Array  # float32 scalar in [0, 1]
    perm: jax.Array  # int32[B]: the partner of each example

    def model_kwargs(self, eligible: Sequence[int], mixing: str = "auto") -> dict[str, Any]:
        """The model's mix arguments for this draw from the points `eligible`.

        A `MixPoint`, so the model mixes (by select or branch, as `mixing` says) at the eligible
        points and does nothing at the others. ERM (no eligible point) has no mix arguments.
        """
        eligible = tuple(int(k) for k in eligible)
        if not eligible:
            return {}
        point = MixPoint(self.layer, eligible, selects(mixing))
        return {"mix_layer": point, "perm": self.perm, "lam": self.lam}


def sample_mix(rng: jax.Array, batch_size: int, *, alpha: float,
               mix_layers: Sequence[int], axis_name: Optional[str] = None,
               shard_index: Optional[Union[int, jax.Array]] = None) -> MixDraw:
    """Draws k uniformly from `mix_layers`, λ ~ Beta(α, α) and a permutation of the batch.

    With `axis_name` (inside `shard_map`/`pmap`) k and λ stay the same on every device while the
    permutation key is folded with the device's axis index, so each device mixes within its own
    local batch and no cross-device gather is needed (`shard_index` gives a shard's draw outside
    `shard_map`, e.g. to check a sharded step by hand). α <= 0 or no eligible layer gives λ = 1,
    the identity permutation and k = NO_MIX: the ERM forward pass.
    """
    mix_layers = tuple(int(k) for k in mix_layers)
    if not mix_layers or alpha <= 0:
        return MixDraw(jnp.asarray(NO_MIX, jnp.int32), jnp.ones((), jnp.float32),
                       jnp.arange(batch_size, dtype=jnp.int32))
    if batch_size < 2:
        raise ValueError(f"a batch of {batch_size} cannot be mixed (an example's only partner "
                         "would be itself): use batches of 2 or more, or no mixing.")
    layer_key, lam_key, perm_key = jax.random.split(rng, 3)
    if axis_name is not None:
        shard_index = jax.lax.axis_index(axis_name)
    if shard_index is not None:
        perm_key = jax.random.fold_in(perm_key, shard_index)
    layer = jax.random.choice(layer_key, jnp.asarray(mix_layers, jnp.int32))
    lam = symmetric_beta(lam_key, alpha)
    perm = jax.random.permutation(perm_key, batch_size).astype(jnp.int32)
    return MixDraw(layer, lam, perm)


def mix(h: jax.Array, perm: jax.Array, lam: jax.Array) -> jax.Array:
    """λ·h + (1−λ)·h[perm] along the batch axis, returned in h's dtype.

    Written as h + (1−λ)·(h[perm] − h), so λ = 1 and perm = identity both return h bit for bit.
    Lower-precision h (bfloat16, float16) is mixed in float32 with the float32 λ, the same λ as
    the targets, and cast back once.
    """
    chex.assert_rank(perm, 1)
    chex.assert_axis_dimension(h, 0, perm.shape[0])
    compute = jnp.promote_types(h.dtype, jnp.float32)
    x = h.astype(compute)
    lam = jnp.asarray(lam, compute)
    return (x + (1 - lam) * (x[perm] - x)).astype(h.dtype)


def mix_targets(one_hot: jax.Array, perm: jax.Array, lam: jax.Array) -> jax.Array:
    """Mixes [B, C] targets with the same λ and permutation as the hidden state (in float32)."""
    chex.assert_rank(one_hot, 2)
    return mix(one_hot.astype(jnp.float32), perm, jnp.asarray(lam, jnp.float32))


# The mix points `maybe_mix` was called at, per active `recording_mix_points` block (a stack per
# thread: tracing runs in the caller's thread). Python-side, so it costs nothing at run time.
_RECORDERS = threading.local()


@contextlib.contextmanager
def recording_mix_points() -> Iterator[set[int]]:
    """Collects the points at which the model asked to mix (called `maybe_mix` with a
    mix_layer) inside the block: while a step is traced, the points the model has."""
    stack = _RECORDERS.__dict__.setdefault("stack", [])
    visited: set[int] = set()
    stack.append(visited)
    try:
        yield visited
    finally:
        stack.pop()


def check_mix_points(wanted: Sequence[int], visited: set[int], model: Any) -> None:
    """Raises MixPointError unless every point in `wanted` is one the model visited.

    Without this a point the model lacks is drawn, the targets are mixed and the inputs are
    not: the step trains silently on wrong pairs.
    """
    missing = sorted(set(int(k) for k in wanted) - visited)
    if missing:
        owner = getattr(model, "__self__", model)  # a bound `apply`: its module
        name = owner.__name__ if inspect.isfunction(owner) else type(owner).__name__
        has = f"its mix points are {sorted(visited)}" if visited else "it has no mix point"
        raise MixPointError(
            f"mix point(s) {missing} were asked for, but {name} never reached them ({has}). "
            "Choose mix_layers among its points, or add the points to the model (maybe_mix, "
            "or mmix_jax.mixable(model, points=...)).")


def requested_points(mix_layer: MixLayer) -> tuple[int, ...]:
    """The points a direct call's `mix_layer` can mix at, where that is known while tracing:
    a Python int names one, a MixPoint its eligible set, a traced k any (none to check)."""
    if isinstance(mix_layer, MixPoint):
        return mix_layer.eligible
    if isinstance(mix_layer, (int, np.integer)):
        return (int(mix_layer),)
    return ()


def check_mix_args(x: jax.Array, mix_layer: MixLayer, perm: Optional[jax.Array],
                   lam: Optional[jax.Array]) -> None:
    """A model call's mixing arguments: all three or none, perm a permutation of x's batch."""
    if mix_layer is None:
        return
    if perm is None or lam is None:
        raise ValueError(PARTIAL_MIX_ARGUMENTS)
    if jnp.shape(perm) != (x.shape[0],):
        raise ValueError(f"perm has shape {jnp.shape(perm)} but the batch has {x.shape[0]} "
                         f"examples: perm must be int32[{x.shape[0]}], a permutation of it.")


def maybe_mix(h: jax.Array, point: int, mix_layer: MixLayer,
              perm: Optional[jax.Array], lam: Optional[jax.Array]) -> jax.Array:
    """Mixes h iff `mix_layer == point`; used by models at each of their mix points.

    `mix_layer` may be a Python int (a static choice), a `MixPoint` (a traced k, its eligible
    set: nothing happens at the other points, and select or branch), a traced int32 scalar (a
    select), or None (no mixing). A select computes both sides and leaves no control flow; one
    executable serves every k either way. The result at a point other than k is h bit for bit.
    Each call with a mix_layer records `point` for `recording_mix_points`.
    """
    if mix_layer is None:
        return h
    for visited in getattr(_RECORDERS, "stack", ()):
        visited.add(point)
    if perm is None or lam is None:
        raise ValueError(PARTIAL_MIX_ARGUMENTS)
    if not jnp.issubdtype(h.dtype, jnp.inexact):
        raise MixPointError(
            f"mix point {point} holds {h.dtype} values: λ·h + (1−λ)·h[perm] would be truncated "
            "while the targets use the exact λ. Convert to floating point before the model "
            "(e.g. images.astype(jnp.float32) / 255).")
    if isinstance(mix_layer, MixPoint):
        if point not in mix_layer.eligible:
            return h
        if not mix_layer.select:
            return jax.lax.cond(mix_layer.index == point, lambda x: mix(x, perm, lam),
                                lambda x: x, h)
        mix_layer = mix_layer.index
    if isinstance(mix_layer, (int, np.integer)):
        return mix(h, perm, lam) if int(mix_layer) == point else h
    return jnp.where(jnp.asarray(mix_layer) == point, mix(h, perm, lam), h)
