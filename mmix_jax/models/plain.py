"""PreActResNet18 written as plain Linen, without the mixing contract: a user's own model.

Its parameters have exactly the structure of `preact_resnet(18)` (the same stem, stages and
head), so `mixable(PlainPreActResNet18(...), points=("stages_0", "stages_1", "stages_2"))` can be
checked against, and timed beside, our native model on the same variables. `stage_sizes`
other than (2, 2, 2, 2) mirror `PreActResNet(stage_sizes=..., block=PreActBasicBlock)` the
same way (tests use one block per stage: the same code paths at a fraction of the compile).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmix_jax.models.base import Dtype, Stage, conv
from mmix_jax.models.preact_resnet import PreActBasicBlock


class PlainPreActResNet18(nn.Module):
    num_classes: int
    width: int = 64
    dtype: Dtype = jnp.float32
    stage_sizes: Sequence[int] = (2, 2, 2, 2)

    def setup(self):
        self.stem = conv(self.width, 3, 1, self.dtype)
        self.stages = [Stage(PreActBasicBlock, n, self.width * 2**i, 1 if i == 0 else 2,
                             self.dtype) for i, n in enumerate(self.stage_sizes)]
        self.head = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = self.stem(x.astype(self.dtype))
        for stage in self.stages:
            h = stage(h, train)
        return self.head(jnp.mean(h, axis=(1, 2))).astype(jnp.float32)
