"""In-memory datasets and deterministic batching.

The batch at step s is a function of (seed, s) alone: epoch e = s // steps_per_epoch is shuffled
with a generator seeded by (seed, e) and the last incomplete batch is dropped. A run resumed at
step s therefore sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A split held in host memory: images [N, ...] and int32 labels [N]. (`records.RecordDataset`
    is the same interface for splits read on demand.)"""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.shape[0]} labels.")
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be a vector, got shape {self.labels.shape}.")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, rows: np.ndarray, rngs: Any = None) -> dict[str, np.ndarray]:
        """{"image", "label"} of these rows (`rngs` is for RecordDataset's host transforms)."""
        return {"image": self.images[rows], "label": self.labels[rows]}


HOST_TRANSFORM_STREAM = 0x7a45


class TrainBatches:
    """Random access to the training batches of a run: `batches[step]` is a dict of arrays."""

    def __init__(self, dataset: ArrayDataset, batch_size: int, seed: int,
                 stream: Optional[int] = None):
        if not 0 < batch_size <= len(dataset):
            raise ValueError(
                f"batch_size = {batch_size}: must be in 1..{len(dataset)} (the training set size).")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self._key = [seed] if stream is None else [seed, stream]  # independent streams
        self.steps_per_epoch = len(dataset) // batch_size
        self._cached = (-1, np.empty(0, np.int64))  # one tuple: safe across loader threads

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of the training set used in `epoch` (cached for the current epoch)."""
        cached_epoch, order = self._cached
        if epoch != cached_epoch:
            order = np.random.default_rng([*self._key, epoch]).permutation(len(self.dataset))
            self._cached = (epoch, order)
        return order

    def rows(self, step: int) -> np.ndarray:
        """The training-set rows of the global batch at `step`."""
        epoch, index = divmod(int(step), self.steps_per_epoch)
        return self.epoch_order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]

    def _rngs(self, step: int, positions: range) -> Optional[list[np.random.Generator]]:
        """One generator per batch position for a host transform, from (seed, step, position)
        alone; None when the dataset has none (on-device augmentation)."""
        if getattr(self.dataset, "transform", None) is None:
            return None
        return [np.random.default_rng([*self._key, HOST_TRANSFORM_STREAM, int(step), i])
                for i in positions]

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        return self.share(step, 0, 1)

    def share(self, step: int, process: int, processes: int) -> dict[str, np.ndarray]:
        """Process `process`'s contiguous share of the global batch at `step` (what
        `parallel.process_share` cuts from it), reading only those rows."""
        per = self.batch_size // processes
        if per * processes != self.batch_size:
            raise ValueError(f"global batch of {self.batch_size} is not divisible by "
                             f"{processes} processes.")
        positions = range(process * per, (process + 1) * per)
        return self.dataset.take(self.rows(step)[process * per:(process + 1) * per],
                                 self._rngs(step, positions))

    def __repr__(self) -> str:
        return (f"TrainBatches({type(self.dataset).__name__} of {len(self.dataset)}, "
                f"batch={self.batch_size}, key={self._key})")


class SemiSupervisedBatches:
    """Two independent streams for semi-supervised runs: `batches[step]` is
    {"labeled": {"image", "label"}, "unlabeled": {"image"}}. An epoch is one pass over the
    unlabelled pool; the labelled set is gone through at its own pace, reshuffled (with fresh
    augmentation) at each of its own epochs. The authors' `zip(cycle(labelled), unlabelled)`
    instead replays the batches `itertools.cycle` cached on the first pass, in the same order
    and with the same augmentation, until the unlabelled epoch ends. Both streams are functions
    of (seed, step) alone."""

    LABELED_STREAM, UNLABELED_STREAM = 1, 2

    def __init__(self, labeled: ArrayDataset, unlabeled: ArrayDataset, batch_size: int,
                 unlabeled_batch_size: int, seed: int):
        self.labeled = TrainBatches(labeled, batch_size, seed, self.LABELED_STREAM)
        self.unlabeled = TrainBatches(unlabeled, unlabeled_batch_size, seed,
                                      self.UNLABELED_STREAM)
        self.steps_per_epoch = self.unlabeled.steps_per_epoch

    def __getitem__(self, step: int) -> dict[str, dict[str, np.ndarray]]:
        return {"labeled": self.labeled[step],
                "unlabeled": {"image": self.unlabeled[step]["image"]}}


def eval_batches(dataset: ArrayDataset, batch_size: int,
                 extras: Optional[Mapping[str, np.ndarray]] = None
                 ) -> Iterator[dict[str, np.ndarray]]:
    """The whole split in order, in batches of a fixed size; the last is padded and masked.
    `extras`: more per-example arrays ([N, ...], e.g. a deformation's parameters), batched
    and padded alike under their own keys."""
    columns = {"image": dataset.images, "label": dataset.labels, **(extras or {})}
    for name, column in columns.items():
        if column.shape[0] != len(dataset):
            raise ValueError(f"{name!r} has {column.shape[0]} rows for {len(dataset)} examples.")
    for start in range(0, len(dataset), batch_size):
        batch = {name: column[start:start + batch_size] for name, column in columns.items()}
        count = batch["label"].shape[0]
        pad = batch_size - count
        batch = {name: (np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) if pad
                        else v) for name, v in batch.items()}
        batch["mask"] = np.concatenate([np.ones(count, np.float32), np.zeros(pad, np.float32)])
        yield batch
