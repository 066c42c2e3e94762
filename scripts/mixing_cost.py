#!/usr/bin/env python3
"""What mixing costs: Manifold / ERM and new / old mixing step time, timed windows interleaved.

On a noisy host, cases timed one after the other drift apart by more than the effect measured
(here ±15 % between invocations). This script compiles and warms up every case first, then
times one window of each case in a fresh random order, `--rounds` times over, and reports each
case's median and the median and 95 % bootstrap interval of the per-round ratios. "old" is the
mixing before the select (scripts/legacy_mixing.py: a lax.cond at every point,
jax.random.beta); "new" is this backend's default (mixing="auto": on CPU a cond at each
eligible point, λ loop-free) and "select" what accelerators run.

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python scripts/mixing_cost.py --width 16 \\
        --cpu-devices 2 --cpu-tuning --rounds 15
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import sys

import numpy as np

SCRIPTS = pathlib.Path(__file__).resolve().parent


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ratio_summary(numerator: list[float], denominator: list[float], seed: int = 0) -> dict:
    """Median of the per-round ratios and a 95 % bootstrap interval of that median."""
    ratios = np.asarray(numerator) / np.asarray(denominator)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(ratios, (2000, ratios.size)), axis=1)
    return {"median": float(np.median(ratios)),
            "ci95": [float(np.quantile(medians, 0.025)), float(np.quantile(medians, 0.975))]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="steps per window")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cpu-devices", type=int, default=0)
    parser.add_argument("--cpu-tuning", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    benchmark = load_script("benchmark")
    legacy = load_script("legacy_mixing")
    benchmark.host.configure_cpu(args.cpu_devices, args.cpu_tuning)
    size = ["--width", "4", "--image-size", "16"] if args.smoke else [
        "--width", str(args.width), "--image-size", str(args.image_size)]
    bench_args = benchmark.parse_args(size + ["--warmup", "2"])
    batch = 8 if args.smoke else args.batch_size
    runs = {}
    for mode in ("erm", "input", "manifold"):
        runs[f"{mode} new"] = benchmark.benchmark_case("preactresnet18", mode, batch, args.dtype,
                                                       bench_args, prepare_only=True)
    runs["manifold select"] = benchmark.benchmark_case(
        "preactresnet18", "manifold", batch, args.dtype, bench_args, prepare_only=True,
        mixing="select")  # what accelerators run ("new" is this backend's "auto")
    for mode in ("input", "manifold"):
        with legacy.legacy_mixing():  # traced and warmed up inside: the old program is cached
            runs[f"{mode} old"] = benchmark.benchmark_case(
                "preactresnet18", mode, batch, args.dtype, bench_args, prepare_only=True)
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = np.random.default_rng(0)
    for _ in range(2 if args.smoke else args.rounds):
        for name in order.permutation(list(runs)):  # a new order each round: no position bias
            times[name].extend(benchmark.time_windows(runs[name], args.steps, 1))
    result = {"case": "mixing_cost", "batch": batch, "dtype": args.dtype,
              "width": 4 if args.smoke else args.width, "rounds": len(times["erm new"]),
              "devices": benchmark.jax.device_count(),
              "step_s_median": {name: statistics.median(t) for name, t in times.items()},
              "manifold_over_erm": ratio_summary(times["manifold new"], times["erm new"]),
              "input_over_erm": ratio_summary(times["input new"], times["erm new"]),
              "old_manifold_over_erm": ratio_summary(times["manifold old"], times["erm new"]),
              "manifold_new_over_old": ratio_summary(times["manifold new"], times["manifold old"]),
              "manifold_select_over_erm": ratio_summary(times["manifold select"],
                                                        times["erm new"]),
              "manifold_select_over_old": ratio_summary(times["manifold select"],
                                                        times["manifold old"]),
              "input_new_over_old": ratio_summary(times["input new"], times["input old"])}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
