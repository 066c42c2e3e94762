#!/usr/bin/env python3
"""Runs a study: many `mmix-train` runs, some at once, each resumable, with its wall time.

    python scripts/study.py fashion_curve --root ~/studies/fashion_curve --parallel 2 \
        --set data.manual_dir=ARCHIVES
    python scripts/study.py flattening_mnist --root ~/studies/flat --set data.path=mnist_10k.npz

Each run trains in ROOT/NAME (its log in ROOT/NAME.log); ROOT/NAME/wall.json adds up the wall
seconds of every invocation. Finished runs (summary.json present) are skipped and stopped ones
resume from their checkpoints, so rerunning the same command continues a study. The studies
(scripts/study_plans.py) state their numbers; `docs/reproduction.md` says why they were chosen.
Then `scripts/reproduce.py --study NAME --read ROOT` writes docs/results/NAME.json and the tables.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import tarfile
import time

from study_plans import STUDIES, Run  # scripts/study_plans.py

ROOT = pathlib.Path(__file__).resolve().parents[1]


def add_wall_time(workdir: pathlib.Path, seconds: float, returncode: int) -> None:
    path = workdir / "wall.json"
    record = json.loads(path.read_text()) if path.exists() else {"wall_s": 0.0, "invocations": 0}
    record.update(wall_s=record["wall_s"] + seconds, invocations=record["invocations"] + 1,
                  last_returncode=returncode)
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def run_all(runs: list[Run], root: pathlib.Path, parallel: int, extra: list[str],
            deadline: float) -> list[str]:
    """Runs what is not finished, `parallel` at a time; stops them all (SIGTERM: they save a
    checkpoint) at `deadline`. Returns the names that did not finish."""
    pending = [r for r in runs if not (root / r.name / "summary.json").exists()]
    active: dict[str, tuple[subprocess.Popen, float, Run]] = {}
    while pending or active:
        while pending and len(active) < parallel and time.time() < deadline:
            run = pending.pop(0)
            log = open(root / f"{run.name}.log", "a")
            process = subprocess.Popen(run.command(root / run.name, extra), cwd=ROOT,
                                       stdout=log, stderr=subprocess.STDOUT)
            active[run.name] = (process, time.time(), run)
            print(f"started {run.name}", flush=True)
        if time.time() >= deadline:
            pending = []
            for process, _, _ in active.values():
                process.terminate()
        for name, (process, started, _) in list(active.items()):
            if process.poll() is not None:
                add_wall_time(root / name, time.time() - started, process.returncode)
                print(f"ended {name}: rc {process.returncode}, {time.time() - started:.0f} s",
                      flush=True)
                del active[name]
        time.sleep(1)
    return [r.name for r in runs if not (root / r.name / "summary.json").exists()]


def evaluate_all(runs: list[Run], root: pathlib.Path, extra: list[str]) -> None:
    """`--mode=evaluate` on every finished run (e.g. with robustness metrics added to the
    config since it trained), one at a time; the wall time goes to wall.json's evaluate_s."""
    for run in runs:
        workdir = root / run.name
        if not (workdir / "summary.json").exists():
            print(f"skipped {run.name}: not finished", flush=True)
            continue
        started = time.time()
        with open(root / f"{run.name}.log", "a") as log:
            code = subprocess.call(run.command(workdir, extra + ["--mode=evaluate"]), cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT)
        record = json.loads((workdir / "wall.json").read_text()) if (
            workdir / "wall.json").exists() else {}
        record.update(evaluate_s=time.time() - started, evaluate_returncode=code)
        (workdir / "wall.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"evaluated {run.name}: rc {code}, {time.time() - started:.0f} s", flush=True)


def pack(root: pathlib.Path, out: pathlib.Path) -> None:
    """The runs' JSON files and logs (no checkpoints) in one archive."""
    with tarfile.open(out, "w:gz") as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and "checkpoints" not in relative.parts and (
                    path.suffix in (".json", ".log")):
                archive.add(path, arcname=str(relative))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--root", type=pathlib.Path, required=True)
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--only", default="", help="regular expression on run names")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a --config.KEY=VALUE for every run, e.g. data.manual_dir=DIR")
    parser.add_argument("--flag", action="append", default=[],
                        help="another mmix-train flag for every run, e.g. --cpu_devices=2")
    parser.add_argument("--deadline_s", type=float, default=0,
                        help="stop (checkpointed) after this many seconds; 0: none")
    parser.add_argument("--pack", type=pathlib.Path, help="write the results archive here")
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    parser.add_argument("--evaluate", action="store_true",
                        help="evaluate the finished runs again from their checkpoints instead")
    args = parser.parse_args()
    runs = [r for r in STUDIES[args.study]() if re.search(args.only, r.name)]
    extra = [f"--config.{kv}" for kv in args.set] + args.flag
    if args.dry_run:
        for run in runs:
            print(" ".join(run.command(args.root / run.name, extra)))
        return
    if args.evaluate:
        evaluate_all(runs, args.root, extra)
        return
    args.root.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.deadline_s if args.deadline_s else float("inf")
    unfinished = run_all(runs, args.root, args.parallel, extra, deadline)
    if args.pack:
        pack(args.root, args.pack)
    print(f"{len(runs) - len(unfinished)} of {len(runs)} runs finished"
          + (f"; rerun to continue {unfinished}" if unfinished else ""))


if __name__ == "__main__":
    main()
