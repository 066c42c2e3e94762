"""The training loop: config → data + model + state → compiled step → metrics and summaries.

`run(config, workdir)` trains each variant of the config (or the config itself), evaluates it,
and writes `summary.json` (final metrics) into its workdir; a workdir holding a finished run is
refused, never overwritten. For 2-D data it also writes the decision-boundary figure.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers

from mmix_jax import figures
from mmix_jax.configuration import build_model, check_config, mix_spec, variants
from mmix_jax.data import Splits, TrainBatches, load_dataset, off_data_grid
from mmix_jax.evaluate import evaluate_dataset, mean_confidence, predict_probabilities
from mmix_jax.optim import paper_sgd, step_schedule
from mmix_jax.state import TrainState, create_train_state
from mmix_jax.step import mixup_step

SUMMARY_FILE = "summary.json"


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked (e.g. it already holds a finished run)."""


@dataclasses.dataclass
class RunResult:
    state: TrainState
    summary: dict[str, Any]


def write_json_atomically(path: pathlib.Path, payload: Any) -> None:
    """Writes JSON to a temporary file, then renames it: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def refuse_finished(workdirs: list[pathlib.Path]) -> None:
    """Raises WorkdirError if any of `workdirs` already holds a finished run's summary."""
    for workdir in workdirs:
        summary = workdir / SUMMARY_FILE
        if summary.exists():
            raise WorkdirError(
                f"{workdir} already holds a finished run ({summary}); nothing was changed. "
                "Pass a new --workdir, or move that directory away first.")


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(pending)
    return {key: float(np.mean([m[key] for m in fetched])) for key in ("loss", "accuracy")}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                       splits: Splits | None = None) -> RunResult:
    """Trains one configuration, logs progress, evaluates and writes workdir/summary.json."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomically(workdir / "config.json", config.to_dict())
    splits = splits or load_dataset(config.data, config.seed)
    batches = TrainBatches(splits.train, config.batch_size, config.seed)
    total_steps = config.num_epochs * batches.steps_per_epoch
    opt = config.optimizer
    schedule = step_schedule(opt.learning_rate,
                             [m * batches.steps_per_epoch for m in opt.milestones],
                             opt.decay_factor)
    tx = paper_sgd(schedule, momentum=opt.momentum, nesterov=opt.nesterov,
                   weight_decay=opt.weight_decay)
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    state = create_train_state(build_model(config), tx, init_key, jnp.asarray(batches[0]["image"]))
    train_step = jax.jit(functools.partial(mixup_step, config=mix_spec(config)), donate_argnums=0)

    writer = metric_writers.create_default_writer(str(workdir),
                                                  just_logging=jax.process_index() > 0)
    start = time.perf_counter()
    state, metrics = train_step(state, batches[0], jax.random.fold_in(step_key, 0))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    pending, window_start, window_steps, train_start = [metrics], time.perf_counter(), 0, time.perf_counter()
    for step in range(1, total_steps):
        state, metrics = train_step(state, batches[step], jax.random.fold_in(step_key, step))
        pending.append(metrics)
        window_steps += 1
        if (step + 1) % config.log_every_steps == 0 or step + 1 == total_steps:
            scalars = _mean_metrics(pending)  # fetching syncs: the window's time is real
            elapsed = time.perf_counter() - window_start
            scalars["images_per_s"] = window_steps * config.batch_size / max(elapsed, 1e-9)
            scalars["learning_rate"] = float(schedule(step))
            scalars["epoch"] = (step + 1) / batches.steps_per_epoch
            writer.write_scalars(step + 1, scalars)
            pending, window_start, window_steps = [], time.perf_counter(), 0
    train_s = time.perf_counter() - train_start

    test = evaluate_dataset(state, splits.test, config.eval_batch_size)
    train = evaluate_dataset(state, splits.train, config.eval_batch_size)
    summary = {
        "steps": total_steps, "compile_s": compile_s, "train_s": train_s,
        "images_per_s": (total_steps - 1) * config.batch_size / max(train_s, 1e-9),
        "train_accuracy": train["accuracy"], "test_accuracy": test["accuracy"],
        "test_error_percent": test["error_percent"], "test_nll": test["nll"],
    }
    writer.write_scalars(total_steps, {f"final/{k}": v for k, v in summary.items()})
    writer.flush()
    return RunResult(state, summary)


def _two_d_report(result: RunResult, splits: Splits, grid_axis: np.ndarray,
                  batch_size: int) -> np.ndarray:
    """Adds the off-data confidence to the summary; returns P(class 1) on the plotting grid."""
    off_data = off_data_grid(splits.train.images, extent=float(grid_axis[-1]), resolution=60,
                             min_distance=0.3)
    result.summary["off_data_confidence"] = mean_confidence(
        predict_probabilities(result.state, off_data, batch_size))
    result.summary["off_data_points"] = int(off_data.shape[0])
    grid = np.stack(np.meshgrid(grid_axis, grid_axis), axis=-1).reshape(-1, 2)
    return predict_probabilities(result.state, grid, batch_size)[:, 1]


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Validates `config`, then trains and evaluates each of its variants under `workdir`."""
    check_config(config)
    workdir = pathlib.Path(workdir)
    runs = [(name, single, workdir / name if name else workdir)
            for name, single in variants(config)]
    refuse_finished([workdir] + [path for _, _, path in runs])
    splits = load_dataset(config.data, config.seed)
    two_d = splits.train.images.ndim == 2 and splits.train.images.shape[1] == 2
    grid_axis = np.linspace(-1.6, 1.6, 161, dtype=np.float32)
    summaries, panels = {}, []
    for name, single, run_dir in runs:
        logging.info("training %s in %s", name or "the config", run_dir)
        result = train_and_evaluate(single, run_dir, splits)
        if two_d:
            probs = _two_d_report(result, splits, grid_axis, single.eval_batch_size)
            title = (f"{name or 'model'}: test acc {result.summary['test_accuracy']:.3f}\n"
                     f"off-data confidence {result.summary['off_data_confidence']:.2f}")
            panels.append((title, probs))
        if name:
            write_json_atomically(run_dir / SUMMARY_FILE, result.summary)
        summaries[name or "run"] = result.summary
        logging.info("%s: %s", name or "run", json.dumps(result.summary, sort_keys=True))
    if two_d and jax.process_index() == 0:
        figures.decision_boundaries(workdir / "decision_boundaries.png", grid_axis, panels,
                                    splits.test.images, splits.test.labels)
    write_json_atomically(workdir / SUMMARY_FILE, summaries if len(runs) > 1 else summaries["run"])
    return summaries


__all__ = ["RunResult", "WorkdirError", "run", "train_and_evaluate"]
