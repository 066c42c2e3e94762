"""The training loop: config → data + model + state → compiled step → metrics and summaries.

`run(config, workdir)` trains each variant of the config (or the config itself), evaluates it,
and writes `summary.json` (final metrics) into its workdir; a workdir holding a finished run is
refused, never overwritten. For 2-D data it also writes the decision-boundary figure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from jax.experimental import multihost_utils

from mmix_jax import figures, parallel
from mmix_jax.checkpoint import CheckpointSettings, Checkpoints, abstract_like
from mmix_jax.configuration import (ConfigError, build_model, check_config, init_scheme, mix_spec,
                                    variants)
from mmix_jax.data import (ArrayDataset, Splits, TrainBatches, eval_preprocess, load_dataset,
                           off_data_grid, train_preprocess)
from mmix_jax.evaluate import (InputSpace, eval_settings, evaluate_dataset, full_evaluation,
                               mean_confidence, predict_probabilities)
from mmix_jax.optim import paper_sgd, step_schedule
from mmix_jax.state import TrainState, create_train_state

SUMMARY_FILE = "summary.json"
EVALUATION_FILE = "evaluation.json"
VAL_SELECTED_FILE = "evaluation_val_selected.json"
HISTORY_FILE = "history.json"


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


class Preemption:
    """SIGTERM → save and exit. Across processes JAX's preemption sync point is used, so that
    every process stops at the same step (one process saving alone would hang the others)."""

    def __init__(self):
        self.requested = False
        self._multi = jax.process_count() > 1
        if not self._multi:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        del signum, frame
        self.requested = True

    def reached(self, step: int) -> bool:
        if self._multi:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def restore(self) -> None:
        if not self._multi:
            signal.signal(signal.SIGTERM, self._previous)


class PreemptedError(SystemExit):
    """Raised after the preemption checkpoint is on disk; exits with 128 + SIGTERM."""

    def __init__(self, step: int, path: pathlib.Path):
        super().__init__(128 + signal.SIGTERM)
        self.step, self.path = step, path


def checkpoint_settings(config: ml_collections.ConfigDict, steps_per_epoch: int,
                        has_validation: bool = False) -> CheckpointSettings:
    """config.checkpoint: every_steps (or, if 0/absent, every_epochs), keep, best_metric, ...

    With a validation split the kept best checkpoint is the one reported as "validation
    selected", so its metric must be a validation one (val_accuracy or val_nll). best_metric
    "auto": val_accuracy with a validation split, else test_accuracy (kept, never reported).
    """
    ckpt = config.get("checkpoint") or ml_collections.ConfigDict()
    every = ckpt.get("every_steps") or steps_per_epoch * (ckpt.get("every_epochs") or 1)
    best_metric = ckpt.get("best_metric", "test_accuracy") or None
    if best_metric == "auto":
        best_metric = "val_accuracy" if has_validation else "test_accuracy"
    if has_validation and not (best_metric or "").startswith("val_"):
        raise ConfigError(f"config.checkpoint.best_metric = {best_metric!r} is invalid with a "
                          "validation split: the best checkpoint is chosen on it, so set "
                          "'val_accuracy' (best_mode 'max') or 'val_nll' (best_mode 'min').")
    return CheckpointSettings(every_steps=int(every), keep=int(ckpt.get("keep", 3)),
                              best_metric=best_metric, best_mode=ckpt.get("best_mode", "max"),
                              async_save=bool(ckpt.get("async_save", True)))


class History:
    """The metrics of every evaluation during training (workdir/history.json), resumable:
    entries after the step a run resumes from are dropped, as that run will redo them."""

    def __init__(self, workdir: pathlib.Path, resumed_step: int):
        self.path = workdir / HISTORY_FILE
        entries = json.loads(self.path.read_text()) if self.path.exists() else []
        self.entries = [e for e in entries if e["step"] <= resumed_step]

    def add(self, entry: dict[str, float]) -> None:
        self.entries = [e for e in self.entries if e["step"] != entry["step"]] + [entry]
        if jax.process_index() == 0:
            write_json_atomically(self.path, self.entries)

    def best(self, key: str) -> dict[str, float]:
        """The earliest entry with the lowest `key` (e.g. the best test error seen)."""
        return min(self.entries, key=lambda e: (e[key], e["step"]))


def mesh_for(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    """The mesh over all devices, after checking that both batch sizes split over it."""
    mesh = parallel.make_mesh()
    try:
        parallel.check_divisible(config.batch_size, mesh)
        parallel.check_divisible(config.eval_batch_size, mesh, "config.eval_batch_size")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return mesh


def initial_state(config: ml_collections.ConfigDict, batches: TrainBatches,
                  init_key: jax.Array) -> tuple[TrainState, Any]:
    """A fresh TrainState with the paper's SGD, and the learning-rate schedule (per step)."""
    opt = config.optimizer
    schedule = step_schedule(opt.learning_rate,
                             [m * batches.steps_per_epoch for m in opt.milestones],
                             opt.decay_factor)
    tx = paper_sgd(schedule, momentum=opt.momentum, nesterov=opt.nesterov,
                   weight_decay=opt.weight_decay)
    sample_input = jnp.zeros(batches[0]["image"].shape, jnp.float32)
    return (create_train_state(build_model(config), tx, init_key, sample_input,
                               init=init_scheme(config)), schedule)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                       splits: Splits | None = None) -> RunResult:
    """Trains one configuration (resuming from workdir/checkpoints), evaluates, summarises."""
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        write_json_atomically(workdir / "config.json", config.to_dict())
    splits = splits or load_dataset(config.data, config.seed, config.num_classes)
    mesh = mesh_for(config)
    batches = TrainBatches(splits.train, config.batch_size, config.seed)
    total_steps = config.num_epochs * batches.steps_per_epoch
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    state, schedule = initial_state(config, batches, init_key)
    checkpoints = Checkpoints(workdir, checkpoint_settings(config, batches.steps_per_epoch,
                                                           splits.validation is not None))
    abstract_state = abstract_like(state, parallel.replicated(mesh))
    restored = checkpoints.restore_latest(abstract_state, config.to_dict())
    state = restored if restored is not None else parallel.replicate(state, mesh)
    start_step = int(jax.device_get(state.step))
    history = History(workdir, start_step)
    train_step = parallel.make_train_step(mix_spec(config), mesh,
                                          preprocess=train_preprocess(config.data, splits))
    eval_step = parallel.make_eval_step(mesh, preprocess=eval_preprocess(splits))

    def evaluate(dataset: ArrayDataset) -> dict[str, float]:
        return evaluate_dataset(eval_step, state, dataset, config.eval_batch_size, mesh)

    def save(step: int) -> None:
        metrics = {f"test_{k}": v for k, v in evaluate(splits.test).items()}
        if splits.validation is not None:
            metrics.update({f"val_{k}": v for k, v in evaluate(splits.validation).items()})
        history.add({"step": step, "epoch": step / batches.steps_per_epoch, **metrics})
        blocked = checkpoints.save(step, state, config.to_dict(), metrics)
        logging.info("checkpoint %d started (blocked %.3f s; %s)", step, blocked,
                     ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    # config.tensorboard = False: log only (for machines without TensorFlow).
    writer = metric_writers.create_default_writer(
        str(workdir), just_logging=jax.process_index() > 0 or not config.get("tensorboard", True))
    preemption = Preemption()
    pending: list[dict[str, jax.Array]] = []
    window_start, window_steps, compile_s = time.perf_counter(), 0, 0.0
    train_start = time.perf_counter()
    try:
        for step in range(start_step, total_steps):
            batch = parallel.shard_batch(parallel.process_share(batches[step]), mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(step_key, step))
            pending.append(metrics)
            window_steps += 1
            if step == start_step:  # the first call compiles: time it apart
                jax.block_until_ready(metrics)
                compile_s = time.perf_counter() - window_start
                window_start, window_steps, train_start = time.perf_counter(), 0, time.perf_counter()
            done = step + 1
            if done % config.log_every_steps == 0 or done == total_steps:
                scalars = _mean_metrics(pending)  # fetching syncs: the window's time is real
                elapsed = time.perf_counter() - window_start
                scalars["images_per_s"] = window_steps * config.batch_size / max(elapsed, 1e-9)
                scalars["learning_rate"] = float(schedule(step))
                scalars["epoch"] = done / batches.steps_per_epoch
                writer.write_scalars(done, scalars)
                pending, window_start, window_steps = [], time.perf_counter(), 0
            if preemption.reached(done):
                save(done)
                checkpoints.wait()
                logging.warning("preempted (SIGTERM): saved step %d in %s; rerun the same command "
                                "to resume", done, checkpoints.directory)
                raise PreemptedError(done, checkpoints.directory)
            if done % checkpoints.settings.every_steps == 0 and done != total_steps:
                save(done)
        train_s = time.perf_counter() - train_start
        if total_steps not in checkpoints.steps():
            save(total_steps)
        checkpoints.wait()
        val_selected, best_step = None, None
        if splits.validation is not None:
            best_step = checkpoints.best_step()
            if best_step != total_steps:  # else: the final evaluation below is the same
                val_selected = evaluate_test_split(
                    config, checkpoints.restore_step(best_step, abstract_state), splits, mesh,
                    workdir, VAL_SELECTED_FILE)
    finally:
        preemption.restore()
        checkpoints.close()
    if jax.process_count() > 1:  # replicated state must be bit-identical on every process
        multihost_utils.assert_equal(state.params, "params differ between processes")

    test = evaluate_test_split(config, state, splits, mesh, workdir)
    if best_step == total_steps:
        val_selected = test
        if jax.process_index() == 0:
            write_json_atomically(workdir / VAL_SELECTED_FILE, test)
    train = evaluate(splits.train)
    trained_steps = total_steps - start_step
    best = history.best("test_error_percent")
    summary = {
        "steps": total_steps, "resumed_from_step": start_step, "compile_s": compile_s,
        "train_s": train_s, "devices": int(mesh.devices.size), "processes": jax.process_count(),
        "images_per_s": max(trained_steps - 1, 0) * config.batch_size / max(train_s, 1e-9),
        "device_kind": jax.devices()[0].device_kind, "train_examples": len(splits.train),
        "train_accuracy": train["accuracy"], **summary_scalars(test),
        "best_test_error_percent": best["test_error_percent"], "best_test_epoch": best["epoch"],
        "evaluations": len(history.entries),
    }
    if val_selected is not None:
        summary.update({f"val_selected_{k}": v for k, v in summary_scalars(val_selected).items()})
        summary["val_selected_epoch"] = val_selected["step"] / batches.steps_per_epoch
    writer.write_scalars(total_steps, {f"final/{k}": v for k, v in summary.items()
                                       if isinstance(v, (int, float))})
    writer.flush()
    return RunResult(state, summary)


def summary_scalars(evaluation: dict[str, Any]) -> dict[str, float]:
    """The scalar test metrics of a full evaluation, prefixed test_ (spectrum: its means)."""
    scalars = {f"test_{key}": value for key, value in evaluation.items()
               if isinstance(value, (int, float)) and key != "step"
               and not key.startswith(("fgsm", "spectrum"))}
    for key in ("fgsm_epsilon", "fgsm_space", "fgsm_accuracy", "spectrum_point"):
        if key in evaluation:
            scalars[key] = evaluation[key]
    if "spectrum" in evaluation:
        scalars["spectrum_mean_first"] = evaluation["spectrum"]["mean_first"]
        scalars["spectrum_mean_rest_sum"] = evaluation["spectrum"]["mean_rest_sum"]
    return scalars


def evaluate_test_split(config: ml_collections.ConfigDict, state: TrainState, splits: Splits,
                        mesh: jax.sharding.Mesh, workdir: pathlib.Path,
                        filename: str = EVALUATION_FILE) -> dict[str, Any]:
    """The full evaluation (error, NLL, ECE, FGSM, spectrum) of the test split; process 0
    writes it to workdir/`filename`."""
    results = full_evaluation(state, splits.test, InputSpace(splits.mean, splits.std),
                              eval_settings(config), config.eval_batch_size, mesh,
                              config.num_classes)
    results["step"] = int(jax.device_get(state.step))
    if jax.process_index() == 0:
        write_json_atomically(workdir / filename, results)
    return results


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                        splits: Splits) -> dict[str, Any]:
    """Restores the newest checkpoint in `workdir` and runs the full test evaluation."""
    mesh = mesh_for(config)
    batches = TrainBatches(splits.train, config.batch_size, config.seed)
    state, _ = initial_state(config, batches, jax.random.key(config.seed))  # the restore target
    checkpoints = Checkpoints(workdir, checkpoint_settings(config, batches.steps_per_epoch,
                                                           splits.validation is not None))
    try:
        restored = checkpoints.restore_latest(abstract_like(state, parallel.replicated(mesh)),
                                              config.to_dict())
    finally:
        checkpoints.close()
    if restored is None:
        raise WorkdirError(f"{workdir / 'checkpoints'} holds no checkpoint to evaluate: train "
                           "first, or pass the --workdir of a run.")
    results = evaluate_test_split(config, restored, splits, mesh, workdir)
    logging.info("evaluated %s at step %d: %s", workdir, results["step"],
                 json.dumps(summary_scalars(results), sort_keys=True))
    return results


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


