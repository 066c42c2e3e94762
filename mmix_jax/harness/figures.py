"""Figures written by the jobs and scripts: matplotlib `Figure` objects, saved as PNG.

No global backend is switched (a notebook's plots stay as they are): each figure is built on
its own `matplotlib.figure.Figure`, which renders headless through Agg when saved.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

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
                        labels: np.ndarray,
                        labeled: Optional[tuple[np.ndarray, np.ndarray]] = None,
                        reference: Optional[tuple[np.ndarray, str]] = None) -> None:
    """One panel per method: P(class 1) over a square grid, its 0.5 contour, and the data.

    Args:
      grid_axis: the G coordinates of each grid axis; each panel's probabilities are [G·G]
        in row-major (y, x) order, as `np.meshgrid(grid_axis, grid_axis)` flattens them.
      labeled: (points, labels) drawn large on top (the labelled points of a semi-supervised
        run; `points` are then drawn faint).
      reference: (values [G·G], caption): a reference boundary, the 0 contour of `values`,
        dashed in every panel and explained by the caption under the panels.
    """
    title_lines = max(title.count("\n") + 1 for title, _ in panels)
    height = 4.4 + 0.3 * title_lines + 0.35 * (reference is not None)  # square panels + text
    fig = Figure(figsize=(4.2 * len(panels), height), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)
    for axis, (title, probs) in zip(axes[0], panels):
        field = probs.reshape(grid_axis.size, grid_axis.size)
        axis.contourf(grid_axis, grid_axis, field, levels=np.linspace(0, 1, 21), cmap="RdBu_r",
                      vmin=0, vmax=1)
        axis.contour(grid_axis, grid_axis, field, levels=[0.5], colors="k", linewidths=1)
        if reference is not None:
            axis.contour(grid_axis, grid_axis, reference[0].reshape(field.shape), levels=[0.0],
                         colors="k", linewidths=1, linestyles="dashed")
        axis.scatter(points[:, 0], points[:, 1], c=labels, cmap="RdBu_r", s=3, edgecolors="none",
                     vmin=-0.5, vmax=1.5, alpha=0.35 if labeled is not None else 1.0)
        if labeled is not None:
            axis.scatter(labeled[0][:, 0], labeled[0][:, 1], c=labeled[1], cmap="RdBu_r", s=60,
                         edgecolors="k", linewidths=1.2, vmin=-0.5, vmax=1.5, marker="o")
        axis.set_title(title)
        axis.set(xlim=(grid_axis[0], grid_axis[-1]), ylim=(grid_axis[0], grid_axis[-1]))
        axis.set_aspect("equal", adjustable="box")  # the grid fills the panel
        axis.set_xticks([])
        axis.set_yticks([])
    if reference is not None:
        fig.supxlabel(reference[1])
    save(fig, path, dpi=110)


def data_efficiency(path: epath.PathLike, rows: Sequence[dict[str, Any]],
                    metrics: Sequence[tuple[str, str]], style_key: str = "") -> None:
    """One panel per (row key, axis label): the metric against the training-set size, one
    point per run (seed), coloured by method, with the per-size mean joined by a line; with
    `style_key` (e.g. "model"), one line style per value of that row key, so that two
    architectures' curves share the axes."""
    fig = Figure(figsize=(4.6 * len(metrics), 3.8))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    kinds = sorted({str(r.get(style_key)) for r in rows}) if style_key else [""]
    styles = dict(zip(kinds, ("-", "--", ":", "-.")))
    markers = dict(zip(kinds, ("o", "^", "s", "D")))
    for axis, (key, label) in zip(axes, metrics):
        for method, color in METHOD_COLORS.items():
            for kind in kinds:
                mine = [r for r in rows if r["method"] == method and r.get(key) is not None
                        and (not style_key or str(r.get(style_key)) == kind)]
                if not mine:
                    continue
                sizes = sorted({r["train_size"] for r in mine})
                axis.scatter([r["train_size"] for r in mine], [r[key] for r in mine],
                             color=color, marker=markers[kind], s=14, alpha=0.7)
                means = [np.mean([r[key] for r in mine if r["train_size"] == n]) for n in sizes]
                axis.plot(sizes, means, color=color, linestyle=styles[kind],
                          label=f"{method} ({kind})" if style_key else method)
        axis.set_xscale("log")
        axis.set_xlabel("training images")
        axis.set_ylabel(label)
    axes[0].legend(fontsize=7 if style_key else 8)
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


