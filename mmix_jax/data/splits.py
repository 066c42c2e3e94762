"""Balanced, seeded splits of an in-memory dataset: test / validation / labelled subsets.

Each split takes a fixed number of examples per class, chosen by the seed, and returns the
chosen and the remaining examples (disjoint, each in the original order), so the same seed
always gives the same split and the splits never overlap.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from mmix_jax.data.pipeline import ArrayDataset
from mmix_jax.data.zca import ZCA
from mmix_jax.errors import DataError

# Distinct streams of the seed for each kind of split, so that they do not coincide.
TEST_STREAM, VALIDATION_STREAM, LABELED_STREAM = 0x7e57, 0x7a11d, 0x1abe1



@dataclasses.dataclass(frozen=True)
class Splits:
    """Train and test splits; images uint8 with per-channel `mean`/`std` (in [0, 1] units) for
    image data, raw float features (mean/std None) otherwise."""

    train: ArrayDataset
    test: ArrayDataset
    num_classes: int
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    validation: Optional[ArrayDataset] = None
    unlabeled: Optional[ArrayDataset] = None
    zca: Optional[ZCA] = None

    @property
    def is_image_data(self) -> bool:
        return self.mean is not None


def split_per_class(dataset: ArrayDataset, per_class: int, num_classes: int, seed: int,
                    stream: int, *, key: str, at_most: bool = False, return_rows: bool = False
                    ) -> tuple[Any, Any]:
    """(`per_class` examples of each class chosen by (seed, stream), the rest); with
    `return_rows` their row numbers instead (for splits read on demand).

    With `at_most` a class with fewer examples gives all of them (the authors' `labels_per_class`);
    otherwise such a class is a DataError naming the config `key`.
    """
    rng = np.random.default_rng([seed, stream])
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(dataset.labels == label)
        if members.size < per_class and not at_most:
            raise DataError(f"config.{key} = {per_class}, but class {label} has only "
                            f"{members.size} examples to take them from: ask for at most that "
                            "many.")
        chosen.append(rng.choice(members, min(per_class, members.size), replace=False))
    rows = np.sort(np.concatenate(chosen))
    rest = np.setdiff1d(np.arange(len(dataset)), rows, assume_unique=True)
    if return_rows:
        return rows, rest
    return (ArrayDataset(dataset.images[rows], dataset.labels[rows]),
            ArrayDataset(dataset.images[rest], dataset.labels[rest]))


__all__ = ["LABELED_STREAM", "TEST_STREAM", "VALIDATION_STREAM", "split_per_class"]
