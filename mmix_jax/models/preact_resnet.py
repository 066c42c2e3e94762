"""Pre-activation ResNets with the CIFAR stem, as in the Manifold Mixup paper's code, or the
ImageNet stem.

Stem (`stem_type` "cifar"): one 3×3 convolution, no max-pool; ("imagenet", He et al. 2016): a 7×7
convolution of stride 2 and a 3×3 max-pool of stride 2, so a 224×224 input reaches the first
stage at 56×56. Four stages (64, 128, 256, 512 channels × expansion),
stride 2 from the second stage on. As in the paper's code there is no BN-ReLU between the last
stage and the average pool. With 10 classes PreActResNet18 has 11,171,146 parameters and
PreActResNet34 21,279,306.

Mix points: 0 = input, 1 = after the stem and stage 1, 2 = after stage 2, 3 = after stage 3.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmix_jax.models.base import Dtype, MixableModel, Stage, batch_norm, conv


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-conv3×3 plus a shortcut (1×1 conv on the activation if needed)."""

    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32
    bn_axis: Optional[str] = None
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = nn.relu(batch_norm(train, self.dtype, self.bn_axis)(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = conv(self.features, 1, self.strides, self.dtype)(out)
        out = conv(self.features, 3, self.strides, self.dtype)(out)
        out = nn.relu(batch_norm(train, self.dtype, self.bn_axis)(out))
        out = conv(self.features, 3, 1, self.dtype)(out)
        return out + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1×1, BN-ReLU-conv3×3 (strided), BN-ReLU-conv1×1 to 4× the width."""

    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32
    bn_axis: Optional[str] = None
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out_features = self.features * self.expansion
        out = nn.relu(batch_norm(train, self.dtype, self.bn_axis)(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out_features:
            shortcut = conv(out_features, 1, self.strides, self.dtype)(out)
        out = conv(self.features, 1, 1, self.dtype)(out)
        out = nn.relu(batch_norm(train, self.dtype, self.bn_axis)(out))
        out = conv(self.features, 3, self.strides, self.dtype)(out)
        out = nn.relu(batch_norm(train, self.dtype, self.bn_axis)(out))
        out = conv(out_features, 1, 1, self.dtype)(out)
        return out + shortcut


class PreActResNet(MixableModel):
    """PreActResNet with the CIFAR stem; see the module docstring for the mix points."""

    stage_sizes: Sequence[int]
    block: type[nn.Module]
    num_classes: int
    width: int = 64
    dtype: Dtype = jnp.float32
    bn_axis: Optional[str] = None  # e.g. "data": BatchNorm statistics across devices
    stem_type: str = "cifar"  # or "imagenet"

    @property
    def num_mix_points(self) -> int:
        return len(self.stage_sizes)

    @property
    def has_batch_norm(self) -> bool:
        return True

    def setup(self):
        if self.stem_type not in STEMS:
            raise ValueError(f"PreActResNet stem_type {self.stem_type!r}: choose one of {STEMS}.")
        self.stem = (conv(self.width, 3, 1, self.dtype) if self.stem_type == "cifar" else
                     conv(self.width, 7, 2, self.dtype))
        self.stages = [
            Stage(self.block, n, self.width * 2**i, 1 if i == 0 else 2, self.dtype, self.bn_axis)
            for i, n in enumerate(self.stage_sizes)
        ]
        self.head = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)

    def segment(self, index: int, h: jax.Array, train: bool) -> jax.Array:
        if index == 0:
            h = self.stem(h)
            if self.stem_type == "imagenet":
                h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        h = self.stages[index](h, train)
        if index == len(self.stage_sizes) - 1:
            h = self.head(jnp.mean(h, axis=(1, 2)))
        return h


STEMS = ("cifar", "imagenet")

_DEPTHS = {
    18: ((2, 2, 2, 2), PreActBasicBlock),
    34: ((3, 4, 6, 3), PreActBasicBlock),
    50: ((3, 4, 6, 3), PreActBottleneck),
    101: ((3, 4, 23, 3), PreActBottleneck),
    152: ((3, 8, 36, 3), PreActBottleneck),
}


def preact_resnet(depth: int, **kwargs) -> PreActResNet:
    """PreActResNet-`depth` for depth in 18, 34, 50, 101, 152."""
    if depth not in _DEPTHS:
        raise ValueError(f"PreActResNet depth {depth}: choose one of {sorted(_DEPTHS)}.")
    stage_sizes, block = _DEPTHS[depth]
    return PreActResNet(stage_sizes=stage_sizes, block=block, **kwargs)
