"""How stored inputs become pixels in [0, 1] and model inputs, for evaluation and attacks."""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from mmix_jax.data.augment import standardize
from mmix_jax.data.zca import whiten


@dataclasses.dataclass(frozen=True)
class InputSpace:
    """How stored inputs become pixels in [0, 1] (the attack's space) and model inputs.

    Image data (uint8, with per-channel mean/std): pixels = x / 255, model input =
    (pixels − mean) / std, adversarial pixels clipped to [0, 1]. Other data (mean None): the
    features are used as they are, unclipped.
    """

    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    whiten: bool = False  # ZCA after normalisation: its arrays come as the functions' constants

    @property
    def is_image(self) -> bool:
        return self.mean is not None

    def to_pixels(self, images: jax.Array) -> jax.Array:
        images = images.astype(jnp.float32)
        return images / 255.0 if self.mean is not None else images

    def to_model(self, pixels: jax.Array, constants: Optional[dict] = None) -> jax.Array:
        if self.mean is None:
            return pixels
        inputs = standardize(pixels, self.mean, self.std)
        return whiten(inputs, constants) if self.whiten else inputs

    def normalized(self, pixels: jax.Array) -> jax.Array:
        """The space FGSM attacks by default: after normalisation, before any whitening."""
        return pixels if self.mean is None else standardize(pixels, self.mean, self.std)

    def from_normalized(self, inputs: jax.Array, constants: Optional[dict] = None) -> jax.Array:
        return whiten(inputs, constants) if self.whiten else inputs

    def clip(self, pixels: jax.Array) -> jax.Array:
        return jnp.clip(pixels, 0.0, 1.0) if self.mean is not None else pixels


__all__ = ["InputSpace"]
