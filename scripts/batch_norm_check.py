#!/usr/bin/env python3
"""Does a run's evaluation suffer from BatchNorm statistics gathered on mixed batches?

For every kept checkpoint of a finished or stopped run, the validation error and NLL with the
running statistics as stored, and with statistics recomputed on clean (unmixed, unaugmented)
batches of the run's unlabelled pool (its training set if it has none): `--batches` train-mode
passes from the stored statistics, so with the models' momentum 0.9 the result is an average
weighted towards the last ten or so clean batches; and with each validation batch's own
statistics (train mode, as the targets pass sees its batch; dropout on where the model has
it), with the share of the most predicted class, which tells a collapsed network from one
evaluated with the wrong statistics. The weights are the ones the run is evaluated with
(ICT's teacher). Only what validation sees is reported.

    python scripts/batch_norm_check.py --workdir ~/studies/ssl_gate/manifold_ict_settings_s0
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmix_jax.configuration import run_spec  # noqa: E402
from mmix_jax.data import load_dataset  # noqa: E402
from mmix_jax.evaluate import classification_metrics  # noqa: E402
from mmix_jax.input_space import InputSpace  # noqa: E402
from mmix_jax.state import TrainState  # noqa: E402
from mmix_jax.stored_runs import stored_checkpoints  # noqa: E402
from mmix_jax.train import evaluated, mesh_for  # noqa: E402


def recomputed_statistics(state: TrainState, batches: list[jax.Array], seed: int) -> Any:
    """The state's batch_stats after a train-mode pass over each clean batch in turn."""
    @jax.jit
    def update(stats: Any, inputs: jax.Array, key: jax.Array) -> Any:
        _, new = state.apply_fn({"params": state.params, "batch_stats": stats}, inputs,
                                train=True, mutable=["batch_stats"], rngs={"dropout": key})
        return new["batch_stats"]

    stats, key = state.batch_stats, jax.random.key(seed)
    for inputs in batches:
        key, sub = jax.random.split(key)
        stats = update(stats, inputs, sub)
    return stats


def own_statistics_predictions(state: TrainState, inputs: jax.Array, batch_size: int,
                               seed: int) -> np.ndarray:
    """Predicted classes with BatchNorm normalising each batch by its own statistics."""
    @jax.jit
    def predict(x: jax.Array, key: jax.Array) -> jax.Array:
        logits, _ = state.apply_fn(state.variables(), x, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": key})
        return logits.argmax(-1)

    keys = jax.random.split(jax.random.key(seed), -(-inputs.shape[0] // batch_size))
    return np.concatenate([np.asarray(predict(inputs[i:i + batch_size], keys[i // batch_size]))
                           for i in range(0, inputs.shape[0], batch_size)])


def error_and_nll(state: TrainState, stats: Any, inputs: jax.Array, labels: np.ndarray,
                  batch_size: int = 500) -> tuple[float, float]:
    """Validation error (%) and mean NLL of `state` evaluated with BatchNorm statistics `stats`."""
    logits = jax.jit(lambda x: state.apply_fn({"params": state.params, "batch_stats": stats},
                                              x, train=False))
    out = np.concatenate([np.asarray(logits(inputs[i:i + batch_size]))
                          for i in range(0, len(labels), batch_size)])
    metrics = classification_metrics(out, labels)
    return metrics["error_percent"], metrics["nll"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True,
                        help="a run's folder (config.json and checkpoints/)")
    parser.add_argument("--batches", type=int, default=50, help="clean batches per checkpoint")
    parser.add_argument("--out", type=pathlib.Path, help="also write the rows here (JSON)")
    args = parser.parse_args()
    config_path = args.workdir / "config.json"
    if not config_path.exists():
        sys.exit(f"{config_path} does not exist: pass the --workdir of one run.")
    spec = run_spec(ml_collections.ConfigDict(json.loads(config_path.read_text())))
    splits = load_dataset(spec.data, spec.seed, spec.num_classes)
    if splits.validation is None or splits.zca is not None:
        sys.exit("this check needs a run with a validation split and without ZCA whitening.")
    space = InputSpace(splits.mean, splits.std)

    def model_inputs(images: np.ndarray) -> jax.Array:
        return space.to_model(space.to_pixels(jnp.asarray(images)))

    pool = splits.unlabeled if splits.unlabeled is not None else splits.train
    rows_needed = args.batches * spec.batch_size
    rows = np.random.default_rng(spec.seed).choice(len(pool.labels), rows_needed,
                                                   replace=rows_needed > len(pool.labels))
    clean = [model_inputs(pool.images[rows[i:i + spec.batch_size]])
             for i in range(0, rows_needed, spec.batch_size)]
    inputs, labels = model_inputs(splits.validation.images), splits.validation.labels
    results = []
    with stored_checkpoints(spec, args.workdir, splits, mesh_for(spec)) as (
            checkpoints, target, steps_per_epoch):
        for step in checkpoints.steps():
            state = evaluated(spec, checkpoints.restore_step(step, target))
            if not state.batch_stats:
                sys.exit(f"{spec.model.name} keeps no BatchNorm statistics: nothing to check.")
            stored = error_and_nll(state, state.batch_stats, inputs, labels)
            clean_stats = recomputed_statistics(state, clean, spec.seed)
            recomputed = error_and_nll(state, clean_stats, inputs, labels)
            own = own_statistics_predictions(state, inputs, spec.batch_size, spec.seed)
            share = np.bincount(own, minlength=spec.num_classes).max() / len(own)
            results.append(dict(step=step, epoch=step / steps_per_epoch,
                                val_error_stored=stored[0], val_nll_stored=stored[1],
                                val_error_clean=recomputed[0], val_nll_clean=recomputed[1],
                                val_error_own=100.0 * float(np.mean(own != labels)),
                                largest_class_share_own=float(share)))
            print(f"step {step} (epoch {step / steps_per_epoch:g}): validation error "
                  f"{stored[0]:.2f} % (NLL {stored[1]:.3f}) with the stored statistics, "
                  f"{recomputed[0]:.2f} % (NLL {recomputed[1]:.3f}) with clean ones, "
                  f"{results[-1]['val_error_own']:.2f} % with each batch's own (the most "
                  f"predicted class: {share:.0%} of the images)", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
