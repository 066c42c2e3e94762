#!/usr/bin/env python3
"""Per-epoch validation error of a semi-supervised study's runs, with the consistency weight's
ramp-up, as a figure (issue 22's diagnosis: does the error rise as w grows?), and as a
markdown table on stdout (one column per evaluated epoch, blank where a run has not reached
it, then each run's best and its epoch).

    python scripts/ssl_report.py --read ~/studies/ssl_gate \
        --out docs/figures/ssl_fashion_gate_curves.png
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmix_jax.harness import figures  # noqa: E402
from mmix_jax.harness.methods import semi_supervised_label  # noqa: E402


def label_of(config: dict) -> str:
    """The method (methods.semi_supervised_label), with the consistency weight and the
    authors' BatchNorm order where they apply."""
    label = semi_supervised_label(config)
    ssl = config["semi_supervised"]
    if ssl["unsupervised_weight_max"] > 0:
        label += f", w_max {ssl['unsupervised_weight_max']:g}"
    if ssl.get("batch_norm_passes") == "authors":
        label += ", authors' BN passes"
    return label


Curve = tuple[str, list[float], list[float]]  # label, epochs, validation error %


def markdown_table(curves: list[Curve]) -> str:
    """The curves as a markdown table: a row per run, a column per epoch any run reached."""
    epochs = sorted({epoch for _, run_epochs, _ in curves for epoch in run_epochs})
    lines = ["| run | " + " | ".join(f"{e:g}" for e in epochs) + " | best (epoch) |",
             "|---" * (len(epochs) + 2) + "|"]
    for label, run_epochs, errors in curves:
        by_epoch = dict(zip(run_epochs, errors))
        cells = [f"{by_epoch[e]:.1f}" if e in by_epoch else "" for e in epochs]
        best = int(np.argmin(errors))
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {errors[best]:.1f} ({run_epochs[best]:g}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    runs = sorted(p.parent for p in args.read.glob("*/history.json"))
    configs = [json.loads((run / "config.json").read_text()) for run in runs]
    labels = [label_of(config) for config in configs]
    curves, ramp = [], None
    for run, config, label in zip(runs, configs, labels):
        if labels.count(label) > 1:  # seeds, or the same method with something else varied
            label += f" [{run.name}]"
        history = json.loads((run / "history.json").read_text())
        entries = history["entries"] if isinstance(history, dict) else history
        epochs = [e["epoch"] for e in entries]
        curves.append((label, epochs, [e["val_error_percent"] for e in entries]))
        ssl = config["semi_supervised"]
        if ramp is None and ssl["targets"] == "self" and ssl["unsupervised_weight_max"] > 0:
            t = np.linspace(0, config["num_epochs"], 200)
            ramp = (t, np.exp(-5 * (1 - np.minimum(t / ssl["rampup_epochs"], 1)) ** 2))
        print(f"{label}: " + " ".join(f"{e:g}:{v:.1f}" for e, v in zip(epochs, curves[-1][2])))
    figures.validation_curves(args.out, sorted(curves), ramp)
    print(markdown_table(sorted(curves)))


if __name__ == "__main__":
    main()
