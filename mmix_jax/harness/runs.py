"""A config's runs: validate, refuse finished workdirs, train each variant, write summaries.

`run(config, workdir)` trains every variant of the config (or the config itself) into
workdir/<variant>, evaluates it and writes summary.json; a workdir holding a finished run is
refused, never overwritten. Rerunning a command that was stopped reuses the variants that had
finished and resumes the others from their checkpoints. For 2-D data it also writes the
decision-boundary figure; with unlabelled points it measures how many lie near each
boundary (`mmix_jax.evaluation.separation`), and on the moons it draws the Bayes boundary as the reference.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from mmix_jax.data.datasets import DataSpec, Splits, load_dataset, off_data_grid, two_moons_log_odds
from mmix_jax.data.synthetic import grid_points
from mmix_jax.errors import WorkdirError
from mmix_jax.evaluation.evaluate import mean_confidence, predict_probabilities
from mmix_jax.evaluation.robustness import check_sources
from mmix_jax.evaluation.separation import NEAR_BOUNDARY_RADIUS, share_near_boundary
from mmix_jax.harness import figures
from mmix_jax.harness.configuration import RunSpec, run_specs
from mmix_jax.harness.stored_runs import evaluate_checkpoint, restore_newest, restore_val_selected
from mmix_jax.harness.summaries import (
    SUMMARY_FILE,
    summary_scalars,
    workdir_path,
    write_json_atomically,
)
from mmix_jax.harness.train import RunResult, mesh_for, train_and_evaluate

GRID_AXIS = np.linspace(-1.6, 1.6, 161, dtype=np.float32)  # each axis of the 2-D figure's grid


def refuse_finished(workdir: epath.Path) -> None:
    """Raises WorkdirError if the command's run in `workdir` has finished: its summary.json
    (written last, after every variant) exists. Variants finished before a preemption are not
    refused: `run` reuses them and resumes the rest."""
    summary = workdir / SUMMARY_FILE
    if summary.exists():
        raise WorkdirError(
            f"{workdir} already holds a finished run ({summary}); nothing was changed. "
            "Pass a new --workdir, or move that directory away first.")


def finished_summary(run_dir: epath.Path) -> Optional[dict[str, Any]]:
    """The summary of a variant that finished in `run_dir` (None if it has not)."""
    path = run_dir / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _two_d_report(result: RunResult, splits: Splits, grid_axis: np.ndarray,
                  batch_size: int) -> np.ndarray:
    """Adds the off-data confidence (and, with unlabelled points, the share of them near the
    decision boundary) to the summary; returns P(class 1) on the plotting grid."""
    off_data = off_data_grid(splits.train.images, extent=float(grid_axis[-1]), resolution=60,
                             min_distance=0.3)
    result.summary["off_data_confidence"] = mean_confidence(
        predict_probabilities(result.state, off_data, batch_size))
    result.summary["off_data_points"] = int(off_data.shape[0])
    probabilities = predict_probabilities(result.state, grid_points(grid_axis), batch_size)
    if splits.unlabeled is not None:
        result.summary["unlabeled_near_boundary"] = share_near_boundary(
            splits.unlabeled.images, grid_axis, np.argmax(probabilities, axis=-1))
    return probabilities[:, 1]


def _bayes_log_odds(data: DataSpec, grid_axis: np.ndarray) -> Optional[np.ndarray]:
    """The Bayes log-odds on the plotting grid where the generator's is known (moons)."""
    return (two_moons_log_odds(grid_points(grid_axis), noise=data.noise) if data.name == "moons"
            else None)


