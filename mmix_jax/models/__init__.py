"""Flax models honouring the mixing contract, and `get_model(name, **kwargs)`."""

from __future__ import annotations

from typing import Any, Callable

from mmix_jax.models.base import MixableModel
from mmix_jax.models.mlp import MLP
from mmix_jax.models.preact_resnet import PreActResNet, preact_resnet
from mmix_jax.models.wide_resnet import WideResNet

_REGISTRY: dict[str, Callable[..., MixableModel]] = {
    **{f"preactresnet{d}": (lambda d: lambda **kw: preact_resnet(d, **kw))(d)
       for d in (18, 34, 50, 101, 152)},
    "wrn": WideResNet,
    # The Manifold Mixup code's WRN-28-10 (wide_resnet.py: "authors" style), and the standard one.
    "wrn28_10": lambda **kw: WideResNet(depth=28, widen_factor=10, style="authors", **kw),
    "wrn28_10_standard": lambda **kw: WideResNet(depth=28, widen_factor=10, **kw),
    "mlp": MLP,
}

MODEL_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))


def get_model(name: str, **kwargs: Any) -> MixableModel:
    """The model called `name` (see MODEL_NAMES), built with `kwargs` (num_classes, dtype, ...)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: choose one of {MODEL_NAMES}.") from None
    return factory(**kwargs)


__all__ = ["MLP", "MODEL_NAMES", "MixableModel", "PreActResNet", "WideResNet", "get_model"]
