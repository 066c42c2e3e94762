"""Datasets by name from the config: held in host memory as ArrayDataset splits, or, on the
streaming path (`streaming`, mmix_jax.data.streaming_splits), a training split read on demand.

`config.data.name` is "spirals" or "moons" (generated 2-D points), a TFDS image dataset (see
IMAGE_SOURCES; keys data_dir, manual_dir) or "npz" (a local file: keys path, test_per_class).
Image data also takes image_shape, crop_padding, flip, normalization ("per_channel": the
training images' statistics; "half": mean = std = 0.5, the authors' SVHN; "imagenet": the usual
ImageNet constants), validation_per_class (a validation split held out of training) and
labels_per_class (at most that many training images per class, as the authors' loader). With
`unlabeled` (semi-supervised runs) every training image outside the validation split is also
kept, without labels, as the unlabelled pool (the labelled ones included, as the authors' code
has it), and labels_per_class must be available in every class. Image splits stay uint8 on the
host; `train_preprocess` / `eval_preprocess` give the on-device functions (augmentation and
normalisation) inside the compiled steps.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from mmix_jax.data.augment import augment, normalize
from mmix_jax.data.coordination import process_zero_first
from mmix_jax.data.npz_source import read_npz
from mmix_jax.data.pipeline import ArrayDataset, SemiSupervisedBatches, TrainBatches, eval_batches
from mmix_jax.data.splits import LABELED_STREAM, TEST_STREAM, VALIDATION_STREAM, Splits, split_per_class
from mmix_jax.data.streaming import StreamingBatches
from mmix_jax.data.streaming_splits import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_streaming,
    should_stream,
)
from mmix_jax.data.synthetic import off_data_grid, two_moons, two_moons_log_odds, two_spirals
from mmix_jax.data.tfds_source import (
    IMAGE_SOURCES,
    channel_statistics,
    check_split,
    prepare,
    read_split,
)
from mmix_jax.data.zca import ZCA, fit_zca, whiten
from mmix_jax.errors import DataError

NPZ = "npz"
POINT_SETS = ("spirals", "moons")
DATASET_NAMES: tuple[str, ...] = POINT_SETS + (NPZ,) + tuple(IMAGE_SOURCES)
NORMALIZATIONS = ("per_channel", "half", "imagenet")

Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which data and how it is split and augmented (the module docstring says what each does).

    Generated points take num_train, num_test, noise (and turns, for spirals); image data the
    rest.
    """

    name: str
    data_dir: str = ""
    manual_dir: str = ""
    path: str = ""
    test_per_class: int = 0
    validation_per_class: int = 0
    labels_per_class: int = 0
    image_shape: Optional[tuple[int, ...]] = None
    crop_padding: int = 0
    flip: bool = False
    normalization: str = "per_channel"
    unlabeled: bool = False
    zca: bool = False
    num_train: int = 0
    num_test: int = 0
    noise: float = 0.0
    turns: float = 0.0
    prepare_timeout_s: float = 3600.0
    streaming: Union[bool, str] = "auto"  # True, False or "auto" (streaming_splits)
    loader_threads: int = 8
    prefetch_batches: int = 4
    host_transform: str = ""  # "inception_crop": ImageNet's crops on the host
    tfds_name: str = ""  # another TFDS name with `name`'s settings (e.g. a generated copy)


def prepare_tfds(spec: DataSpec, file_format: str = "") -> Any:
    """The prepared TFDS builder of `spec`. Process 0 prepares first, so that hosts sharing a
    data_dir never write it together; the others wait for it on the coordination service
    (`spec.prepare_timeout_s`), then find it prepared (or prepare their own local copy)."""
    name = spec.tfds_name or IMAGE_SOURCES[spec.name].tfds_name
    return process_zero_first(lambda: prepare(name, spec.data_dir, spec.manual_dir, file_format),
                              f"prepare {name}", spec.prepare_timeout_s)


