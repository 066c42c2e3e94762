"""Novel deformations of a test set (the paper's distribution-shift test): rotation, shear, zoom.

Each deformation is an affine resampling about the image centre ((H − 1)/2, (W − 1)/2): the
output pixel at centred coordinates o = (row, col) takes the input at S·o, bilinearly
interpolated, zero (black, in pixel space) outside the image. Per example, the parameter is
drawn from U(low, high) on the host with a generator seeded by (seed, name), so a deformed
test set is the same on every run and device count; the resampling runs on device in batches.

- "rotate": the angle θ in degrees, counterclockwise as displayed (θ = 90 is `np.rot90`);
  S = [[cos θ, sin θ], [−sin θ, cos θ]].
- "shear": the angle s in degrees, the authors' `affine_transforms.Shear` matrix
  S = [[1, −sin s], [0, cos s]] (rows move with the column; s = 0 is the identity).
- "zoom": the magnification m of the content (m > 1 zooms in, m < 1 out); S = I / m.

Presets (`DEFORMATIONS`): rotate20 U(−20°, 20°) and rotate40 U(−40°, 40°) as in the paper,
shear U(−28.6°, 28.6°) (±0.5 rad), zoom_in m ~ U(1.2, 1.4), zoom_out m ~ U(0.6, 0.8). Any
"KIND:LOW:HIGH" (e.g. "rotate:30:30", a fixed angle) is accepted as well.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from mmix_jax.evaluation.input_space import InputSpace

KINDS = ("rotate", "shear", "zoom")


@dataclasses.dataclass(frozen=True)
class Deformation:
    """A named family: KIND with its parameter drawn from U(low, high) per example."""

    name: str
    kind: str
    low: float
    high: float

    def sampling_matrices(self, count: int, seed: int) -> np.ndarray:
        """[count, 2, 2] float32: each example's S, from (seed, name) alone."""
        rng = np.random.default_rng([seed, zlib.crc32(self.name.encode())])
        values = rng.uniform(self.low, self.high, size=count)
        return sampling_matrix(self.kind, values).astype(np.float32)


DEFORMATIONS = {
    "rotate20": Deformation("rotate20", "rotate", -20.0, 20.0),
    "rotate40": Deformation("rotate40", "rotate", -40.0, 40.0),
    "shear": Deformation("shear", "shear", -28.6, 28.6),
    "zoom_in": Deformation("zoom_in", "zoom", 1.2, 1.4),
    "zoom_out": Deformation("zoom_out", "zoom", 0.6, 0.8),
}


def parse(name: str) -> Deformation:
    """A preset by name, or "KIND:LOW:HIGH"; ValueError saying what is accepted otherwise."""
    if name in DEFORMATIONS:
        return DEFORMATIONS[name]
    parts = name.split(":")
    try:
        kind, low, high = parts[0], float(parts[1]), float(parts[2])
        if len(parts) != 3 or kind not in KINDS or low > high or (kind == "zoom" and low <= 0):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"deformation {name!r}: use a preset {sorted(DEFORMATIONS)} or "
                         f"KIND:LOW:HIGH with KIND in {KINDS}, LOW <= HIGH (degrees for rotate "
                         "and shear, a positive magnification for zoom).") from None
    return Deformation(name, kind, low, high)


def sampling_matrix(kind: str, values: np.ndarray) -> np.ndarray:
    """[N, 2, 2] float64 sampling matrices (output → input, centred (row, col) coordinates)."""
    values = np.asarray(values, np.float64)
    if kind == "zoom":
        return np.eye(2)[None] / values[:, None, None]
    angle = np.deg2rad(values)
    cos, sin, zero, one = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    if kind == "rotate":
        rows = (np.stack([cos, sin], -1), np.stack([-sin, cos], -1))
    elif kind == "shear":
        rows = (np.stack([one, -sin], -1), np.stack([zero, cos], -1))
    else:
        raise ValueError(f"deformation kind {kind!r}: choose one of {KINDS}.")
    return np.stack(rows, axis=-2)


def deform(pixels: jax.Array, sampling: jax.Array) -> jax.Array:
    """Images [B, H, W, C] resampled through per-example matrices [B, 2, 2] (float32)."""
    chex.assert_rank(pixels, 4)
    chex.assert_shape(sampling, (pixels.shape[0], 2, 2))
    height, width = pixels.shape[1:3]
    centre = jnp.array([(height - 1) / 2, (width - 1) / 2], jnp.float32)
    grid = jnp.stack(jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                                  jnp.arange(width, dtype=jnp.float32), indexing="ij"), -1)
    centred = (grid - centre).reshape(-1, 2)  # [H·W, 2]

    def one(image: jax.Array, matrix: jax.Array) -> jax.Array:
        coordinates = (centred @ matrix.T + centre).T.reshape(2, height, width)
        resample = lambda channel: map_coordinates(channel, list(coordinates), order=1,  # noqa: E731
                                                   mode="constant", cval=0.0)
        return jax.vmap(resample, in_axes=-1, out_axes=-1)(image)

    return jax.vmap(one)(pixels.astype(jnp.float32), sampling.astype(jnp.float32))


def deformed_logits_fn(space: InputSpace) -> Callable[..., jax.Array]:
    """Per-example logits on the deformed images: the batch carries "sampling" [B, 2, 2]."""
    def fn(state, batch: dict, constants: Optional[dict] = None) -> jax.Array:
        pixels = deform(space.to_pixels(batch["image"]), batch["sampling"])
        return state.apply_fn(state.variables(), space.to_model(pixels, constants), train=False)
    return fn


__all__ = ["DEFORMATIONS", "Deformation", "KINDS", "deform", "deformed_logits_fn", "parse",
           "sampling_matrix"]