def enable_compilation_cache(cache_dir: str) -> None:
    """Turns on JAX's persistent compilation cache in `cache_dir` (reused across runs)."""
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Validates `config`, then trains and evaluates each of its variants under `workdir`."""
    check_config(config)
    if config.get("compilation_cache_dir"):
        enable_compilation_cache(config.compilation_cache_dir)
    workdir = pathlib.Path(workdir)
    runs = [(name, single, workdir / name if name else workdir)
            for name, single in variants(config)]
    refuse_finished([workdir] + [path for _, _, path in runs])
    splits = load_dataset(config.data, config.seed, config.num_classes)
    two_d = splits.train.images.ndim == 2 and splits.train.images.shape[1] == 2
    grid_axis = np.linspace(-1.6, 1.6, 161, dtype=np.float32)
    summaries, panels = {}, []
    for name, single, run_dir in runs:
        logging.info("training %s in %s on %d %s device(s)", name or "the config", run_dir,
                     jax.device_count(), jax.default_backend())
        result = train_and_evaluate(single, run_dir, splits)
        if two_d:
            probs = _two_d_report(result, splits, grid_axis, single.eval_batch_size)
            title = (f"{name or 'model'}: test acc {result.summary['test_accuracy']:.3f}\n"
                     f"off-data confidence {result.summary['off_data_confidence']:.2f}")
            panels.append((title, probs))
        if name and jax.process_index() == 0:
            write_json_atomically(run_dir / SUMMARY_FILE, result.summary)
        summaries[name or "run"] = result.summary
        logging.info("%s: %s", name or "run", json.dumps(result.summary, sort_keys=True))
    if two_d and jax.process_index() == 0:
        figures.decision_boundaries(workdir / "decision_boundaries.png", grid_axis, panels,
                                    splits.test.images, splits.test.labels)
    named = bool(runs[0][0])
    if jax.process_index() == 0:
        write_json_atomically(workdir / SUMMARY_FILE, summaries if named else summaries["run"])
    return summaries


def evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Evaluates the newest checkpoint of each variant of `config` under `workdir`."""
    check_config(config)
    workdir = pathlib.Path(workdir)
    splits = load_dataset(config.data, config.seed, config.num_classes)
    results = {}
    for name, single in variants(config):
        run_dir = workdir / name if name else workdir
        results[name or "run"] = summary_scalars(evaluate_checkpoint(single, run_dir, splits))
    return results


__all__ = ["EVALUATION_FILE", "RunResult", "WorkdirError", "evaluate", "run",
           "train_and_evaluate"]
