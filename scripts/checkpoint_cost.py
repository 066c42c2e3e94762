#!/usr/bin/env python3
"""Seconds a checkpoint save costs the training loop, blocking vs async, one JSON line per save.

Saves the full TrainState (params, BatchNorm statistics, SGD momentum) of a model through
`mmix_jax.checkpoint.Checkpoints` into a temporary directory. For each save it reports the time
the `save` call blocked the caller and the time until the checkpoint was complete on disk.

    python scripts/checkpoint_cost.py --model preactresnet18 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mmix_jax import parallel  # noqa: E402
from mmix_jax.checkpoint import CheckpointSettings, Checkpoints  # noqa: E402
from mmix_jax.models import get_model  # noqa: E402
from mmix_jax.optim import paper_sgd, step_schedule  # noqa: E402
from mmix_jax.state import create_train_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="preactresnet18")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--directory", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()

    model = get_model(args.model, num_classes=args.num_classes)
    state = create_train_state(model, paper_sgd(step_schedule(0.1, [], 0.1)), jax.random.key(0),
                               jnp.zeros((2, 32, 32, 3), jnp.float32))
    state = parallel.replicate(state, parallel.make_mesh())
    size = sum(leaf.nbytes for leaf in jax.tree.leaves(state) if hasattr(leaf, "nbytes"))
    with tempfile.TemporaryDirectory(dir=args.directory) as root:
        for async_save in (False, True):
            settings = CheckpointSettings(every_steps=1, keep=2, best_metric=None,
                                          async_save=async_save)
            checkpoints = Checkpoints(pathlib.Path(root) / f"async_{async_save}", settings)
            for step in range(1, args.repeats + 1):
                start = time.perf_counter()
                blocked = checkpoints.save(step, state, {"model": args.model})
                checkpoints.wait()
                complete = time.perf_counter() - start
                print(json.dumps({"model": args.model, "state_mb": round(size / 2**20, 1),
                                  "async": async_save, "step": step, "blocked_s": round(blocked, 4),
                                  "complete_s": round(complete, 4),
                                  "backend": jax.default_backend()}), flush=True)
            checkpoints.close()


if __name__ == "__main__":
    main()
