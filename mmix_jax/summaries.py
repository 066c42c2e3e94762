"""What a run leaves in its workdir besides checkpoints: JSON files written atomically.

- config.json: the config; summary.json: the final scalars; evaluation.json: the full test
  evaluation; evaluation_val_selected.json: the same for the checkpoint chosen on validation;
  history.json: the metrics of every evaluation during training (resumable).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax

SUMMARY_FILE = "summary.json"
EVALUATION_FILE = "evaluation.json"
VAL_SELECTED_FILE = "evaluation_val_selected.json"
HISTORY_FILE = "history.json"


def write_json_atomically(path: pathlib.Path, payload: Any) -> None:
    """Writes JSON to a temporary file, then renames it: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


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
    return scalars
