"""What every mmix_jax model shares: a chain of segments with a mix point before each.

A model with n mix points is split into segments 0..n−1; mix point i is the input of segment i
(point 0 is the model input) and the last segment ends in the logits. The base class runs the
chain, mixing at point i iff `mix_layer == i` and sowing the state at each point, so every model
honours the mixing contract (`mmix_jax.mixup.maybe_mix`, README "Use it from your own JAX
code") in one place.

Reading hidden representations: each point's state (after any mixing there) is sown into the
"intermediates" collection as `mix_point_{i}`:

    logits, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    h2 = state["intermediates"]["mix_point_2"][0]

`forward_from(h, start, train=...)` runs the rest of the network from mix point `start`, e.g. on
a hidden state you mixed or edited yourself.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmix_jax.mixup import check_mix_args, check_mix_points, maybe_mix, recording_mix_points, requested_points

Dtype = Any


class MixableModel(nn.Module):
    """Base class: subclasses define `num_mix_points` and `segment(i, h, train)`."""

    @property
    def num_mix_points(self) -> int:
        raise NotImplementedError

    @property
    def has_batch_norm(self) -> bool:
        """Whether the model keeps BatchNorm statistics (then it takes a `bn_axis`)."""
        return False

    @property
    def rng_streams(self) -> tuple[str, ...]:
        """The RNG streams the model draws from in training (for `MixSpec.rng_streams`)."""
        return ("dropout",)

    def segment(self, index: int, h: jax.Array, train: bool) -> jax.Array:
        raise NotImplementedError

    def _run(self, h: jax.Array, start: int, train: bool, mix_layer: Optional[jax.Array],
             perm: Optional[jax.Array], lam: Optional[jax.Array]) -> jax.Array:
        for point in range(start, self.num_mix_points):
            h = maybe_mix(h, point, mix_layer, perm, lam)
            self.sow("intermediates", f"mix_point_{point}", h)
            h = self.segment(point, h, train)
        return h.astype(jnp.float32)

    def __call__(self, x: jax.Array, *, train: bool, mix_layer: Optional[jax.Array] = None,
                 perm: Optional[jax.Array] = None, lam: Optional[jax.Array] = None) -> jax.Array:
        """Logits (float32) for inputs x, mixing at point `mix_layer` if it is not None.

        Args:
          x: a batch of inputs, [B, ...].
          train: BatchNorm uses batch statistics (and updates `batch_stats`), dropout is on.
          mix_layer: the mix point k: a Python int, a traced int32 scalar, a `MixPoint` (traced
            k and its eligible set, as the steps pass it) or None for the plain forward pass.
          perm: int32[B], the partner of each example; lam: float scalar λ in [0, 1].
        """
        check_mix_args(x, mix_layer, perm, lam)
        with recording_mix_points() as visited:
            logits = self._run(x.astype(self.dtype), 0, train, mix_layer, perm, lam)
        check_mix_points(requested_points(mix_layer), visited, self)
        return logits

    def forward_from(self, h: jax.Array, start: int, *, train: bool) -> jax.Array:
        """Logits from the state `h` at mix point `start` (no mixing)."""
        if not 0 <= start < self.num_mix_points:
            raise ValueError(f"start = {start}: this model has mix points 0..{self.num_mix_points - 1}.")
        return self._run(h.astype(self.dtype), start, train, None, None, None)


def batch_norm(train: bool, dtype: Dtype, axis_name: Optional[str] = None,
               momentum: float = 0.9) -> nn.BatchNorm:
    """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here, ε = 1e-5).

    With `axis_name` (a mapped data axis) batch statistics are averaged across devices.
    """
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                        dtype=dtype, param_dtype=jnp.float32, axis_name=axis_name)


def conv(features: int, kernel: int, strides: int = 1, dtype: Dtype = jnp.float32,
         name: Optional[str] = None, use_bias: bool = False) -> nn.Conv:
    """A k×k convolution padded by k//2 on every side (PyTorch's padding, also at stride 2)."""
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                   padding=((pad, pad), (pad, pad)), use_bias=use_bias, dtype=dtype,
                   param_dtype=jnp.float32, name=name,
                   kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"))


class Stage(nn.Module):
    """`num_blocks` blocks of one width; the first one strides. `block` is called as
    block(features, strides, dtype, bn_axis, name=...) and then on (x, train)."""

    block: Callable[..., nn.Module]
    num_blocks: int
    features: int
    strides: int
    dtype: Dtype = jnp.float32
    bn_axis: Optional[str] = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for j in range(self.num_blocks):
            x = self.block(self.features, self.strides if j == 0 else 1, self.dtype,
                           self.bn_axis, name=f"block{j}")(x, train)
        return x
