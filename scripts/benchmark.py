#!/usr/bin/env python3
"""Throughput of the compiled Manifold Mixup train step, one JSON line per case.

For each model × mode (erm / input / manifold) × batch size × dtype it reports compile time,
the median step time and its spread over repeated timed windows (each window ends in
`block_until_ready`), images/s, and peak device memory where the backend reports it. With
--pipeline it also times the same step fed by the real input path (uint8 batches gathered on
the host from an in-memory CIFAR-size set, sent to the device, cropped/flipped/normalised
inside the compiled step). With --torch it runs scripts/torch_reference.py on the same
shapes and prints the ratio ours/theirs. The reference runs in this process's environment (so
the allocator set-up, GLIBC_TUNABLES or a preloaded tcmalloc/jemalloc, which speeds up both,
applies to both); --torch-malloc default also or instead runs it without those variables, as
PyTorch is usually run; every line records them. --torch-device cuda runs it on the GPU
(scripts/torch_on_device.py sets PyTorch's default device, the reference is unchanged).

Each step line also gives the model FLOPs of the step (mmix_jax.evaluation.flops: conv and matmul FLOPs of
the forward pass × 3, independent of what XLA executes), model TFLOP/s and, where the device's
dense peak is known (mmix_jax.evaluation.flops.PEAK_FLOPS) or given with --peak-tflops, the model-FLOPs
utilisation (MFU). With --profile-dir, one extra window per case runs under jax.profiler.trace
(after the timed windows, so tracing never slows them); open it in TensorBoard or Perfetto.

    python scripts/benchmark.py --models preactresnet18 --batch-sizes 128 --torch
    python scripts/benchmark.py --smoke        # seconds: a tiny model, a few steps (CI)
    python scripts/benchmark.py --cpu-devices 2 --cpu-tuning --cross-device-bn --torch  # CPU
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python scripts/benchmark.py --cpu-devices 2 \
        --cpu-tuning --torch --torch-malloc both    # + huge pages, torch with and without
    LD_PRELOAD=libtcmalloc_minimal.so.4 python scripts/benchmark.py --cpu-devices 2 \
        --cpu-tuning --torch --torch-malloc both    # tcmalloc (Debian: libtcmalloc-minimal4)
    python scripts/benchmark.py --batch-sizes 512 --dtypes bfloat16,float32 --pipeline \
        --torch --torch-device cuda --profile-dir /tmp/mmix_trace   # one GPU

The step timed is the one `mmix-train` runs (jit of shard_map over the mesh of all devices).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mmix_jax import parallel
from mmix_jax.data.augment import augment, normalize  # noqa: E402
from mmix_jax.data.pipeline import ArrayDataset, TrainBatches  # noqa: E402
from mmix_jax.evaluation import flops as model_flops
from mmix_jax.harness import host  # noqa: E402
from mmix_jax.harness.methods import PAPER_METHODS  # noqa: E402
from mmix_jax.mixup import MixSpec  # noqa: E402
from mmix_jax.models import (
    DTYPES,  # noqa: E402
    get_model,  # noqa: E402
)
from mmix_jax.models.plain import PlainPreActResNet18  # noqa: E402
from mmix_jax.optim import paper_sgd, step_schedule  # noqa: E402
from mmix_jax.state import create_train_state  # noqa: E402
from mmix_jax.step import mixup_step  # noqa: E402
from mmix_jax.wrap import mixable  # noqa: E402

MODES = {name: (method.alpha, method.mix_layers) for name, method in PAPER_METHODS.items()}
FLAT_MODES = {"erm": (0.0, ()), "input": (1.0, (0,)), "manifold": (2.0, (0, 1, 2, 3))}
TORCH_REF = pathlib.Path(__file__).resolve().parent / "torch_reference.py"
TORCH_ON_DEVICE = pathlib.Path(__file__).resolve().parent / "torch_on_device.py"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def peak_memory_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def time_windows(run_steps: Callable[[int], Any], steps: int, windows: int) -> list[float]:
    """Seconds per step of each of `windows` timed windows of `steps` steps."""
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        jax.block_until_ready(run_steps(steps))
        times.append((time.perf_counter() - start) / steps)
    return times


def profile_window(run_steps: Callable[[int], Any], steps: int, directory: pathlib.Path) -> str:
    """Runs `steps` more steps under jax.profiler.trace into `directory` (TensorBoard layout)."""
    directory.mkdir(parents=True, exist_ok=True)
    with jax.profiler.trace(str(directory)):
        jax.block_until_ready(run_steps(steps))
    return str(directory)


def step_runner(step: Callable, holder: dict, batch: Any, key: jax.Array
                ) -> Callable[[int], Any]:
    """run(n): n steps on `batch`, the state kept in holder["state"] (donated step to step),
    each step's key folded from `key` with the running count holder["step"]."""

    def run(n: int):
        metrics = None
        for _ in range(n):
            holder["state"], metrics = step(holder["state"], batch,
                                            jax.random.fold_in(key, holder["step"]))
            holder["step"] += 1
        return metrics

    return run