def read_tfds(spec: DataSpec) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) of a TFDS dataset, prepared (offline from manual_dir if given) and read."""
    source, builder = IMAGE_SOURCES[spec.name], prepare_tfds(spec)
    return read_split(builder, source.train_split), read_split(builder, source.test_split)


def load_image_dataset(spec: DataSpec, num_classes: int, seed: int) -> Splits:
    """An image dataset read into memory, validated, split and subset as configured."""
    if spec.name == NPZ:
        train, test = read_npz(spec.path)
        train_what, test_what = f"{spec.path} 'image'", f"{spec.path} 'test_image'"
        shape = spec.image_shape
    else:
        train, test = read_tfds(spec)
        source = IMAGE_SOURCES[spec.name]
        train_what = f"{spec.name} split {source.train_split!r}"
        test_what = f"{spec.name} split {source.test_split!r}"
        shape = spec.image_shape or source.image_shape
    check_split(train, train_what, shape, num_classes)
    if test is None:
        if not spec.test_per_class:
            raise DataError(f"{spec.path} has no test arrays: set config.data.test_per_class "
                            "to take a balanced test split from it.")
        test, train = split_per_class(train, spec.test_per_class, num_classes, seed,
                                      TEST_STREAM, key="data.test_per_class")
    else:
        check_split(test, test_what, shape, num_classes)
    validation = None
    if spec.validation_per_class:
        validation, train = split_per_class(train, spec.validation_per_class, num_classes, seed,
                                            VALIDATION_STREAM, key="data.validation_per_class")
    unlabeled = None
    if spec.unlabeled:
        if not spec.labels_per_class:
            raise DataError("config.data.unlabeled needs config.data.labels_per_class > 0: the "
                            "labelled images per class (the rest are used without labels).")
        unlabeled = train
    if spec.labels_per_class:
        train, _ = split_per_class(train, spec.labels_per_class, num_classes, seed,
                                   LABELED_STREAM, key="data.labels_per_class",
                                   at_most=not spec.unlabeled)
    if spec.normalization == "half":
        channels = train.images.shape[-1]
        mean, std = (0.5,) * channels, (0.5,) * channels
    elif spec.normalization == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = channel_statistics((unlabeled or train).images)
    zca = fit_zca((unlabeled or train).images, mean, std) if spec.zca else None
    return Splits(train, test, num_classes, mean, std, validation, unlabeled, zca)


def load_points(spec: DataSpec, seed: int) -> Splits:
    """Generated spirals or moons; with labels_per_class only that many points per class keep
    their label, and with `unlabeled` every training point (labelled ones too) is the
    unlabelled pool, as for image data."""
    if spec.name == "spirals":
        generate = functools.partial(two_spirals, noise=spec.noise, turns=spec.turns)
    else:
        generate = functools.partial(two_moons, noise=spec.noise)
    train = generate(spec.num_train, seed=seed)
    test = generate(spec.num_test, seed=seed + 1)
    validation = unlabeled = None
    if spec.validation_per_class:
        validation, train = split_per_class(train, spec.validation_per_class, 2, seed,
                                            VALIDATION_STREAM, key="data.validation_per_class")
    if spec.unlabeled:
        if not spec.labels_per_class:
            raise DataError("config.data.unlabeled needs config.data.labels_per_class > 0.")
        unlabeled = train
    if spec.labels_per_class:
        train, _ = split_per_class(train, spec.labels_per_class, 2, seed, LABELED_STREAM,
                                   key="data.labels_per_class", at_most=not spec.unlabeled)
    return Splits(train, test, num_classes=2, validation=validation, unlabeled=unlabeled)


def load_dataset(spec: DataSpec, seed: int, num_classes: Optional[int] = None) -> Splits:
    """The train (validation) and test splits of the data `spec` names."""
    if spec.name in POINT_SETS:
        return load_points(spec, seed)
    if spec.name == NPZ and not num_classes:
        raise DataError("config.num_classes must be set for npz data.")
    if spec.name in IMAGE_SOURCES or spec.name == NPZ:
        num_classes = num_classes or IMAGE_SOURCES[spec.name].num_classes
        if should_stream(spec):
            builder = None if spec.name == NPZ else prepare_tfds(spec, "array_record")
            return load_streaming(spec, num_classes, seed, builder)
        return load_image_dataset(spec, num_classes, seed)
    raise DataError(f"config.data.name = {spec.name!r} is invalid: choose one of "
                    f"{DATASET_NAMES}.")


def preprocess_constants(splits: Splits) -> Optional[dict[str, np.ndarray]]:
    """The arrays the preprocessing needs (the ZCA transform), to pass to compiled steps as an
    argument (`parallel.make_train_step(..., constants=...)`); None when there are none."""
    return None if splits.zca is None else splits.zca.arrays()


def _whitened(images: jax.Array, splits: Splits, constants: Optional[dict]) -> jax.Array:
    if splits.zca is None:
        return images
    return whiten(images, constants if constants is not None else splits.zca.arrays())


def eval_preprocess(splits: Splits) -> Optional[Callable[..., Batch]]:
    """uint8 → normalised (and whitened) float32 on device (None for non-image data); takes the
    `preprocess_constants` as a second argument (or closes over them without it)."""
    if not splits.is_image_data:
        return None

    def preprocess(batch: Batch, constants: Optional[dict] = None) -> Batch:
        images = normalize(batch["image"], splits.mean, splits.std)
        return dict(batch, image=_whitened(images, splits, constants))

    return preprocess


def train_preprocess(spec: DataSpec, splits: Splits) -> Optional[Callable[..., Batch]]:
    """Random crop (zero padding) / flip as configured, then normalisation (and whitening), on
    device; takes the `preprocess_constants` as a third argument."""
    if not splits.is_image_data:
        return None
    padding, flip = spec.crop_padding, spec.flip

    def preprocess(rng: jax.Array, batch: Batch, constants: Optional[dict] = None) -> Batch:
        images = augment(rng, batch["image"], crop_padding=padding, flip=flip)
        images = normalize(images, splits.mean, splits.std, jnp.float32)
        return dict(batch, image=_whitened(images, splits, constants))

    return preprocess


__all__ = ["ArrayDataset", "DATASET_NAMES", "DataSpec", "IMAGE_SOURCES", "NORMALIZATIONS", "NPZ",
           "SemiSupervisedBatches", "Splits", "StreamingBatches", "TrainBatches", "ZCA",
           "POINT_SETS", "eval_batches", "eval_preprocess", "load_dataset", "off_data_grid",
           "preprocess_constants", "train_preprocess", "two_moons", "two_moons_log_odds",
           "two_spirals"]