def reliability(path: epath.PathLike, panels: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Per panel (title, evaluation["reliability"]): accuracy against mean confidence per bin
    (bars at the bin's accuracy, the diagonal is perfect calibration), bin sizes beneath."""
    fig = Figure(figsize=(3.6 * len(panels), 3.9))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axis, (title, bins) in zip(axes, panels):
        count = np.asarray(bins["count"])
        edges = np.linspace(0.0, 1.0, count.size + 1)
        filled = count > 0
        axis.bar(edges[:-1][filled], np.asarray(bins["accuracy"])[filled], width=1 / count.size,
                 align="edge", color="tab:blue", alpha=0.75, edgecolor="k", lw=0.5,
                 label="accuracy")
        axis.plot(np.asarray(bins["confidence"])[filled], np.asarray(bins["accuracy"])[filled],
                  "k.", ms=4, label="(confidence, accuracy)")
        axis.plot([0, 1], [0, 1], "--", color="tab:gray", lw=1)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("confidence (max softmax)")
        axis.set_title(f"{title}\n{int(count.sum())} test images", fontsize=9)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save(fig, path, dpi=120)


def rotation_accuracy(path: epath.PathLike,
                      sweeps: Sequence[tuple[str, str, dict[str, list[float]]]]) -> None:
    """Accuracy against a fixed rotation angle; one line per (method, label, evaluation
    rotation_sweep), several sweeps of one label (seeds) drawn as thin lines plus their mean.
    Lines are coloured by method; the labels of one method (what else differs: a training-set
    size, mix points) each get their own line style."""
    fig = Figure(figsize=(5.0, 3.8))
    axis = fig.subplots()
    for method, color in METHOD_COLORS.items():
        labels = sorted({name for of, name, _ in sweeps if of == method})
        for label, style in zip(labels, ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)))):
            mine = [sweep for _, name, sweep in sweeps if name == label]
            angles = mine[0]["angle"]
            for sweep in mine:
                axis.plot(sweep["angle"], sweep["accuracy"], color=color, lw=0.6, alpha=0.5,
                          linestyle=style)
            axis.plot(angles, np.mean([s["accuracy"] for s in mine], axis=0), color=color,
                      marker="o", ms=3, linestyle=style, label=f"{label} ({len(mine)} seeds)")
    axis.set_xlabel("rotation angle (degrees)")
    axis.set_ylabel("test accuracy")
    axis.legend(fontsize=7 if len(sweeps) > 6 else 8)
    fig.tight_layout()
    save(fig, path, dpi=120)


def confidence_histograms(path: epath.PathLike,
                          panels: Sequence[tuple[str, dict[str, list[int]]]]) -> None:
    """Per panel (title, evaluation["confidence_histogram"]): the distribution of the maximum
    softmax probability on the test set and on each out-of-distribution set (step lines,
    normalised to fractions)."""
    fig = Figure(figsize=(3.8 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axis, (title, histograms) in zip(axes, panels):
        for name, counts in histograms.items():
            counts = np.asarray(counts, np.float64)
            edges = np.linspace(0.0, 1.0, counts.size + 1)
            style = dict(lw=2.0, color="k") if name == "in_distribution" else dict(lw=1.2)
            axis.stairs(counts / counts.sum(), edges, label=name.replace("_", "-"), **style)
        axis.set_yscale("log")
        axis.set_xlabel("confidence (max softmax)")
        axis.set_title(title, fontsize=9)
    axes[0].set_ylabel("fraction of images")
    axes[-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save(fig, path, dpi=120)


def validation_curves(path: epath.PathLike,
                      curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                      ramp: Optional[tuple[Sequence[float], Sequence[float]]] = None) -> None:
    """Validation error % against epochs, one line per (label, epochs, errors); with `ramp`
    (epochs, w / w_max) the consistency weight's ramp-up on a second axis, dashed."""
    fig = Figure(figsize=(6.4, 3.8))
    axis = fig.subplots()
    for label, epochs, errors in curves:
        axis.plot(epochs, errors, marker="o", ms=3, lw=1.2, label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation error %")
    axis.legend(fontsize=7)
    if ramp is not None:
        twin = axis.twinx()
        twin.plot(ramp[0], ramp[1], "k--", lw=1.0)
        twin.set_ylabel("w / w_max (dashed)")
        twin.set_ylim(0, 1.05)
    fig.tight_layout()
    save(fig, path, dpi=120)
