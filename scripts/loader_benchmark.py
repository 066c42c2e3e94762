#!/usr/bin/env python3
"""Throughput of the streaming input path (grain threads: JPEG decode + Inception crop + flip)
per thread count, beside the train step's consumption rate, on this machine. Prints JSON lines.

    python scripts/loader_benchmark.py --threads 1,2,4 --step-batch 8     # this CPU
    python scripts/loader_benchmark.py --data-dir DIR                      # a prepared set

Without --data-dir it writes scripts/generated_jpegs.py's data set (ImageNet-like sides of
250–500 pixels by default) into a temporary folder. The loader is timed alone (no training
beside it); the step is the one `mmix-train` compiles for configs/imagenet.py's model
(PreActResNet-50, ImageNet stem) at --size, on one device. docs/scaling.md turns the two into
a number of loader threads per accelerator host.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from mmix_jax.data.host_transforms import inception_crop  # noqa: E402
from mmix_jax.data.pipeline import TrainBatches  # noqa: E402
from mmix_jax.data.records import RecordDataset, TfdsRecords  # noqa: E402
from mmix_jax.data.streaming import StreamingBatches  # noqa: E402


def loader_rate(data_dir: str, size: int, threads: int, batch: int, batches: int) -> dict:
    import tensorflow_datasets as tfds

    builder = tfds.builder("generated_jpegs", data_dir=data_dir)
    dataset = RecordDataset(TfdsRecords(builder, "train", encoded=True),
                            transform=functools.partial(inception_crop, size=size))
    stream = StreamingBatches(TrainBatches(dataset, batch, seed=0), batches + 2,
                              threads=threads, prefetch=2 * threads).iterator(0)
    next(stream), next(stream)  # threads started, first reads done
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    seconds = time.perf_counter() - start
    return {"case": "loader", "threads": threads, "batch": batch, "size": size,
            "images_per_s": batches * batch / seconds}


def step_rate(size: int, batch: int, steps: int, width: int) -> dict:
    from mmix_jax import parallel
    from mmix_jax.mixup import MixSpec
    from mmix_jax.models.preact_resnet import preact_resnet
    from mmix_jax.optim import OptimizerSpec, make_optimizer
    from mmix_jax.state import create_train_state
    from mmix_jax.step import mixup_step

    model = preact_resnet(50, num_classes=1000, width=width, stem_type="imagenet")
    tx, _ = make_optimizer(OptimizerSpec(learning_rate=0.1, milestones=(30,)), 100)
    images = jnp.zeros((batch, size, size, 3), jnp.float32)
    state = create_train_state(model, tx, jax.random.key(0), images, init="torch")
    mesh = parallel.make_mesh(jax.devices()[:1])
    step = parallel.make_train_step(functools.partial(mixup_step, config=MixSpec(
        num_classes=1000, alpha=0.2, mix_layers=(0, 1, 2), loss="soft_ce")), mesh)
    batch_arrays = parallel.shard_batch({"image": np.zeros((batch, size, size, 3), np.float32),
                                         "label": np.zeros(batch, np.int32)}, mesh)
    state = parallel.replicate(state, mesh)
    state, metrics = step(state, batch_arrays, jax.random.key(1))
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for i in range(steps):
        state, metrics = step(state, batch_arrays, jax.random.key(2 + i))
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    return {"case": "train_step", "model": f"preactresnet50_w{width}", "batch": batch,
            "size": size, "device": jax.devices()[0].device_kind,
            "images_per_s": steps * batch / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--side", type=int, default=500)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--step-batch", type=int, default=8, help="0: skip the train step")
    parser.add_argument("--step-width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    data_dir = args.data_dir
    if not data_dir:
        from generated_jpegs import make
        data_dir = tempfile.mkdtemp(prefix="mmix_loader_")
        make(data_dir, train=args.images, test=8, side=args.side)
    for threads in (int(t) for t in args.threads.split(",")):
        print(json.dumps(loader_rate(data_dir, args.size, threads, args.batch, args.batches)),
              flush=True)
    if args.step_batch:
        print(json.dumps(step_rate(args.size, args.step_batch, args.steps, args.step_width)),
              flush=True)


if __name__ == "__main__":
    main()
