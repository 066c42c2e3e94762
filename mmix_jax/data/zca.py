"""ZCA whitening of normalised images (the authors' CIFAR-10 preprocessing for semi-supervised
runs), fitted on the training images and applied on device after augmentation and
normalisation, as their code applies it to each batch."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mmix_jax.data.augment import normalize

# Added to 1/√(eigenvalue), as the authors' cifar10_zca.py does.
ZCA_REGULARIZER = 1e-6


@dataclasses.dataclass(frozen=True, eq=False)
class ZCA:
    """x ↦ (x − mean) · componentsᵀ on flattened images; `components` is symmetric [D, D]."""

    mean: np.ndarray
    components: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The transform as arrays, to pass to a compiled step as an argument (`whiten`)."""
        return {"zca_mean": self.mean, "zca_components": self.components}

    def __call__(self, images: jax.Array) -> jax.Array:
        return whiten(images, self.arrays())


def whiten(images: jax.Array, arrays: dict[str, jax.Array]) -> jax.Array:
    """The ZCA transform given as `ZCA.arrays()` applied to images [B, H, W, C]."""
    chex.assert_rank(images, 4)
    flat = images.reshape(images.shape[0], -1).astype(jnp.float32)
    chex.assert_axis_dimension(flat, 1, arrays["zca_mean"].shape[0])
    white = (flat - jnp.asarray(arrays["zca_mean"])) @ jnp.asarray(arrays["zca_components"]).T
    return white.reshape(images.shape).astype(images.dtype)


def fit_zca(images: np.ndarray, mean: Sequence[float], std: Sequence[float],
            regularizer: float = ZCA_REGULARIZER) -> ZCA:
    """The ZCA transform of uint8 `images` [N, H, W, C] after per-channel normalisation:
    U·diag(1/√s + regularizer)·Uᵀ from the eigendecomposition of their covariance."""
    flat = np.asarray(normalize(images, mean, std), np.float64).reshape(images.shape[0], -1)
    centre = flat.mean(axis=0)
    centred = flat - centre
    covariance = centred.T @ centred / flat.shape[0]
    eigenvalues, vectors = np.linalg.eigh(covariance)
    scale = 1.0 / np.sqrt(np.maximum(eigenvalues, 1e-12)) + regularizer
    components = (vectors * scale) @ vectors.T
    return ZCA(centre.astype(np.float32), components.astype(np.float32))
