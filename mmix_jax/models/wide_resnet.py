"""Wide ResNets (Zagoruyko & Komodakis), pre-activation, for 32×32 inputs.

WRN-d-k: a 3×3 stem with 16 channels, then three groups of (d − 4) / 6 blocks with 16k, 32k
and 64k channels (stride 1, 2, 2), a final BN-ReLU, average pool and a linear layer. Convolutions
have no bias; the shortcut is a 1×1 convolution of the activated input where the shape changes.
Optional dropout between the two convolutions of a block (needs a "dropout" rng when training).

Two block styles (`style`):
- "standard" (Zagoruyko & Komodakis): convolutions without bias, stride on the first
  convolution, a shortcut from the activated input; final BatchNorm with PyTorch's momentum.
- "authors" (the Manifold Mixup code's `wrn28_10` and its semi-supervised WRN-28-2): a bias in
  every convolution, the stride on the block's second convolution, dropout (if any) right after
  the first convolution, the 1×1 shortcut taken from the block's raw input, and a final
  BatchNorm built with PyTorch momentum 0.9 (running = 0.1·running + 0.9·batch).

`activation`: "relu", or "leaky_relu" (slope 0.01, PyTorch's default; the semi-supervised code).

Mix points: 0 = input, 1 = after the stem and group 1, 2 = after group 2, 3 = after group 3.
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmix_jax.models.base import Dtype, MixableModel, Stage, batch_norm, conv

STYLES = ("standard", "authors")
ACTIVATIONS = {"relu": nn.relu, "leaky_relu": lambda x: nn.leaky_relu(x, 0.01)}


class WideBlock(nn.Module):
    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32
    bn_axis: Optional[str] = None
    dropout_rate: float = 0.0
    style: str = "standard"
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        authors, act = self.style == "authors", ACTIVATIONS[self.activation]
        first_stride, second_stride = (1, self.strides) if authors else (self.strides, 1)
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        activated = act(batch_norm(train, self.dtype, self.bn_axis)(x))
        out = conv(self.features, 3, first_stride, self.dtype, use_bias=authors)(activated)
        if authors and self.dropout_rate > 0:
            out = dropout(out)
        out = act(batch_norm(train, self.dtype, self.bn_axis)(out))
        if not authors and self.dropout_rate > 0:
            out = dropout(out)
        out = conv(self.features, 3, second_stride, self.dtype, use_bias=authors)(out)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, 1, self.strides, self.dtype,
                     use_bias=authors)(x if authors else activated)
        return out + x


class WideHead(nn.Module):
    """Final BN-ReLU, global average pool, linear classifier."""

    num_classes: int
    dtype: Dtype = jnp.float32
    bn_axis: Optional[str] = None
    bn_momentum: float = 0.9  # Flax's convention: running = m·running + (1 − m)·batch
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = batch_norm(train, self.dtype, self.bn_axis, self.bn_momentum)(x)
        x = ACTIVATIONS[self.activation](x)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(
            jnp.mean(x, axis=(1, 2)))


class WideResNet(MixableModel):
    """WRN-depth-widen_factor; see the module docstring for the mix points."""

    depth: int
    widen_factor: int
    num_classes: int
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    bn_axis: Optional[str] = None  # e.g. "data": BatchNorm statistics across devices
    style: str = "standard"  # or "authors" (module docstring)
    activation: str = "relu"  # or "leaky_relu"
    stem_strides: int = 1  # 2 halves the resolution at once (cheap small models on CPU)

    @property
    def num_mix_points(self) -> int:
        return 4

    @property
    def has_batch_norm(self) -> bool:
        return True

    def setup(self):
        if (self.depth - 4) % 6 or self.depth < 10:
            raise ValueError(f"WideResNet depth {self.depth}: must be 6n + 4 with n >= 1 (e.g. 28).")
        if self.style not in STYLES:
            raise ValueError(f"WideResNet style {self.style!r}: choose one of {STYLES}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"WideResNet activation {self.activation!r}: choose one of "
                             f"{tuple(ACTIVATIONS)}.")
        authors = self.style == "authors"
        blocks = (self.depth - 4) // 6
        self.stem = conv(16, 3, self.stem_strides, self.dtype, use_bias=authors)
        block = functools.partial(WideBlock, dropout_rate=self.dropout_rate, style=self.style,
                                  activation=self.activation)
        self.groups = [Stage(block, blocks, 16 * 2**i * self.widen_factor, 1 if i == 0 else 2,
                             self.dtype, self.bn_axis) for i in range(3)]
        self.head = WideHead(self.num_classes, self.dtype, self.bn_axis,
                             bn_momentum=0.1 if authors else 0.9,
                             activation=self.activation)

    def segment(self, index: int, h: jax.Array, train: bool) -> jax.Array:
        if index == 0:
            h = self.stem(h)
        if index < 3:
            return self.groups[index](h, train)
        return self.head(h, train)
