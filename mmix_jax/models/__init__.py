"""Flax models honouring the mixing contract, and `get_model(name, **kwargs)`."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax.numpy as jnp

from mmix_jax.models.base import MixableModel
from mmix_jax.models.mlp import MLP
from mmix_jax.models.preact_resnet import PreActResNet, preact_resnet
from mmix_jax.models.vit import SIZES as VIT_SIZES
from mmix_jax.models.vit import ViT, vit
from mmix_jax.models.wide_resnet import WideResNet

_REGISTRY: dict[str, Callable[..., MixableModel]] = {
    **{f"preactresnet{depth}": functools.partial(preact_resnet, depth)
       for depth in (18, 34, 50, 101, 152)},
    "wrn": WideResNet,
    # The Manifold Mixup code's WRN-28-10 (wide_resnet.py: "authors" style), and the standard one.
    "wrn28_10": lambda **kw: WideResNet(depth=28, widen_factor=10, style="authors", **kw),
    "wrn28_10_standard": lambda **kw: WideResNet(depth=28, widen_factor=10, **kw),
    # The semi-supervised code's WRN-28-2: authors' blocks, LeakyReLU(0.01), dropout 0.3.
    "wrn28_2_ssl": lambda **kw: WideResNet(**{
        "depth": 28, "widen_factor": 2, "style": "authors", "activation": "leaky_relu",
        "dropout_rate": 0.3, **kw}),
    "mlp": MLP,
    "vit": ViT,  # every number given: width, depth, num_heads, mlp_dim, patch_size...
    **{f"vit_{size}": functools.partial(vit, size) for size in VIT_SIZES},
}

MODEL_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DATA_AXIS = "data"  # the mesh axis of data parallelism (mmix_jax.parallel)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model by name: compute dtype, parameter init scheme ("he" | "torch"), the model's own
    keyword options as sorted (key, value) pairs, and BatchNorm statistics across devices."""

    name: str
    dtype: str = "float32"
    init: str = "he"
    options: tuple[tuple[str, Any], ...] = ()
    cross_device_batch_norm: bool = False

    def build(self, num_classes: int) -> MixableModel:
        kwargs = dict(self.options)
        if self.cross_device_batch_norm:
            kwargs["bn_axis"] = DATA_AXIS
        return get_model(self.name, num_classes=num_classes, dtype=DTYPES[self.dtype], **kwargs)


def get_model(name: str, **kwargs: Any) -> MixableModel:
    """The model called `name` (see MODEL_NAMES), built with `kwargs` (num_classes, dtype, ...)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: choose one of {MODEL_NAMES}.") from None
    return factory(**kwargs)


__all__ = ["DTYPES", "MLP", "MODEL_NAMES", "MixableModel", "ModelSpec", "PreActResNet",
           "ViT", "WideResNet", "get_model"]