def enable_compilation_cache(cache_dir: str) -> None:
    """Turns on JAX's persistent compilation cache in `cache_dir` (reused across runs)."""
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _specs_and_dirs(config: ml_collections.ConfigDict, workdir: epath.Path
                    ) -> list[tuple[str, RunSpec, epath.Path]]:
    return [(name, spec, workdir / name if name else workdir)
            for name, spec in run_specs(config)]


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Validates `config`, then trains and evaluates each of its variants under `workdir`."""
    workdir = workdir_path(workdir)
    runs = _specs_and_dirs(config, workdir)
    first = runs[0][1]
    if first.compilation_cache_dir:
        enable_compilation_cache(first.compilation_cache_dir)
    refuse_finished(workdir)
    splits = load_dataset(first.data, first.seed, first.num_classes)
    for _, spec, _ in runs:  # an unreadable out-of-distribution set fails now, not after training
        check_sources(spec.eval, splits.test, spec.data.data_dir)
    two_d = not splits.is_image_data and splits.test.images.shape[1:] == (2,)
    grid_axis = GRID_AXIS
    bayes = _bayes_log_odds(first.data, grid_axis) if two_d else None
    bayes_near = (share_near_boundary(splits.unlabeled.images, grid_axis, bayes > 0)
                  if bayes is not None and splits.unlabeled is not None else None)
    summaries, panels = {}, []
    for name, spec, run_dir in runs:
        finished = finished_summary(run_dir) if name else None
        if finished is not None:  # a variant done before a preemption: reused, not retrained
            logging.info("%s finished earlier in %s: reusing its summary", name, run_dir)
            # Its state is read back only for the 2-D figure, which needs its predictions.
            state = restore_newest(spec, run_dir, splits, mesh_for(spec)) if two_d else None
            result = RunResult(state, finished)
        else:
            logging.info("training %s in %s on %d %s device(s)", name or "the config", run_dir,
                         jax.device_count(), jax.default_backend())
            result = train_and_evaluate(spec, run_dir, splits)
        if two_d:
            title = f"{name or 'model'}: test acc {result.summary['test_accuracy']:.3f}"
            if splits.validation is not None:  # draw the reported (validation-chosen) state
                state, _, _ = restore_val_selected(spec, run_dir, splits, mesh_for(spec))
                result = RunResult(state, result.summary)
                title = (f"{name or 'model'}: test acc "
                         f"{result.summary['val_selected_test_accuracy']:.3f} (epoch "
                         f"{result.summary['val_selected_epoch']:g})")
            probs = _two_d_report(result, splits, grid_axis, spec.eval_batch_size)
            title += f"\noff-data confidence {result.summary['off_data_confidence']:.2f}"
            if "unlabeled_near_boundary" in result.summary:
                title += (f"\nunlabelled within {NEAR_BOUNDARY_RADIUS:g} of the boundary: "
                          f"{100 * result.summary['unlabeled_near_boundary']:.1f} %")
            if bayes_near is not None:  # the same for every variant: the data's reference
                result.summary["unlabeled_near_bayes_boundary"] = bayes_near
            panels.append((title, probs))
        if name and finished is None and jax.process_index() == 0:
            write_json_atomically(run_dir / SUMMARY_FILE, result.summary)
        summaries[name or "run"] = result.summary
        logging.info("%s: %s", name or "run", json.dumps(result.summary, sort_keys=True))
    if two_d and jax.process_index() == 0:
        labeled = ((splits.train.images, splits.train.labels) if splits.unlabeled is not None
                   else None)
        reference = None
        if bayes is not None:
            reference = (bayes, "dashed: the Bayes boundary" + (
                "" if bayes_near is None else f" (unlabelled within {NEAR_BOUNDARY_RADIUS:g}: "
                f"{100 * bayes_near:.1f} %)"))
        figures.decision_boundaries(workdir / "decision_boundaries.png", grid_axis, panels,
                                    splits.test.images, splits.test.labels, labeled, reference)
    named = bool(runs[0][0])
    if jax.process_index() == 0:
        write_json_atomically(workdir / SUMMARY_FILE, summaries if named else summaries["run"])
    return summaries


def evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
             val_selected: bool = True) -> dict[str, Any]:
    """Evaluates the newest checkpoint of each variant of `config` under `workdir` (and, with
    a validation split and `val_selected`, the checkpoint chosen on it)."""
    runs = _specs_and_dirs(config, workdir_path(workdir))
    first = runs[0][1]
    splits = load_dataset(first.data, first.seed, first.num_classes)
    for _, spec, _ in runs:
        check_sources(spec.eval, splits.test, spec.data.data_dir)
    return {name or "run": summary_scalars(evaluate_checkpoint(spec, run_dir, splits,
                                                               val_selected))
            for name, spec, run_dir in runs}


__all__ = ["GRID_AXIS", "evaluate", "finished_summary", "refuse_finished", "run"]
