"""On-device augmentation, inside the compiled step: crop with zero padding, flip, normalise.

The paper's code: CIFAR gets a random crop with 2-pixel zero padding and a horizontal flip,
SVHN the crop only. Inputs are uint8 NHWC batches straight from host memory, so the host only
gathers bytes and everything else runs on the accelerator.
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp


def crop_with_offsets(images: jax.Array, offsets: jax.Array, padding: int) -> jax.Array:
    """Pads each image by `padding` zeros and takes the H×W window at `offsets` [B, 2] (y, x).

    Offsets lie in [0, 2·padding]; (padding, padding) returns the image unchanged.
    """
    chex.assert_rank(images, 4)
    chex.assert_shape(offsets, (images.shape[0], 2))
    _, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

    def crop_one(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    return jax.vmap(crop_one)(padded, offsets)


def random_crop(rng: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """A crop at a uniformly random offset per image (zero padding)."""
    offsets = jax.random.randint(rng, (images.shape[0], 2), 0, 2 * padding + 1)
    return crop_with_offsets(images, offsets, padding)


def random_flip(rng: jax.Array, images: jax.Array) -> jax.Array:
    """Mirrors each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def standardize(pixels: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """Pixels in [0, 1] → (pixels − mean) / std per channel (float32)."""
    return (pixels - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float],
              dtype=jnp.float32) -> jax.Array:
    """uint8 pixels → (x/255 − mean) / std per channel, in `dtype`."""
    return standardize(images.astype(jnp.float32) / 255.0, mean, std).astype(dtype)


def augment(rng: jax.Array, images: jax.Array, *, crop_padding: int, flip: bool) -> jax.Array:
    """Random crop (if crop_padding > 0) then random flip (if flip), on uint8 or float images."""
    crop_rng, flip_rng = jax.random.split(rng)
    if crop_padding > 0:
        images = random_crop(crop_rng, images, crop_padding)
    if flip:
        images = random_flip(flip_rng, images)
    return images
