#!/usr/bin/env python3
"""The representation spectra of ERM / Input Mixup / Manifold Mixup side by side (a PNG).

Reads `evaluation.json` of each run (written at the end of training, or by
`mmix-train --mode=evaluate` with `--config.eval.spectrum_point=K`), and plots, per run, the
singular values of each class's hidden representations at that mix point, plus a table of the
largest singular value and the sum of the rest (means over classes).

    python scripts/plot_spectra.py runs/flat/erm runs/flat/input runs/flat/manifold --out spectra.png
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from mmix_jax.harness import figures


def load(run: pathlib.Path) -> dict:
    path = run / "evaluation.json"
    if not path.exists():
        sys.exit(f"{path} does not exist: finish the run, or evaluate it with "
                 "mmix-train --mode=evaluate --config.eval.spectrum_point=K")
    evaluation = json.loads(path.read_text())
    if "spectrum" not in evaluation:
        sys.exit(f"{path} has no spectrum: evaluate with --config.eval.spectrum_point=K")
    return evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=pathlib.Path, help="run folders (one per method)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("spectra.png"))
    args = parser.parse_args()
    evaluations = [load(run) for run in args.runs]
    for run, evaluation in zip(args.runs, evaluations):
        spectrum = evaluation["spectrum"]
        print(f"{run}: mix point {evaluation['spectrum_point']}, mean largest singular value "
              f"{spectrum['mean_first']:.2f}, mean sum of the rest {spectrum['mean_rest_sum']:.2f}, "
              f"test error {100 * (1 - evaluation['accuracy']):.2f} %")
    figures.spectra(args.out, [(run.name, e["spectrum"]) for run, e in zip(args.runs, evaluations)])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
