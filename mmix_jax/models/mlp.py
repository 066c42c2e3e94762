"""Multi-layer perceptrons for 2-D toy data and MNIST-style images (inputs are flattened).

Hidden layers have the widths in `widths`; with `bottleneck` set, one narrow layer of that
width is inserted after the first `bottleneck_position` of them (the paper's flattening study:
3×1024, a 12-unit bottleneck, 4×1024, LeakyReLU, mixing only at the bottleneck).

Mix points: 0 = input, i = after hidden layer i (its activation), for i = 1..number of hidden
layers. `bottleneck_point` is the point right after the bottleneck.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmix_jax.models.base import Dtype, MixableModel

ACTIVATIONS = {"relu": nn.relu, "leaky_relu": nn.leaky_relu, "tanh": jnp.tanh, "gelu": nn.gelu}


class MLP(MixableModel):
    num_classes: int
    widths: Sequence[int] = (128, 128, 128)
    bottleneck: Optional[int] = None
    bottleneck_position: Optional[int] = None  # default: the middle of `widths`
    activation: str = "relu"
    dtype: Dtype = jnp.float32

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        widths = tuple(self.widths)
        if self.bottleneck is None:
            return widths
        pos = len(widths) // 2 if self.bottleneck_position is None else self.bottleneck_position
        return widths[:pos] + (self.bottleneck,) + widths[pos:]

    @property
    def bottleneck_point(self) -> Optional[int]:
        """The mix point right after the bottleneck layer (None without a bottleneck)."""
        if self.bottleneck is None:
            return None
        pos = len(self.widths) // 2 if self.bottleneck_position is None else self.bottleneck_position
        return pos + 1

    @property
    def num_mix_points(self) -> int:
        return len(self.hidden_widths) + 1

    def setup(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MLP activation {self.activation!r}: choose one of {sorted(ACTIVATIONS)}.")
        self.layers = [nn.Dense(w, dtype=self.dtype, param_dtype=jnp.float32)
                       for w in self.hidden_widths]
        self.head = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)

    def segment(self, index: int, h: jax.Array, train: bool) -> jax.Array:
        del train  # no train-time behaviour
        if index == 0:
            h = h.reshape(h.shape[0], -1)
        if index < len(self.layers):
            return ACTIVATIONS[self.activation](self.layers[index](h))
        return self.head(h)
