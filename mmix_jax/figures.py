"""Figures written by the jobs and scripts: matplotlib `Figure` objects, saved as PNG.

No global backend is switched (a notebook's plots stay as they are): each figure is built on
its own `matplotlib.figure.Figure`, which renders headless through Agg when saved.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from etils import epath
from matplotlib.figure import Figure

METHOD_COLORS = {"ERM": "tab:gray", "Input Mixup": "tab:blue", "Manifold Mixup": "tab:red"}


def save(fig: Figure, path: epath.PathLike, dpi: int) -> None:
    """Writes `fig` as PNG through epath (a local file or object storage)."""
    with epath.Path(path).open("wb") as file:
        fig.savefig(file, format="png", dpi=dpi)


def decision_boundaries(path: epath.PathLike, grid_axis: np.ndarray,
                        panels: Sequence[tuple[str, np.ndarray]], points: np.ndarray,
                        labels: np.ndarray) -> None:
    """One panel per method: P(class 1) over a square grid, its 0.5 contour, and the data.

    Args:
      grid_axis: the G coordinates of each grid axis; each panel's probabilities are [G·G]
        in row-major (y, x) order, as `np.meshgrid(grid_axis, grid_axis)` flattens them.
    """
    fig = Figure(figsize=(4.2 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
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
    save(fig, path, dpi=110)


def data_efficiency(path: epath.PathLike, rows: Sequence[dict[str, Any]],
                    metrics: Sequence[tuple[str, str]]) -> None:
    """One panel per (row key, axis label): the metric against the training-set size, one
    point per run (seed), coloured by method, with the per-size mean joined by a line."""
    fig = Figure(figsize=(4.6 * len(metrics), 3.8))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for axis, (key, label) in zip(axes, metrics):
        for method, color in METHOD_COLORS.items():
            mine = [r for r in rows if r["method"] == method and r.get(key) is not None]
            if not mine:
                continue
            sizes = sorted({r["train_size"] for r in mine})
            axis.scatter([r["train_size"] for r in mine], [r[key] for r in mine], color=color,
                         s=14, alpha=0.7)
            means = [np.mean([r[key] for r in mine if r["train_size"] == n]) for n in sizes]
            axis.plot(sizes, means, color=color, label=method)
        axis.set_xscale("log")
        axis.set_xlabel("training images")
        axis.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save(fig, path, dpi=120)


def spectra(path: epath.PathLike, panels: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Per panel (title, evaluation spectrum): each class's singular values, log scale."""
    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axis, (title, spectrum) in zip(axes, panels):
        for label, values in enumerate(spectrum["singular_values"]):
            axis.plot(np.arange(1, len(values) + 1), values, marker=".", lw=1, label=str(label))
        axis.set_yscale("log")
        axis.set_xlabel("singular value index")
        axis.set_title(f"{title}: first {spectrum['mean_first']:.1f}, "
                       f"rest {spectrum['mean_rest_sum']:.1f}", fontsize=9)
    axes[0].set_ylabel("singular value (per class)")
    axes[-1].legend(title="class", fontsize=7, ncol=2)
    fig.tight_layout()
    save(fig, path, dpi=120)
