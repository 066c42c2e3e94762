"""Checkpoints of earlier state layouts, read into today's TrainState.

Before `TrainState.model_state` (every non-param collection), the state had a `batch_stats`
field, and its teacher was {"params", "batch_stats"}. A checkpoint in that layout is restored
through a target of the same layout and moved into today's fields: the arrays are the same.
"""

from __future__ import annotations

from typing import Any, Mapping

from mmix_jax.errors import ConfigError


def is_batch_stats_layout(stored: Any) -> bool:
    """Whether the stored state tree (Orbax's metadata of it) has the batch_stats layout."""
    return isinstance(stored, Mapping) and "batch_stats" in stored and "model_state" not in stored


def batch_stats_target(abstract_state: Any) -> dict[str, Any]:
    """The restore target, in the batch_stats layout, for today's `abstract_state`."""
    extra = sorted(set(abstract_state.model_state) - {"batch_stats"})
    if extra:
        raise ConfigError(
            f"the checkpoint predates model_state and holds batch_stats only, but this model "
            f"also has the collections {extra}: restore it with the model it was written for.")
    teacher = abstract_state.teacher
    return {"step": abstract_state.step, "params": abstract_state.params,
            "batch_stats": abstract_state.model_state.get("batch_stats", {}),
            "opt_state": abstract_state.opt_state,
            "teacher": None if teacher is None else {
                "params": teacher["params"],
                "batch_stats": teacher["model_state"].get("batch_stats", {})}}


def from_batch_stats_layout(abstract_state: Any, restored: Mapping[str, Any]) -> Any:
    """Today's state from a state `restored` through `batch_stats_target`."""

    def model_state(stats: Any) -> dict[str, Any]:
        return {"batch_stats": stats} if stats else {}

    teacher = restored["teacher"]
    return abstract_state.replace(
        step=restored["step"], params=restored["params"], opt_state=restored["opt_state"],
        model_state=model_state(restored["batch_stats"]),
        teacher=None if teacher is None else {"params": teacher["params"],
                                              "model_state": model_state(teacher["batch_stats"])})
