"""Stopping a diverging run: the harness never trains on, or saves, a non-finite state.

The training loop hands each step's loss and gradient norm (device scalars, no sync) to a
`DivergenceGuard`, and checks it at its log points and before every save, where it syncs
anyway. A step is non-finite when its loss or gradient norm is NaN or infinite. After
`patience` consecutive non-finite steps the run stops with `DivergedError`, naming the step and
the last checkpoint, which stays as it was; a non-finite state is never saved, whatever the
patience. Patience 0 turns the guard off (a study of divergence itself, e.g. the moons demo,
trains on and saves what it gets, as before the guard existed).
"""

from __future__ import annotations

import math
from typing import Optional

import jax

from mmix_jax.errors import DivergedError


class DivergenceGuard:
    """Counts consecutive non-finite steps (see the module docstring)."""

    def __init__(self, patience: int, where: str):
        self.patience, self.where = patience, where
        self.unchecked: list[tuple[int, jax.Array, jax.Array]] = []
        self.consecutive, self.last_step = 0, 0
        self.last_step_finite = True

    def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
        """Records step `step` (1-based: the update it made) without waiting for the device."""
        self.unchecked.append((step, metrics["loss"], metrics["grad_norm"]))

    def check(self, last_saved: Optional[int]) -> bool:
        """Whether the newest state is finite; raises DivergedError after `patience`
        consecutive non-finite steps (`last_saved`: the newest checkpoint, for the message)."""
        if self.patience == 0:  # off
            self.unchecked = []
            return True
        for step, loss, grad_norm in jax.device_get(self.unchecked):
            if math.isfinite(float(loss)) and math.isfinite(float(grad_norm)):
                self.consecutive = 0
                continue
            self.consecutive += 1
            if self.consecutive >= self.patience:
                self.unchecked = []
                raise self._diverged(step, last_saved)
        if self.unchecked:
            self.last_step_finite = self.consecutive == 0
            self.last_step = self.unchecked[-1][0]
        self.unchecked = []
        return self.last_step_finite

    def require_finite(self, last_saved: Optional[int]) -> None:
        """At the end of training: DivergedError unless the final state is finite."""
        if not self.check(last_saved):
            raise self._diverged(self.last_step, last_saved)

    def _diverged(self, step: int, last_saved: Optional[int]) -> DivergedError:
        saved = (f"the last checkpoint, step {last_saved}, is kept as it was"
                 if last_saved is not None else "no checkpoint was written")
        return DivergedError(
            f"training diverged: the loss or gradient was not finite for {self.consecutive} "
            f"consecutive steps, up to step {step}; nothing non-finite was saved, and {saved} "
            f"in {self.where}. Lower the learning rate (config.optimizer.learning_rate), or "
            "raise config.stop_after_nonfinite_steps to let transient ones pass.")
