"""The mixing itself: pure array functions, no Flax.

Manifold Mixup draws, once per batch, a mix point k from the eligible set, a weight
λ ~ Beta(α, α) and a permutation of the batch; the model then replaces its hidden state at k by
λ·h + (1−λ)·h[perm] and the targets are mixed the same way. Everything here is traceable, so
the draws happen inside the compiled step and one executable serves every k.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Sequence

import chex
import jax
import jax.numpy as jnp

from mmix_jax.losses import LOSS_NAMES

# The mix point reported when a batch is not mixed (ERM). Never equal to a real point.
NO_MIX = -1


@dataclasses.dataclass(frozen=True)
class MixSpec:
    """Static description of the mixing a train step performs (hashable: a jit static arg).

    Attributes:
      num_classes: number of classes of the one-hot targets.
      alpha: Beta(α, α) parameter of λ; α = 0 means λ = 1 (no mixing).
      mix_layers: eligible mix points, k drawn uniformly from them. () is ERM, (0,) Input Mixup.
      loss: "bce" (the paper's code: BCE on softmax outputs) or "soft_ce".
    """

    num_classes: int
    alpha: float = 2.0
    mix_layers: tuple[int, ...] = (0, 1, 2)
    loss: str = "bce"

    def __post_init__(self):
        object.__setattr__(self, "mix_layers", tuple(int(k) for k in self.mix_layers))
        if self.num_classes <= 1:
            raise ValueError(f"MixSpec.num_classes = {self.num_classes}: must be >= 2.")
        if not self.alpha >= 0:
            raise ValueError(f"MixSpec.alpha = {self.alpha}: must be >= 0 (0 disables mixing).")
        if any(k < 0 for k in self.mix_layers) or len(set(self.mix_layers)) != len(self.mix_layers):
            raise ValueError(
                f"MixSpec.mix_layers = {self.mix_layers}: must be distinct mix points >= 0.")
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"MixSpec.loss = {self.loss!r}: must be one of {LOSS_NAMES}.")

    @property
    def mixes(self) -> bool:
        """Whether the step mixes at all (False for ERM, i.e. no eligible layer or α = 0)."""
        return bool(self.mix_layers) and self.alpha > 0


class MixDraw(NamedTuple):
    """One batch's random mixing choices."""

    layer: jax.Array  # int32 scalar: the mix point k (NO_MIX when mix_layers is empty)
    lam: jax.Array  # float32 scalar in [0, 1]
    perm: jax.Array  # int32[B]: the partner of each example


def sample_mix(rng: jax.Array, batch_size: int, *, alpha: float,
               mix_layers: Sequence[int], axis_name: Optional[str] = None,
               shard_index: Optional[int] = None) -> MixDraw:
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
    layer_key, lam_key, perm_key = jax.random.split(rng, 3)
    if axis_name is not None:
        shard_index = jax.lax.axis_index(axis_name)
    if shard_index is not None:
        perm_key = jax.random.fold_in(perm_key, shard_index)
    layer = jax.random.choice(layer_key, jnp.asarray(mix_layers, jnp.int32))
    lam = jax.random.beta(lam_key, alpha, alpha, dtype=jnp.float32)
    perm = jax.random.permutation(perm_key, batch_size).astype(jnp.int32)
    return MixDraw(layer, lam, perm)


def mix(h: jax.Array, perm: jax.Array, lam: jax.Array) -> jax.Array:
    """λ·h + (1−λ)·h[perm] along the batch axis, in h's dtype.

    Written as h + (1−λ)·(h[perm] − h), so λ = 1 and perm = identity both return h bit for bit.
    """
    chex.assert_rank(perm, 1)
    chex.assert_axis_dimension(h, 0, perm.shape[0])
    lam = jnp.asarray(lam, h.dtype)
    return h + (1 - lam) * (h[perm] - h)


def mix_targets(one_hot: jax.Array, perm: jax.Array, lam: jax.Array) -> jax.Array:
    """Mixes [B, C] targets with the same λ and permutation as the hidden state (in float32)."""
    chex.assert_rank(one_hot, 2)
    return mix(one_hot.astype(jnp.float32), perm, jnp.asarray(lam, jnp.float32))


def maybe_mix(h: jax.Array, point: int, mix_layer: Optional[jax.Array],
              perm: Optional[jax.Array], lam: Optional[jax.Array]) -> jax.Array:
    """Mixes h iff `mix_layer == point`; used by models at each of their mix points.

    `mix_layer` may be a Python int, a traced int32 scalar, or None (no mixing). A traced k
    becomes a `lax.cond`, so only the taken branch runs and one compiled step serves every k.
    """
    if mix_layer is None:
        return h
    if perm is None or lam is None:
        raise ValueError("mix_layer was given without perm and lam: pass all three or none.")
    if isinstance(mix_layer, int):
        return mix(h, perm, lam) if mix_layer == point else h
    return jax.lax.cond(jnp.asarray(mix_layer) == point,
                        lambda x: mix(x, perm, lam), lambda x: x, h)
