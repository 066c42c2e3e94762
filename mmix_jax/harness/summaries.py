"""What a run leaves in its workdir besides checkpoints: JSON files written atomically.

- config.json: the config; summary.json: the final scalars; evaluation.json: the full test
  evaluation; evaluation_val_selected.json: the same for the checkpoint chosen on validation;
  history.json: the metrics of every evaluation during training (resumable).

Every workdir path is an `etils.epath.Path` (Orbax's path type), so a workdir may be a local
folder or object storage (`gs://bucket/run`, through epath's backends).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
from etils import epath

from mmix_jax.evaluation import robustness

SUMMARY_FILE = "summary.json"
EVALUATION_FILE = "evaluation.json"
VAL_SELECTED_FILE = "evaluation_val_selected.json"
HISTORY_FILE = "history.json"


def workdir_path(path: str | os.PathLike) -> epath.Path:
    """`path` as an epath.Path: a URI (gs://...) as it is, a local path made absolute."""
    text = os.fspath(path)
    return epath.Path(text if "://" in text else os.path.abspath(text))


def write_json_atomically(path: epath.PathLike, payload: Any) -> None:
    """Writes JSON to a temporary file, then renames it over `path`: atomic on local disks (a
    reader never sees half a file); on object storage the rename is a copy, and each object
    appears whole once written."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / (path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


class History:
    """The metrics of every evaluation during training (workdir/history.json), resumable:
    entries after the step a run resumes from are dropped, as that run will redo them."""

    def __init__(self, workdir: epath.PathLike, resumed_step: int):
        self.path = epath.Path(workdir) / HISTORY_FILE
        entries = json.loads(self.path.read_text()) if self.path.exists() else []
        self.entries = [e for e in entries if e["step"] <= resumed_step]

    def add(self, entry: dict[str, float]) -> None:
        self.entries = [e for e in self.entries if e["step"] != entry["step"]] + [entry]
        if jax.process_index() == 0:
            write_json_atomically(self.path, self.entries)

    def best(self, key: str) -> dict[str, float]:
        """The earliest entry with the lowest `key` (e.g. the best test error seen)."""
        return min(self.entries, key=lambda e: (e[key], e["step"]))


def summary_scalars(evaluation: dict[str, Any]) -> dict[str, Any]:
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
    scalars.update(robustness.summary_entries(evaluation))
    return scalars
