"""Figures written by the jobs (matplotlib, headless)."""

from __future__ import annotations

import pathlib
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def decision_boundaries(path: pathlib.Path, grid_axis: np.ndarray,
                        panels: Sequence[tuple[str, np.ndarray]], points: np.ndarray,
                        labels: np.ndarray) -> None:
    """One panel per method: P(class 1) over a square grid, its 0.5 contour, and the data.

    Args:
      grid_axis: the G coordinates of each grid axis; each panel's probabilities are [G·G]
        in row-major (y, x) order, as `np.meshgrid(grid_axis, grid_axis)` flattens them.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.8), squeeze=False)
    for axis, (title, probs) in zip(axes[0], panels):
        field = probs.reshape(grid_axis.size, grid_axis.size)
        axis.contourf(grid_axis, grid_axis, field, levels=np.linspace(0, 1, 21), cmap="RdBu_r",
                      vmin=0, vmax=1)
        axis.contour(grid_axis, grid_axis, field, levels=[0.5], colors="k", linewidths=1)
        axis.scatter(points[:, 0], points[:, 1], c=labels, cmap="RdBu_r", s=3, edgecolors="none",
                     vmin=-0.5, vmax=1.5)
        axis.set_title(title)
        axis.set_aspect("equal")
        axis.set_xticks([])
        axis.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
