"""Training batches read ahead by grain threads: this process's share only, resumable.

The stream is a grain `MapDataset` over steps: item s is this process's contiguous share of
the global batch at step s, exactly `process_share(TrainBatches[s])` (same rows, same seed),
read from a `RecordDataset` (memory-mapped npz or TFDS ArrayRecord) with its host transform,
by `threads` threads, `prefetch` batches ahead. So the streaming and in-memory paths give the
same batches, and the iterator's whole state is the next step (`{"next_index": s}`), saved in
each checkpoint beside the TrainState and checked against it on resume.

Threads, not processes: decoding and PIL resizing release the GIL, and a process pool's state
would tie a checkpoint to its worker count.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import grain.python as grain
import jax
import numpy as np

from mmix_jax.data.pipeline import TrainBatches


class _ProcessShares:
    """grain source: step ↦ this process's share of the global batch, with its step number."""

    def __init__(self, batches: TrainBatches, total_steps: int):
        self.batches, self.total_steps = batches, total_steps
        self.process, self.processes = jax.process_index(), jax.process_count()

    def __len__(self) -> int:
        return self.total_steps

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        share = self.batches.share(int(step), self.process, self.processes)
        return dict(share, step=np.asarray(step, np.int64))

    def __repr__(self) -> str:
        return (f"ProcessShares({self.batches!r}, steps={self.total_steps}, "
                f"process={self.process}/{self.processes})")


class FrozenState:
    """An iterator state captured now, for grain's Orbax handler (which may write it later)."""

    def __init__(self, state: dict[str, Any]):
        self._bytes = json.dumps(state).encode()

    def get_state(self) -> bytes:
        return self._bytes


class StreamingBatches:
    """The run's training stream, read ahead; `batches[step]` (the global batch, read in this
    thread) stays available for shapes and tests."""

    def __init__(self, batches: TrainBatches, total_steps: int, threads: int, prefetch: int):
        self.batches = batches
        self.steps_per_epoch = batches.steps_per_epoch
        self.dataset = grain.MapDataset.source(_ProcessShares(batches, total_steps))
        self.read_options = grain.ReadOptions(num_threads=threads,
                                              prefetch_buffer_size=prefetch)

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        return self.batches[step]

    def iterator(self, start_step: int) -> grain.DatasetIterator:
        """A fresh iterator positioned at `start_step`."""
        iterator = iter(self.dataset.to_iter_dataset(self.read_options))
        iterator.set_state({"next_index": int(start_step)})
        return iterator


def next_batch(iterator: Iterator[dict[str, np.ndarray]], step: int) -> dict[str, np.ndarray]:
    """The next local batch, which must be the one of `step` (else the stream and the state
    disagree: a checkpoint's data item from another run, or a bug)."""
    batch = dict(next(iterator))
    got = int(batch.pop("step"))
    if got != step:
        raise RuntimeError(f"the data stream is at step {got} but training at step {step}: the "
                           "checkpoint's data iterator state does not belong to this state.")
    return batch


__all__ = ["FrozenState", "StreamingBatches", "next_batch"]
