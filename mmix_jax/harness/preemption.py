"""SIGTERM (preemption) handling for the training loop: `Preemption.reached(step)` says when to
save and stop; `PreemptedError` exits with 128 + SIGTERM once that checkpoint is on disk."""

from __future__ import annotations

import signal

import jax
from etils import epath
from jax.experimental import multihost_utils


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

    def pending(self) -> bool:
        """Whether this process received SIGTERM that `reached` has not acted on yet (single
        process: a periodic evaluation may then be skipped; across processes only the sync
        point decides, so that every process does the same)."""
        return not self._multi and self.requested

    def restore(self) -> None:
        if not self._multi:
            signal.signal(signal.SIGTERM, self._previous)


class PreemptedError(SystemExit):
    """Raised after the preemption checkpoint is on disk; exits with 128 + SIGTERM."""

    def __init__(self, step: int, path: epath.Path):
        super().__init__(128 + signal.SIGTERM)
        self.step, self.path = step, path


__all__ = ["PreemptedError", "Preemption"]
