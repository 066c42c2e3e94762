"""Does a 2-D classifier's boundary run through the data or around it (low-density separation)?

Semi-supervised learning on unlabelled points is meant to move the decision boundary into the
regions where they are sparse (the cluster assumption). `share_near_boundary` measures whether it
did: the share of the unlabelled points that lie within a radius of the boundary. A boundary in
the gaps of the data passes near few of them; one that cuts through a cluster passes near many.
The boundary is located on a square grid of predictions, so distances are exact to within half
the grid spacing.
"""

from __future__ import annotations

import chex
import numpy as np

from mmix_jax.data.synthetic import nearest_distance

NEAR_BOUNDARY_RADIUS = 0.1  # the moons' noise scale: "near" is within one noise σ


def boundary_points(grid_axis: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The points [B, 2] midway between horizontally or vertically adjacent grid points whose
    predicted classes differ.

    Args:
      grid_axis: the G coordinates of each axis, increasing.
      classes: the predicted class [G·G] at each grid point, in the row-major (y, x) order of
        `np.meshgrid(grid_axis, grid_axis)` flattened.
    """
    size = grid_axis.size
    chex.assert_shape(classes, (size * size,))
    field = classes.reshape(size, size)
    rows, cols = np.nonzero(field[:, 1:] != field[:, :-1])  # crossings along x
    across_x = np.stack([(grid_axis[cols] + grid_axis[cols + 1]) / 2, grid_axis[rows]], axis=1)
    rows, cols = np.nonzero(field[1:, :] != field[:-1, :])  # crossings along y
    across_y = np.stack([grid_axis[cols], (grid_axis[rows] + grid_axis[rows + 1]) / 2], axis=1)
    return np.concatenate([across_x, across_y]).astype(np.float32)


def share_near_boundary(points: np.ndarray, grid_axis: np.ndarray, classes: np.ndarray,
                        radius: float = NEAR_BOUNDARY_RADIUS) -> float:
    """The share of `points` [N, 2] within `radius` of the boundary between the `classes`
    predicted on the grid (see `boundary_points`). 0 when the grid holds a single class."""
    distances = nearest_distance(points, boundary_points(grid_axis, classes))
    return float(np.mean(distances <= radius))


__all__ = ["NEAR_BOUNDARY_RADIUS", "boundary_points",
           "share_near_boundary"]
