"""Splits for the streaming path: the training split stays on disk as a RecordDataset, read
per batch by each process (`data.streaming`); the evaluation splits are read into memory through
the same source in their evaluation form (e.g. ImageNet's centre crops).

`data.streaming = "auto"` streams what would not fit comfortably in memory: TFDS data sets
marked so in IMAGE_SOURCES (ImageNet: images of varying size), any run with a host transform,
and npz files whose training images exceed STREAM_ABOVE_BYTES.
"""

from __future__ import annotations

import functools
import zipfile
from typing import Any, Optional

import numpy as np

from mmix_jax.data.host_transforms import inception_crop
from mmix_jax.data.pipeline import ArrayDataset
from mmix_jax.data.records import NpzRecords, RecordDataset, TfdsRecords
from mmix_jax.data.splits import LABELED_STREAM, VALIDATION_STREAM, Splits, split_per_class
from mmix_jax.data.tfds_source import IMAGE_SOURCES, channel_statistics, check_split
from mmix_jax.errors import DataError

STREAM_ABOVE_BYTES = 4 << 30
STATISTICS_SAMPLE = 10_000  # training images the per-channel statistics are estimated from
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def npz_train_bytes(path: str) -> int:
    """Decompressed size of the npz's training images (0 if it cannot be read: the reader
    reports that)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.getinfo("image.npy").file_size
    except (OSError, KeyError, zipfile.BadZipFile):
        return 0


def should_stream(spec: Any) -> bool:
    """Whether `spec` (a DataSpec) takes the streaming path."""
    if spec.streaming != "auto":
        return bool(spec.streaming)
    if spec.host_transform:
        return True
    if spec.name == "npz":
        return npz_train_bytes(spec.path) > STREAM_ABOVE_BYTES
    source = IMAGE_SOURCES.get(spec.name)
    return source is not None and source.streams


def host_transform(spec: Any):
    """The per-record host transform of `spec` (None: records already have the model's shape)."""
    if not spec.host_transform:
        return None
    return functools.partial(inception_crop, size=spec.image_shape[0])


def read_whole(dataset: RecordDataset, chunk: int = 1024) -> ArrayDataset:
    """An evaluation split in memory, in its evaluation form (no randomness)."""
    parts = [dataset.take(range(start, min(start + chunk, len(dataset))))
             for start in range(0, len(dataset), chunk)]
    if not parts:
        raise DataError(f"{dataset.source!r} is empty.")
    return ArrayDataset(np.concatenate([p["image"] for p in parts]),
                        np.concatenate([p["label"] for p in parts]))


def _sources(spec: Any, builder: Any) -> tuple[Any, Optional[Any]]:
    if spec.name == "npz":
        train = NpzRecords(spec.path)  # refuses a missing, unreadable or compressed file
        with zipfile.ZipFile(train.path) as archive:
            has_test = "test_image.npy" in archive.namelist()
        # a damaged or compressed test member is an error of its own, not "no test arrays"
        return train, NpzRecords(spec.path, "test_") if has_test else None
    source, encoded = IMAGE_SOURCES[spec.name], bool(spec.host_transform)
    return (TfdsRecords(builder, source.train_split, encoded),
            TfdsRecords(builder, source.test_split, encoded))


def load_streaming(spec: Any, num_classes: int, seed: int, builder: Any = None):
    """Splits whose `train` is a RecordDataset (see the module docstring); `builder` is the
    prepared TFDS builder for TFDS data."""

    if spec.unlabeled:
        raise DataError("config.data.streaming covers supervised runs; a semi-supervised run "
                        "reads its data into memory: set config.data.streaming=False.")
    transform = host_transform(spec)
    train_source, test_source = _sources(spec, builder)
    train = RecordDataset(train_source, transform=transform)
    if test_source is None:
        raise DataError(f"{spec.path} has no test arrays: the streaming path needs "
                        "'test_image' and 'test_label' (or set config.data.streaming=False).")
    validation = None
    if spec.validation_per_class or spec.labels_per_class:
        labels = ArrayDataset(np.zeros(len(train), np.uint8), train.labels())
        rows = np.arange(len(train))
        if spec.validation_per_class:
            chosen, rest = split_per_class(labels, spec.validation_per_class, num_classes, seed,
                                           VALIDATION_STREAM, key="data.validation_per_class",
                                           return_rows=True)
            validation = read_whole(train.subset(rows[chosen]))
            rows = rows[rest]
            labels = ArrayDataset(labels.images[rest], labels.labels[rest])
        if spec.labels_per_class:
            chosen, _ = split_per_class(labels, spec.labels_per_class, num_classes, seed,
                                        LABELED_STREAM, key="data.labels_per_class",
                                        at_most=True, return_rows=True)
            rows = rows[chosen]
        train = train.subset(rows)
    test = read_whole(RecordDataset(test_source, transform=transform))
    shape = spec.image_shape or IMAGE_SOURCES[spec.name].image_shape
    check_split(test, f"{test_source!r}", shape, num_classes)
    first = train.take([0])  # the training records must come out in the same form
    check_split(ArrayDataset(first["image"], first["label"]), f"{train_source!r}", shape,
                num_classes)
    if spec.normalization == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif spec.normalization == "half":
        mean, std = (0.5,) * test.images.shape[-1], (0.5,) * test.images.shape[-1]
    else:
        sample = np.random.default_rng(seed).permutation(len(train))[:STATISTICS_SAMPLE]
        mean, std = channel_statistics(read_whole(train.subset(np.sort(sample))).images)
    return Splits(train, test, num_classes, mean, std, validation)


__all__ = ["STREAM_ABOVE_BYTES", "load_streaming", "read_whole", "should_stream"]
