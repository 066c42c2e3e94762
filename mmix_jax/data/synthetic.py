"""Generated 2-D data (no download): two interleaved spirals, as in the paper's Figure 1, and
two moons, the semi-supervised toy of the ICT paper's Figure 1."""

from __future__ import annotations

import chex
import numpy as np

from mmix_jax.data.pipeline import ArrayDataset


def grid_points(grid_axis: np.ndarray) -> np.ndarray:
    """The square grid's points [G·G, 2] in the row-major (y, x) order of
    `np.meshgrid(grid_axis, grid_axis)` flattened: the layout of `classes` below."""
    return np.stack(np.meshgrid(grid_axis, grid_axis), axis=-1).reshape(-1, 2)


def nearest_distance(points: np.ndarray, others: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Each point's [N] distance to the nearest of `others` [M, D] (inf where M = 0), computed
    `chunk` points at a time so that memory stays at chunk × M."""
    chex.assert_rank([points, others], 2)
    if others.shape[0] == 0:
        return np.full(points.shape[0], np.inf, np.float32)
    nearest = [np.sqrt(((points[i:i + chunk, None, :] - others[None]) ** 2).sum(-1)).min(1)
               for i in range(0, points.shape[0], chunk)]
    return np.concatenate(nearest)


def two_spirals(num_points: int, *, noise: float, turns: float, seed: int) -> ArrayDataset:
    """Points on two spiral arms, half a turn apart, radius in [0, 1], with Gaussian noise.

    Class c lies at angle θ + c·π, radius θ / (2π·turns), θ drawn so points are uniform along
    the radius. Images are float32 [N, 2], labels int32 [N] in {0, 1}.
    """
    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.uniform(0.0, 1.0, num_points)) * 0.95 + 0.05
    labels = rng.integers(0, 2, num_points).astype(np.int32)
    angle = radius * 2 * np.pi * turns + labels * np.pi
    points = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    points += noise * rng.standard_normal(points.shape)
    return ArrayDataset(points.astype(np.float32), labels)


def two_moons(num_points: int, *, noise: float, seed: int) -> ArrayDataset:
    """Two interleaved half circles of radius 1, centred on the origin, with Gaussian noise.

    Class 0 is (cos t − ½, sin t − ¼), class 1 (½ − cos t, ¼ − sin t), t ~ U[0, π]: the
    usual two moons (scikit-learn's make_moons) shifted by (−½, −¼). Without noise the arcs
    are ½ apart at their closest. Images float32 [N, 2], labels int32 [N].
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, num_points).astype(np.int32)
    angle = rng.uniform(0.0, np.pi, num_points)
    upper = np.stack([np.cos(angle) - 0.5, np.sin(angle) - 0.25], axis=1)
    points = np.where(labels[:, None] == 0, upper, -upper)
    points += noise * rng.standard_normal(points.shape)
    return ArrayDataset(points.astype(np.float32), labels)


def two_moons_log_odds(points: np.ndarray, *, noise: float,
                       quadrature_points: int = 512) -> np.ndarray:
    """The Bayes log-odds log p(class 1 | x) − log p(class 0 | x) [N] of `two_moons` data.

    Under the generator each class is equally likely and its density is the arc's uniform
    mixture of isotropic Gaussians (std `noise`), integrated over t ∈ [0, π] by the midpoint
    rule in log space. The sign is the Bayes classifier: its boundary runs along the gap.
    """
    if noise <= 0:
        raise ValueError(f"noise must be > 0 for a Bayes classifier, got {noise}")
    angle = (np.arange(quadrature_points) + 0.5) * np.pi / quadrature_points
    upper = np.stack([np.cos(angle) - 0.5, np.sin(angle) - 0.25], axis=1)
    points = np.asarray(points, np.float64)

    def log_density(chunk: np.ndarray, arc: np.ndarray) -> np.ndarray:  # up to a shared constant
        exponents = -((chunk[:, None, :] - arc[None]) ** 2).sum(-1) / (2 * noise ** 2)
        top = exponents.max(axis=1)
        return top + np.log(np.exp(exponents - top[:, None]).mean(axis=1))

    return np.concatenate([log_density(points[i:i + 1024], -upper)
                           - log_density(points[i:i + 1024], upper)
                           for i in range(0, len(points), 1024)])


def off_data_grid(data: np.ndarray, *, extent: float, resolution: int,
                  min_distance: float) -> np.ndarray:
    """Grid points of [−extent, extent]² farther than `min_distance` from every point of `data`."""
    grid = grid_points(np.linspace(-extent, extent, resolution, dtype=np.float32))
    return grid[nearest_distance(grid, data) > min_distance]
