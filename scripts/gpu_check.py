#!/usr/bin/env python3
"""One command for a lent GPU: our steps against ERM and PyTorch, written to one JSON file.

    python scripts/gpu_check.py --out $OUT/gpu_check.json --profile-dir $OUT/traces
    python scripts/gpu_check.py --smoke --out /tmp/gpu_check.json   # seconds, on a CPU (tests)

PreActResNet18 at full width on 32×32×3 inputs (random uint8 images fed from host arrays,
cropped, flipped and normalised inside the compiled step), batch 512 and 128, bfloat16 and
float32; for ERM, Input Mixup, Manifold Mixup and the semi-supervised step: compile time, step
time, images/s, MFU, the `while` / `conditional` ops left in the optimised program (each one
waits on the host on XLA:GPU), the host input path's rate, and Manifold/ERM. Then the same
network and step in PyTorch (scripts/torch_reference.py), eager and `torch.compile`. One
profile trace per mode at the first shape. Cases run in order of importance under a time budget
(default 450 s): what does not fit is listed as skipped, and the file is rewritten after every
case, so a run cut short still leaves its results. Needs no TensorFlow: only jax, flax, optax,
chex (and torch for the reference).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

SCRIPTS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))

from mmix_jax import parallel  # noqa: E402
from mmix_jax.evaluation import flops as model_flops  # noqa: E402
from mmix_jax.models import DTYPES, get_model  # noqa: E402
from mmix_jax.optim import paper_sgd, step_schedule  # noqa: E402
from mmix_jax.semi_supervised import SemiSupervisedSpec, paired_ssl_step  # noqa: E402
from mmix_jax.state import create_train_state  # noqa: E402


def load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchmark = load_script("benchmark")


def ssl_case(batch_size: int, dtype: str, args) -> dict:
    """The semi-supervised Manifold Mixup step (labelled + unlabelled batch of `batch_size`
    each) under jit(shard_map), timed as benchmark_case times the supervised step."""
    model = get_model("preactresnet18", num_classes=10, width=args.width or 64, dtype=DTYPES[dtype])
    spec = SemiSupervisedSpec(num_classes=10, rampup_steps=1000, targets="self", mixing="select")
    shape = (batch_size, args.image_size, args.image_size, 3)
    mesh = parallel.make_mesh()
    state = parallel.replicate(create_train_state(
        model, paper_sgd(step_schedule(0.1, [], 0.1)), jax.random.key(0),
        jnp.zeros(shape, jnp.float32)), mesh)

    def preprocess(rng, batch):
        images = benchmark.augment(rng, batch["image"], crop_padding=2, flip=True)
        images = benchmark.normalize(images, benchmark.CIFAR_MEAN, benchmark.CIFAR_STD,
                                     DTYPES[dtype])
        return {**batch, "image": images}

    step = parallel.make_train_step(paired_ssl_step(spec), mesh,
                                    preprocess=parallel.each_part(preprocess))
    rng = np.random.default_rng(0)
    batch = parallel.shard_batch({
        "labeled": {"image": rng.integers(0, 256, shape, dtype=np.uint8),
                    "label": rng.integers(0, 10, batch_size).astype(np.int32)},
        "unlabeled": {"image": rng.integers(0, 256, shape, dtype=np.uint8)}}, mesh)
    key = jax.random.key(1)
    start = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    hlo = compiled.as_text() or ""
    run = benchmark.step_runner(step, {"state": state, "step": 0}, batch, key)
    jax.block_until_ready(run(args.warmup))
    times = benchmark.time_windows(run, args.steps, args.windows)
    median = statistics.median(times)
    # Three forward passes (targets, labelled, unlabelled) and two backward ones, with equal
    # batches: 1 + 3 + 3 forward-pass units against a supervised step's 3, i.e. 7/3 of it.
    per_example = model_flops.train_flops_per_example(model, shape[1:], DTYPES[dtype])
    step_flops = batch_size * per_example * (1 + 1 + 1 / 3)
    peak = model_flops.peak_flops_per_s(jax.devices()[0].device_kind, dtype)
    line = {"case": "step", "model": "preactresnet18", "mode": "ssl", "batch": batch_size,
            "dtype": dtype, "device_kind": jax.devices()[0].device_kind,
            "compile_s": round(compile_s, 3), "step_s_median": median,
            "step_s_min": min(times), "step_s_max": max(times),
            "images_per_s": 2 * batch_size / median,
            "hlo_while_ops": hlo.count(" while("), "hlo_conditional_ops": hlo.count(" conditional("),
            "model_flops_per_step": step_flops,
            "mfu": step_flops / median / (peak * mesh.devices.size) if peak else None}
    if args.profile_dir:
        line["profile_dir"] = benchmark.profile_window(
            run, args.steps, pathlib.Path(args.profile_dir) / f"ssl-b{batch_size}-{dtype}")
    return line


def plan(args) -> list[tuple[str, dict]]:
    """(kind, parameters) of every case, most important first."""
    shapes = [(b, d) for b in map(int, args.batch_sizes.split(","))
              for d in args.dtypes.split(",")]
    cases: list[tuple[str, dict]] = []
    for index, (batch, dtype) in enumerate(shapes):
        first = index == 0
        for mode in ("erm", "input", "manifold"):
            cases.append(("jax", {"mode": mode, "batch": batch, "dtype": dtype, "first": first}))
        cases.append(("ssl", {"batch": batch, "dtype": dtype, "first": first}))
        if first:  # the ViT at the first shape: its step times and Manifold/ERM
            for mode in ("erm", "input", "manifold"):
                cases.append(("vit", {"mode": mode, "batch": batch, "dtype": dtype}))
        if args.torch:
            for mode in ("erm", "input", "manifold"):
                cases.append(("torch", {"mode": mode, "batch": batch, "dtype": dtype,
                                        "compile": False}))
            if first or args.torch_compile_all:
                for mode in ("erm", "manifold"):
                    cases.append(("torch", {"mode": mode, "batch": batch, "dtype": dtype,
                                            "compile": True}))
    return cases


def run_case(kind: str, params: dict, args) -> dict:
    bench_args = benchmark.parse_args(
        ["--width", str(args.width), "--image-size", str(args.image_size), "--steps",
         str(args.steps), "--windows", str(args.windows), "--warmup", str(args.warmup),
         "--pipeline-examples", str(args.pipeline_examples)]
        + (["--pipeline"] if params.get("first") else [])
        + (["--profile-dir", args.profile_dir] if args.profile_dir and params.get("first") else []))
    if kind == "jax":  # "select": what "auto" runs on an accelerator, also in the CPU smoke run
        return benchmark.benchmark_case("preactresnet18", params["mode"], params["batch"],
                                        params["dtype"], bench_args, mixing="select")
    if kind == "vit":
        return benchmark.benchmark_case(args.vit, params["mode"], params["batch"],
                                        params["dtype"], bench_args, mixing="select")
    if kind == "ssl":
        bench_args.profile_dir = args.profile_dir if params["first"] else ""
        return ssl_case(params["batch"], params["dtype"], bench_args)
    bench_args.torch_device = args.torch_device
    bench_args.torch_steps = args.steps * args.windows
    extra = ["--dtype", params["dtype"]] + (["--compile"] if params["compile"] else [])
    bench_args.torch_ref = SCRIPTS / "torch_reference.py"
    return benchmark.torch_reference(params["mode"], params["batch"], bench_args,
                                     dict(__import__("os").environ), extra_args=extra)


def ratios(lines: list[dict]) -> list[dict]:
    """Manifold/ERM per shape, and ours over PyTorch's best for each mode and shape."""
    steps = {(line["model"], line["mode"], line["batch"], line["dtype"]): line for line in lines
             if line.get("case") == "step"}
    torch_best: dict[tuple, float] = {}
    for line in lines:
        if line.get("case") == "torch" and "images_per_s" in line:
            key = (line["mode"], line["batch"], line.get("dtype", "float32"))
            torch_best[key] = max(torch_best.get(key, 0.0), line["images_per_s"])
    out = []
    for (model, mode, batch, dtype), line in steps.items():
        erm = steps.get((model, "erm", batch, dtype))
        if mode == "manifold" and erm:
            out.append({"case": "ratio", "model": model, "batch": batch, "dtype": dtype,
                        "manifold_over_erm_step_time":
                            line["step_s_median"] / erm["step_s_median"]})
        if model == "preactresnet18" and (mode, batch, dtype) in torch_best:
            out.append({"case": "ratio", "mode": mode, "batch": batch, "dtype": dtype,
                        "ours_over_torch_best_images_per_s":
                            line["images_per_s"] / torch_best[(mode, batch, dtype)]})
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="start no case after this many seconds (the whole run ≤ 8 min)")
    parser.add_argument("--batch-sizes", default="512,128")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pipeline-examples", type=int, default=10_000)
    parser.add_argument("--profile-dir", default="")
    parser.add_argument("--vit", default="vit_s", help="the ViT timed at the first shape (patch 4)")
    parser.add_argument("--no-torch", dest="torch", action="store_false")
    parser.add_argument("--torch-device", default="cuda")
    parser.add_argument("--torch-compile-all", action="store_true",
                        help="torch.compile at every shape (default: the first shape only)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes on the CPU, no PyTorch: checks the harness")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_sizes, args.dtypes, args.width, args.image_size = "8", "float32", 4, 16
        args.steps, args.windows, args.warmup, args.pipeline_examples = 2, 2, 1, 64
        args.vit = "vit_mini"
        args.torch = False
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "environment": {"jax": jax.__version__, "backend": jax.default_backend(),
                        "devices": [d.device_kind for d in jax.devices()]},
        "budget_s": args.budget_s, "lines": [], "skipped": [], "errors": []}
    for kind, params in plan(args):
        if time.perf_counter() - start > args.budget_s:
            result["skipped"].append({"kind": kind, **params})
            continue
        try:
            line = run_case(kind, params, args)
        except Exception as error:  # noqa: BLE001 - one failing case must not lose the others
            result["errors"].append({"kind": kind, **params, "error": repr(error)[-500:]})
            continue
        result["lines"].append(line)
        print(json.dumps(line), flush=True)
        result["ratios"] = ratios(result["lines"])
        result["wall_s"] = time.perf_counter() - start
        out.write_text(json.dumps(result, indent=1))
    result["ratios"] = ratios(result["lines"])
    result["wall_s"] = time.perf_counter() - start
    out.write_text(json.dumps(result, indent=1))
    for line in result["ratios"]:
        print(json.dumps(line), flush=True)
    print(json.dumps({"skipped": len(result["skipped"]), "errors": len(result["errors"]),
                      "wall_s": round(result["wall_s"], 1)}), flush=True)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
