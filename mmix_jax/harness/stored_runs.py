"""Evaluation of a run's stored checkpoints (`--mode=evaluate`, and the 2-D figure of a
reused variant): the newest checkpoint, and the one validation chose, evaluated again with the
config's current evaluation settings, their results written beside the run's summary."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator

import jax
from absl import logging
from etils import epath

from mmix_jax.data.datasets import Splits
from mmix_jax.errors import WorkdirError
from mmix_jax.harness.checkpoint import Checkpoints
from mmix_jax.harness.configuration import RunSpec
from mmix_jax.harness.initialization import abstract_state, state_builder
from mmix_jax.harness.summaries import (
    SUMMARY_FILE,
    VAL_SELECTED_FILE,
    summary_scalars,
    write_json_atomically,
)
from mmix_jax.harness.train import (
    evaluate_test_split,
    mesh_for,
    train_batches,
    val_selected_scalars,
)
from mmix_jax.state import TrainState


def update_summary(workdir: epath.Path, entries: dict[str, Any]) -> None:
    """Rewrites `entries` into the run's summary.json, if the run finished (process 0)."""
    summary_path = workdir / SUMMARY_FILE
    if jax.process_index() == 0 and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        summary.update(entries)
        write_json_atomically(summary_path, summary)


@contextlib.contextmanager
def stored_checkpoints(spec: RunSpec, workdir: epath.Path, splits: Splits,
                       mesh: jax.sharding.Mesh) -> Iterator[tuple[Checkpoints, Any, int]]:
    """The run's Checkpoints (closed on exit), the abstract state to restore onto the mesh, and
    the updates per epoch."""
    batches = train_batches(spec, splits)
    build, _ = state_builder(spec, batches)
    checkpoints = Checkpoints(workdir, spec.checkpoint.settings(batches.steps_per_epoch))
    try:
        yield checkpoints, abstract_state(build, mesh), batches.steps_per_epoch
    finally:
        checkpoints.close()


def restore_newest(spec: RunSpec, workdir: epath.Path, splits: Splits,
                   mesh: jax.sharding.Mesh) -> TrainState:
    """The newest checkpoint's state of the run in `workdir` (WorkdirError if there is none)."""
    with stored_checkpoints(spec, workdir, splits, mesh) as (checkpoints, target, _):
        restored = checkpoints.restore_latest(target, spec.config)
    if restored is None:
        raise WorkdirError(f"{workdir / 'checkpoints'} holds no checkpoint to evaluate: train "
                           "first, or pass the --workdir of a run.")
    return restored


def evaluate_checkpoint(spec: RunSpec, workdir: epath.Path, splits: Splits,
                        val_selected: bool = True) -> dict[str, Any]:
    """Restores the newest checkpoint in `workdir` and runs the full test evaluation; with a
    validation split also the checkpoint chosen on it (evaluation_val_selected.json, and the
    val_selected_* entries of an existing summary.json are rewritten)."""
    mesh = mesh_for(spec)
    results = evaluate_test_split(spec, restore_newest(spec, workdir, splits, mesh), splits,
                                  mesh, workdir)
    logging.info("evaluated %s at step %d: %s", workdir, results["step"],
                 json.dumps(summary_scalars(results), sort_keys=True))
    update_summary(workdir, summary_scalars(results))
    if splits.validation is not None and val_selected:
        evaluate_val_selected(spec, workdir, splits, mesh)
    return results


def restore_val_selected(spec: RunSpec, workdir: epath.Path, splits: Splits,
                         mesh: jax.sharding.Mesh) -> tuple[TrainState, int, int]:
    """(state, step, updates per epoch) of the kept checkpoint with the best validation metric
    (WorkdirError if none has one)."""
    with stored_checkpoints(spec, workdir, splits, mesh) as (checkpoints, target,
                                                             steps_per_epoch):
        best_step = checkpoints.best_step()
        if best_step is None:
            raise WorkdirError(f"{workdir / 'checkpoints'} holds no checkpoint with validation "
                               "metrics to choose from.")
        return checkpoints.restore_step(best_step, target), best_step, steps_per_epoch


def evaluate_val_selected(spec: RunSpec, workdir: epath.Path, splits: Splits,
                          mesh: jax.sharding.Mesh) -> dict[str, Any]:
    """Evaluates the kept checkpoint with the best validation metric and records it."""
    state, best_step, steps_per_epoch = restore_val_selected(spec, workdir, splits, mesh)
    results = evaluate_test_split(spec, state, splits, mesh, workdir, VAL_SELECTED_FILE)
    update_summary(workdir, val_selected_scalars(results, steps_per_epoch))
    logging.info("validation chose step %d of %s: %s", best_step, workdir,
                 json.dumps(summary_scalars(results), sort_keys=True))
    return results


__all__ = ["evaluate_checkpoint", "evaluate_val_selected", "restore_newest",
           "restore_val_selected", "stored_checkpoints",
           "update_summary"]
