#!/usr/bin/env python3
"""Our test error and NLL beside the paper's, as a markdown table; or a study's results file.

Reads finished runs (any folder holding a run's config.json + summary.json, searched
recursively), or first trains the given configs with `mmix-train` and then reads them:

    python scripts/reproduce.py --read runs/ > results.md
    python scripts/reproduce.py --train configs/cifar10.py:preactresnet18 \
        --train configs/cifar10.py:wrn28_10 --root runs/repro --out results.md

With --study NAME it writes docs/results/NAME.json (one row per run: every number the docs
quote), prints the study's tables (mean and range over seeds per training-set size and
method), and draws docs/figures/NAME_*.png (scripts/study_results.py):

    python scripts/reproduce.py --study fashion_curve --read ~/studies/fashion_curve

Each row is (dataset, model, method); the method is read from the run's config (no mixing:
ERM; mixing at the input only: Input Mixup; else Manifold Mixup). Paper figures are filled in
only where we have checked them against the paper (PAPER below); other cells say "—".
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
from typing import Any, Iterable

from study_results import METHOD_ORDER, method_of, of_study, write_study  # scripts/

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (dataset, model, method) → (test error %, test NLL), Verma et al. 2019, Table 1.
PAPER: dict[tuple[str, str, str], tuple[float, float]] = {
    ("cifar10", "preactresnet18", "ERM"): (4.83, 0.190),
    ("cifar10", "preactresnet18", "Input Mixup"): (3.82, 0.186),
    ("cifar10", "preactresnet18", "Manifold Mixup"): (2.95, 0.137),
}


def model_of(config: dict[str, Any]) -> str:
    model = config["model"]
    name = model["name"]
    if name.startswith("preactresnet") and model.get("width", 64) != 64:
        name += f" (width {model['width']})"
    if name == "mlp":
        widths = [str(w) for w in model["widths"]]
        if model.get("bottleneck"):
            position = model.get("bottleneck_position") or len(widths) // 2
            widths.insert(position, str(model["bottleneck"]))
        name = "mlp " + "-".join(widths)
    return name


def find_runs(roots: Iterable[pathlib.Path]) -> list[pathlib.Path]:
    """Folders holding both config.json and summary.json of a single run."""
    runs = []
    for root in roots:
        for config in sorted(pathlib.Path(root).rglob("config.json")):
            summary = config.with_name("summary.json")
            if summary.exists() and "test_error_percent" in json.loads(summary.read_text()):
                runs.append(config.parent)
    return runs


def row(run: pathlib.Path) -> dict[str, Any]:
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    key = (config["data"]["name"], model_of(config), method_of(config))
    paper = PAPER.get(key)
    return {"dataset": key[0], "model": key[1], "method": key[2],
            "epochs": config["num_epochs"], "error": summary["test_error_percent"],
            "nll": summary["test_nll"], "ece": summary.get("test_ece"),
            "fgsm": summary.get("fgsm_accuracy"), "paper": paper, "run": str(run)}


def _fmt(value: Any, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    rows = sorted(rows, key=lambda r: (r["dataset"], r["model"], METHOD_ORDER.index(r["method"])))
    lines = ["| dataset | model | method | epochs | error % (ours) | error % (paper) | NLL (ours) "
             "| NLL (paper) | ECE | FGSM acc. | run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper_error, paper_nll = r["paper"] or (None, None)
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['method']} | {r['epochs']} "
            f"| {_fmt(r['error'], 2)} | {_fmt(paper_error, 2)} | {_fmt(r['nll'], 3)} "
            f"| {_fmt(paper_nll, 3)} | {_fmt(r['ece'], 4)} | {_fmt(r['fgsm'], 4)} | {r['run']} |")
    return "\n".join(lines) + "\n"


def train(config: str, root: pathlib.Path, extra: list[str]) -> pathlib.Path:
    name = config.split("/")[-1].replace(".py", "").replace(":", "_").replace(",", "_")
    workdir = root / name
    command = [sys.executable, "-m", "mmix_jax.harness.main", f"--config={config}",
               f"--workdir={workdir}", *extra]
    print("running:", " ".join(command), file=sys.stderr)
    subprocess.run(command, cwd=ROOT, check=True)
    return workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--read", action="append", default=[], type=pathlib.Path,
                        help="folder searched for finished runs (repeatable)")
    parser.add_argument("--train", action="append", default=[],
                        help="config to train first, e.g. configs/cifar10.py:preactresnet18")
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path("runs/reproduce"),
                        help="where --train runs go")
    parser.add_argument("--override", action="append", default=[],
                        help="passed to every --train run, e.g. --config.data.manual_dir=DIR")
    parser.add_argument("--out", type=pathlib.Path, help="write the table here (else stdout)")
    parser.add_argument("--study", help="write docs/results/STUDY.json and its figures")
    parser.add_argument("--beside", default="", metavar="OTHER",
                        help="with --study: also draw its curve beside docs/results/OTHER.json's")
    parser.add_argument("--device", default="",
                        help="device of runs that do not record it (e.g. 'cpu (2 cores)')")
    parser.add_argument("--docs", type=pathlib.Path, default=ROOT / "docs")
    args = parser.parse_args()
    roots = list(args.read) + [train(c, args.root, args.override) for c in args.train]
    if not roots:
        parser.error("give --read FOLDER and/or --train CONFIG")
    runs = of_study(args.study, find_runs(roots)) if args.study else find_runs(roots)
    if not runs:
        sys.exit(f"no finished runs (config.json + summary.json) under {', '.join(map(str, roots))}")
    if args.study:
        text = write_study(args.study, runs, args.device, args.docs, args.beside)
    else:
        text = table([row(run) for run in runs])
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