def benchmark_case(model_name: str, mode: str, batch_size: int, dtype: str, args,
                   wrapped: bool = False, mixing: str = "auto") -> Any:
    """Times the step `mmix-train` runs: jit(shard_map(crop/flip/normalise + mixup_step)) with the
    batch sharded over every device of the mesh (one device unless --cpu-devices)."""
    alpha, layers = MODES[mode]
    model_kwargs: dict[str, Any] = (
        {"width": args.width} if args.width and model_name.startswith("preact") else {})
    if model_name.startswith("vit"):  # manifold's points (0, 1, 2): input, tokens, block 1
        model_kwargs["patch_size"] = args.patch_size
    if args.cross_device_bn:
        model_kwargs["bn_axis"] = parallel.DATA_AXIS
    model = get_model(model_name, num_classes=args.num_classes, dtype=DTYPES[dtype], **model_kwargs)
    if wrapped:  # the same network as plain Linen, given its mix points by mmix_jax.mixable
        model = mixable(PlainPreActResNet18(args.num_classes, args.width or 64, DTYPES[dtype]),
                        points=("stages_0", "stages_1", "stages_2"))
    spec = MixSpec(num_classes=args.num_classes, alpha=alpha, mix_layers=layers, loss="bce",
                   mixing=mixing)
    shape = (batch_size, args.image_size, args.image_size, 3)
    mesh = parallel.make_mesh()
    parallel.check_divisible(batch_size, mesh, "--batch-sizes")
    tx = paper_sgd(step_schedule(0.1, [], 0.1))
    state = parallel.replicate(
        create_train_state(model, tx, jax.random.key(0), jnp.zeros(shape, jnp.float32)), mesh)
    key = jax.random.key(1)

    def preprocess(rng, batch):
        images = augment(rng, batch["image"], crop_padding=2, flip=True)
        images = normalize(images, CIFAR_MEAN, CIFAR_STD, DTYPES[dtype])
        return {"image": images, "label": batch["label"]}

    step = parallel.make_train_step(functools.partial(mixup_step, config=spec), mesh,
                                    preprocess=preprocess)
    rng = np.random.default_rng(0)
    device_batch = parallel.shard_batch({
        "image": rng.integers(0, 256, shape, dtype=np.uint8),
        "label": rng.integers(0, args.num_classes, batch_size).astype(np.int32)}, mesh)

    start = time.perf_counter()
    compiled = step.lower(state, device_batch, key).compile()
    compile_s = time.perf_counter() - start
    optimized_hlo = compiled.as_text() or ""
    flops = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        # XLA reports the per-device program of the shard_map; the step is all devices' work.
        flops = float(cost.get("flops")) * mesh.devices.size if cost and cost.get("flops") else None
    except Exception:  # noqa: BLE001 - not every backend reports costs
        pass

    holder = {"state": state, "step": 0}
    run_on_device_batch = step_runner(step, holder, device_batch, key)
    run_on_device_batch(args.warmup)
    jax.block_until_ready(holder["state"])
    times = time_windows(run_on_device_batch, args.steps, args.windows)
    median = statistics.median(times)
    step_model_flops = batch_size * model_flops.train_flops_per_example(
        model, shape[1:], DTYPES[dtype])
    peak = (args.peak_tflops * 1e12 if args.peak_tflops
            else model_flops.peak_flops_per_s(jax.devices()[0].device_kind, dtype))
    line = {
        "case": "step", "model": model_name, "wrapped": wrapped, "mode": mode, "mixing": mixing,
        "batch": batch_size, "dtype": dtype,
        "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
        "devices": mesh.devices.size, "cross_device_bn": args.cross_device_bn,
        **allocator_environment(), "jax": jax.__version__,
        "compile_s": round(compile_s, 3),
        "step_s_median": median, "step_s_min": min(times), "step_s_max": max(times),
        "images_per_s": batch_size / median, "windows": args.windows, "steps_per_window": args.steps,
        "peak_memory_bytes": peak_memory_bytes(),
        # Ops that make XLA:GPU copy a predicate to the host and wait, in the optimised program.
        "hlo_while_ops": optimized_hlo.count(" while("),
        "hlo_conditional_ops": optimized_hlo.count(" conditional("),
        "xla_flops_per_step": flops,
        "tflops_per_s": flops / median / 1e12 if flops else None,
        "model_flops_per_step": step_model_flops,
        "model_tflops_per_s": step_model_flops / median / 1e12,
        "peak_tflops_per_device": peak / 1e12 if peak else None,
        "mfu": step_model_flops / median / (peak * mesh.devices.size) if peak else None,
    }
    if args.profile_dir:
        line["profile_dir"] = profile_window(run_on_device_batch, args.steps, pathlib.Path(
            args.profile_dir) / f"{model_name}-{mode}-b{batch_size}-{dtype}")

    if args.pipeline:
        dataset = ArrayDataset(rng.integers(0, 256, (args.pipeline_examples,) + shape[1:], np.uint8),
                               rng.integers(0, args.num_classes, args.pipeline_examples).astype(np.int32))
        batches = TrainBatches(dataset, batch_size, seed=0)

        def run_from_host(n: int):
            metrics = None
            for _ in range(n):
                host = parallel.shard_batch(batches[holder["step"]], mesh)
                holder["state"], metrics = step(holder["state"], host,
                                                jax.random.fold_in(key, holder["step"]))
                holder["step"] += 1
            return metrics

        run_from_host(args.warmup)
        piped = statistics.median(time_windows(run_from_host, args.steps, args.windows))
        line["pipeline_step_s_median"] = piped
        line["pipeline_images_per_s"] = batch_size / piped
        line["pipeline_overhead_percent"] = 100.0 * (piped - median) / median
    return line


