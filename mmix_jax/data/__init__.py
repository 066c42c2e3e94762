"""Datasets by name from the config, held in host memory as ArrayDataset splits."""

from __future__ import annotations

import dataclasses

import ml_collections

from mmix_jax.data.pipeline import ArrayDataset, TrainBatches, eval_batches
from mmix_jax.data.synthetic import off_data_grid, two_spirals

DATASET_NAMES: tuple[str, ...] = ("spirals",)


@dataclasses.dataclass(frozen=True)
class Splits:
    train: ArrayDataset
    test: ArrayDataset
    num_classes: int


def load_dataset(data_config: ml_collections.ConfigDict, seed: int) -> Splits:
    """The train and test splits named by `data_config.name`."""
    if data_config.name == "spirals":
        kwargs = dict(noise=data_config.noise, turns=data_config.turns)
        return Splits(two_spirals(data_config.num_train, seed=seed, **kwargs),
                      two_spirals(data_config.num_test, seed=seed + 1, **kwargs), num_classes=2)
    raise ValueError(f"config.data.name = {data_config.name!r}: choose one of {DATASET_NAMES}.")


__all__ = ["ArrayDataset", "DATASET_NAMES", "Splits", "TrainBatches", "eval_batches",
           "load_dataset", "off_data_grid", "two_spirals"]
