#!/usr/bin/env python3
"""The flattening measures (mmix_jax.evaluation.flattening) of a trained run's checkpoints, on
its training and test splits.

One run (the flags of its `mmix-train` command, which name the config and workdir):

    python scripts/flattening_report.py --config=configs/flattening.py:fashion_mnist,erm,epochs=15 \
        --workdir=RUN --config.data.manual_dir=DIR --per_class=1000 [--every_checkpoint]

writes RUN/flattening.json: for the newest checkpoint (or each one) and each split, the paper's
measure and the scale-free, per-class-count and centred variants at the config's
`eval.spectrum_point`. Every run of a study (scripts/study.py), then their rows in one file:

    python scripts/flattening_report.py --study=flattening_fashion --root=ROOT \
        --set=data.manual_dir=DIR --per_class=1000 --out=docs/results/flattening_fashion.json
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

from absl import app, flags
from ml_collections import config_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory.")
_PER_CLASS = flags.DEFINE_integer("per_class", 1000, "Examples per class for the fixed-count "
                                  "variant, drawn by --draw_seed.")
_DRAW_SEED = flags.DEFINE_integer("draw_seed", 0, "Seed of the per-class draw.")
_EVERY = flags.DEFINE_bool("every_checkpoint", False, "Every kept checkpoint, not the newest only.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "As mmix-train's.")
_STUDY = flags.DEFINE_string("study", None, "Every run of this study (scripts/study.py).")
_ROOT = flags.DEFINE_string("root", None, "The study's root.")
_SET = flags.DEFINE_multi_string("set", [], "KEY=VALUE config overrides for every run.")
_OUT = flags.DEFINE_string("out", None, "With --study: the rows' JSON file.")


def report_run() -> None:
    """RUN/flattening.json for the run of --config and --workdir."""
    from etils import epath

    from mmix_jax.data.datasets import load_dataset
    from mmix_jax.evaluation.evaluate import InputSpace, per_example_step, run_per_example
    from mmix_jax.evaluation.flattening import flattening_table
    from mmix_jax.harness import host
    from mmix_jax.harness.configuration import run_specs
    from mmix_jax.harness.stored_runs import stored_checkpoints
    from mmix_jax.harness.summaries import write_json_atomically
    from mmix_jax.harness.train import mesh_for

    host.configure_cpu(_CPU_DEVICES.value, False)
    [(_, spec)] = run_specs(_CONFIG.value)
    point = spec.eval.spectrum_point
    if point < 0:
        raise app.UsageError("the config has no eval.spectrum_point: nothing to measure.")
    workdir = epath.Path(_WORKDIR.value)
    splits = load_dataset(spec.data, spec.seed, spec.num_classes)
    mesh = mesh_for(spec)
    space = InputSpace(splits.mean, splits.std, whiten=False)
    represent = per_example_step(mesh, "representation", space, point)
    rows = []
    with stored_checkpoints(spec, workdir, splits, mesh) as (checkpoints, target, per_epoch):
        steps = checkpoints.steps() if _EVERY.value else checkpoints.steps()[-1:]
        for step in steps:
            state = checkpoints.restore_step(step, target)
            row = {"step": step, "epoch": step / per_epoch, "point": point}
            for name, dataset in (("train", splits.train), ("test", splits.test)):
                hidden = run_per_example(represent, state, dataset, spec.eval_batch_size, mesh)
                row[name] = flattening_table(hidden, dataset.labels, spec.num_classes,
                                             per_class=_PER_CLASS.value, seed=_DRAW_SEED.value)
            rows.append(row)
            print(f"step {step}: train all rest_sum {row['train']['all']['mean_rest_sum']:.2f}",
                  flush=True)
    write_json_atomically(workdir / "flattening.json", {"checkpoints": rows})


def report_study() -> None:
    """flattening.json for every finished run of --study, then their rows in --out."""
    import study_plans

    root = pathlib.Path(_ROOT.value)
    extra = [f"--config.{kv}" for kv in _SET.value] + [
        f"--per_class={_PER_CLASS.value}", f"--draw_seed={_DRAW_SEED.value}",
        f"--cpu_devices={_CPU_DEVICES.value}"] + (["--every_checkpoint"] if _EVERY.value else [])
    rows = []
    for run in study_plans.STUDIES[_STUDY.value]():
        workdir = root / run.name
        if not (workdir / "summary.json").exists():
            print(f"skipped {run.name}: not finished", flush=True)
            continue
        if not (workdir / "flattening.json").exists():
            started = time.time()
            command = [sys.executable, __file__, *run.flags(workdir, extra)]
            with open(root / f"{run.name}.flattening.log", "a") as log:
                subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
            print(f"measured {run.name}: {time.time() - started:.0f} s", flush=True)
        summary = json.loads((workdir / "summary.json").read_text())
        rows.append({"run": run.name, "config": run.config, "overrides": dict(run.overrides),
                     "test_error_percent": summary.get("test_error_percent"),
                     **json.loads((workdir / "flattening.json").read_text())})
    pathlib.Path(_OUT.value).write_text(json.dumps({"study": _STUDY.value, "rows": rows},
                                                   indent=1) + "\n")
    print(table(rows))


def table(rows: list[dict]) -> str:
    """Markdown: per split, variant and method, each measure's mean (min–max) over the seeds,
    at the newest checkpoint."""
    import numpy as np

    def cell(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.3g}"
        return f"{np.mean(values):.3g} ({min(values):.3g}–{max(values):.3g})"

    methods = sorted({row["run"].rsplit("_s", 1)[0] for row in rows},
                     key=lambda m: ("erm", "input", "manifold").index(m) if m in (
                         "erm", "input", "manifold") else 9)
    lines = ["| split | variant | method | seeds | σ₁ | Σσ₂.. | σ₁/Σσ | effective rank |",
             "|---|---|---|---|---|---|---|---|"]
    newest = [dict(row, final=row["checkpoints"][-1]) for row in rows]
    for split in ("train", "test"):
        for variant in newest[0]["final"][split]:
            for method in methods:
                mine = [r["final"][split][variant] for r in newest
                        if r["run"].rsplit("_s", 1)[0] == method]
                cells = [cell([m[f"mean_{name}"] for m in mine])
                         for name in ("first", "rest_sum", "first_share", "effective_rank")]
                lines.append(f"| {split} | {variant} | {method} | {len(mine)} | "
                             + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _STUDY.value:
        if not (_ROOT.value and _OUT.value):
            raise app.UsageError("--study needs --root and --out.")
        report_study()
    else:
        report_run()


if __name__ == "__main__":
    app.run(main)