def nnx_vs_linen(mode: str, batch_size: int, args) -> dict:
    """Step time of an NNX MLP (mmix_jax.nnx.mixable + nnx.mixup_step) against our Linen MLP
    (mixup_step under jax.jit), the same widths and draws, one device."""
    from flax import nnx

    import mmix_jax.nnx as mnnx

    alpha, layers = FLAT_MODES[mode]
    spec = MixSpec(num_classes=args.num_classes, alpha=alpha, mix_layers=layers, loss="bce")
    width, features = 1024, args.image_size * args.image_size * 3
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(batch_size, features)), jnp.float32),
             "label": jnp.asarray(rng.integers(0, args.num_classes, batch_size), jnp.int32)}
    tx = paper_sgd(step_schedule(0.1, [], 0.1))
    linen = get_model("mlp", num_classes=args.num_classes, widths=(width,) * 3)
    state = create_train_state(linen, tx, jax.random.key(0), batch["image"])
    linen_step = jax.jit(lambda s, b, r: mixup_step(s, b, r, config=spec), donate_argnums=0)

    class NnxMLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            sizes = (features,) + (width,) * 3
            self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
            self.head = nnx.Linear(width, args.num_classes, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            for layer in self.layers:
                x = jax.nn.relu(layer(x))
            return self.head(x)

    model = mnnx.mixable(NnxMLP(nnx.Rngs(0)), points=("layers/0", "layers/1", "layers/2"))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    holder = {"state": state, "step": 0}

    def run_linen(n: int):
        for _ in range(n):
            holder["state"], metrics = linen_step(holder["state"], batch,
                                                  jax.random.key(holder["step"]))
            holder["step"] += 1
        return metrics

    def run_nnx(n: int):
        for _ in range(n):
            metrics = mnnx.mixup_step(model, optimizer, batch, jax.random.key(holder["step"]),
                                      config=spec)
            holder["step"] += 1
        return metrics

    times = {}
    for name, run in (("linen", run_linen), ("nnx", run_nnx)):
        jax.block_until_ready(run(args.warmup))
        times[name] = statistics.median(time_windows(run, args.steps, args.windows))
    return {"case": "ratio", "model": f"mlp {width}x3", "mode": mode, "batch": batch_size,
            "linen_step_s": times["linen"], "nnx_step_s": times["nnx"],
            "nnx_over_linen_step_time": times["nnx"] / times["linen"]}


# What changes the C allocator of a process: glibc's tunables, a preloaded malloc, jemalloc's options.
ALLOCATOR_VARIABLES = ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_CONF")


def mixing_cost(batch_size: int, elements: int, args) -> list[dict]:
    """The mixing alone (λ·h + (1−λ)·h[perm] by select at a traced k, as on an accelerator) on a
    ViT's token state [B, tokens, width] and on a conv feature map [B, H, W, C] of the same
    size, each with its gradient: what a mix point adds to a step, by layout."""
    from mmix_jax.mixup import MixPoint, maybe_mix

    side = int(round((elements // 64) ** 0.5))
    shapes = {"tokens": (batch_size, elements // 64, 64), "feature_map": (batch_size, side, side, 64)}
    perm = jax.random.permutation(jax.random.key(1), batch_size)

    def loss(h, k):
        mixed = maybe_mix(h, 1, MixPoint(k, (1,), True), perm, jnp.float32(0.3))
        return jnp.sum(jnp.square(mixed))

    step = jax.jit(jax.value_and_grad(loss))  # compiled once per shape
    lines = []
    for layout, shape in shapes.items():
        h = jax.random.normal(jax.random.key(0), shape)
        jax.block_until_ready(step(h, jnp.int32(1)))
        times = time_windows(functools.partial(lambda n, h: [step(h, jnp.int32(1))
                                                             for _ in range(n)][-1], h=h),
                             args.steps, args.windows)
        lines.append({"case": "mixing_cost", "layout": layout, "shape": list(shape),
                      "elements_per_example": int(np.prod(shape[1:])),
                      "step_s_median": statistics.median(times)})
    return lines


def allocator_environment(env=os.environ) -> dict[str, str]:
    """The allocator variables of `env` by lower-case name ("" where unset), for the JSON lines."""
    return {name.lower(): env.get(name, "") for name in ALLOCATOR_VARIABLES}


def torch_environments(choice: str) -> list[dict[str, str]]:
    """The environments to run the PyTorch reference in: this process's ("same"), this one
    without the allocator variables, as PyTorch is usually run ("default"), or both."""
    same = dict(os.environ)
    default = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_VARIABLES}
    return {"same": [same], "default": [default], "both": [same, default]}[choice]


def same_model_as_reference(model_name: str, args) -> bool:
    """Whether our case is the reference's network: PreActResNet18, width 64, 10 classes (the
    image size and batch are passed on to it). A ratio against another model compares nothing."""
    return model_name == "preactresnet18" and args.width in (0, 64) and args.num_classes == 10


def torch_reference(mode: str, batch_size: int, args, env: dict[str, str],
                    extra_args: tuple[str, ...] | list[str] = ()) -> dict:
    """One run of the PyTorch reference step in a subprocess with environment `env`
    (`extra_args`, e.g. ["--dtype", "bfloat16", "--compile"], passed on to the script)."""
    command = [sys.executable, str(args.torch_ref), "--batch", str(batch_size), "--steps",
               str(args.torch_steps), "--mode", mode, "--size", str(args.image_size),
               *extra_args]
    if args.torch_device != "cpu":
        command[1:1] = [str(TORCH_ON_DEVICE), args.torch_device]
    if args.torch_threads:
        command += ["--threads", str(args.torch_threads)]
    allocator = allocator_environment(env)
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    if result.returncode != 0:
        return {"case": "torch", "mode": mode, "batch": batch_size, **allocator,
                "device": args.torch_device, "skipped": result.stderr.strip().splitlines()[-1:]}
    return {"case": "torch", **json.loads(result.stdout.strip().splitlines()[-1]),
            "device": args.torch_device, **allocator}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="preactresnet18")
    parser.add_argument("--modes", default="erm,input,manifold")
    parser.add_argument("--batch-sizes", default="128")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--width", type=int, default=0, help="PreActResNet width (0 = 64)")
    parser.add_argument("--patch-size", type=int, default=4, help="ViT patch size (vit_* models)")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--pipeline", action="store_true", help="also time the host input path")
    parser.add_argument("--pipeline-examples", type=int, default=10_000)
    parser.add_argument("--torch", action="store_true", help="also run the PyTorch reference")
    parser.add_argument("--torch-ref", type=pathlib.Path, default=TORCH_REF.resolve())
    parser.add_argument("--torch-steps", type=int, default=5)
    parser.add_argument("--torch-threads", type=int, default=0)
    parser.add_argument("--torch-malloc", choices=("same", "default", "both"), default="same",
                        help="run the reference with this process's allocator variables "
                             "(GLIBC_TUNABLES, LD_PRELOAD, MALLOC_CONF: same), without them "
                             "(default), or once each (both)")
    parser.add_argument("--torch-device", default="cpu",
                        help="PyTorch device for the reference, e.g. cuda (default cpu)")
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="dense peak TFLOP/s of one device for the MFU (0: look the device "
                             "kind up in mmix_jax.evaluation.flops.PEAK_FLOPS; unknown there: no MFU)")
    parser.add_argument("--profile-dir", default="",
                        help="write a jax.profiler trace of one extra window per case here")
    parser.add_argument("--cpu-devices", type=int, default=0,
                        help="split the CPU into this many JAX devices (0: JAX's default)")
    parser.add_argument("--cpu-tuning", action="store_true",
                        help="apply mmix_jax.harness.host.CPU_TUNING_XLA_FLAGS")
    parser.add_argument("--cross-device-bn", action="store_true",
                        help="BatchNorm statistics over the global batch (as one device computes)")
    parser.add_argument("--wrapped", action="store_true",
                        help="also time PreActResNet18 written as plain Linen and wrapped with "
                             "mmix_jax.mixable, and print wrapped / native step time")
    parser.add_argument("--nnx", action="store_true",
                        help="also print the NNX / Linen step-time ratio of a 3×1024 MLP")
    parser.add_argument("--mixing-cost", type=int, default=0, metavar="ELEMENTS",
                        help="also time the mixing alone on a token state and a feature map of "
                             "ELEMENTS values per example each (e.g. 16384)")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny PreActResNet18 (width 4, 16x16), 2 steps: checks the harness")
    args = parser.parse_args(argv)
    if args.smoke:
        args.width, args.image_size, args.steps, args.windows, args.warmup = 4, 16, 2, 2, 1
        args.batch_sizes, args.pipeline_examples = "8", 64
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    host.configure_cpu(args.cpu_devices, args.cpu_tuning)
    print(json.dumps({"case": "environment", "python": platform.python_version(),
                      "jax": jax.__version__, "backend": jax.default_backend(),
                      "devices": [d.device_kind for d in jax.devices()],
                      "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
                      **allocator_environment()}),
          flush=True)
    for model_name in args.models.split(","):
        for batch_size in map(int, args.batch_sizes.split(",")):
            for dtype in args.dtypes.split(","):
                by_mode = {}
                for mode in args.modes.split(","):
                    line = benchmark_case(model_name, mode, batch_size, dtype, args)
                    by_mode[mode] = line
                    print(json.dumps(line), flush=True)
                if args.wrapped and model_name == "preactresnet18":
                    for mode, native in by_mode.items():
                        line = benchmark_case(model_name, mode, batch_size, dtype, args, True)
                        print(json.dumps(line), flush=True)
                        print(json.dumps({
                            "case": "ratio", "model": model_name, "mode": mode,
                            "batch": batch_size, "dtype": dtype, "wrapped_over_native_step_time":
                                line["step_s_median"] / native["step_s_median"]}), flush=True)
                if args.nnx:
                    for mode in by_mode:
                        print(json.dumps(nnx_vs_linen(mode, batch_size, args)), flush=True)
                if args.mixing_cost and model_name == args.models.split(",")[0]:
                    for line in mixing_cost(batch_size, args.mixing_cost, args):
                        print(json.dumps(line), flush=True)
                if "erm" in by_mode and "manifold" in by_mode:
                    print(json.dumps({
                        "case": "ratio", "model": model_name, "batch": batch_size, "dtype": dtype,
                        "manifold_over_erm_step_time":
                            by_mode["manifold"]["step_s_median"] / by_mode["erm"]["step_s_median"]}),
                        flush=True)
                if args.torch:
                    for mode, ours in by_mode.items():
                        for env in torch_environments(args.torch_malloc):
                            theirs = torch_reference(mode, batch_size, args, env)
                            print(json.dumps(theirs), flush=True)
                            if "images_per_s" in theirs:
                                print(json.dumps({
                                    "case": "ratio", "model": model_name, "mode": mode,
                                    "batch": batch_size, "dtype": dtype,
                                    **{f"torch_{name.lower()}": theirs[name.lower()]
                                       for name in ALLOCATOR_VARIABLES},
                                    "same_model": same_model_as_reference(model_name, args),
                                    "ours_over_torch_images_per_s":
                                        ours["images_per_s"] / theirs["images_per_s"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
