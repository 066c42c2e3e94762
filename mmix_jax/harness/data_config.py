"""config.data read and validated into a DataSpec (the keys: mmix_jax.data and docs/data.md),
the streaming keys included; used by configuration.run_spec."""

from __future__ import annotations

from typing import Any

import ml_collections

from mmix_jax.data.datasets import DATASET_NAMES, IMAGE_SOURCES, NORMALIZATIONS, NPZ, DataSpec
from mmix_jax.data.host_transforms import TRANSFORMS
from mmix_jax.harness.config_checks import count, invalid, positive_int, positive_seconds


def data_spec(data: ml_collections.ConfigDict, num_classes: int) -> DataSpec:
    """config.data, validated (see mmix_jax.data for the keys)."""
    if data.name not in DATASET_NAMES:
        raise invalid("data.name", data.name, f"choose one of {DATASET_NAMES}")
    source = IMAGE_SOURCES.get(data.name)
    if source is not None and not data.get("tfds_name") and num_classes != source.num_classes:
        raise invalid("num_classes", num_classes, f"{data.name} has {source.num_classes} classes")
    if data.name == NPZ and not data.get("path"):
        raise invalid("data.path", data.get("path"), "give the .npz file to read")
    normalization = data.get("normalization", "per_channel")
    if normalization not in NORMALIZATIONS:
        raise invalid("data.normalization", normalization, f"choose one of {NORMALIZATIONS}")
    turns = data.get("turns", 0.0)
    if data.name == "spirals" and not turns > 0:
        raise invalid("data.turns", turns, "spirals need turns > 0 (the default job has 1.5)")
    if data.name != "spirals" and turns:
        raise invalid("data.turns", turns, f"only spirals have turns; remove it for "
                      f"{data.name!r}")
    shape = data.get("image_shape")
    return DataSpec(
        name=data.name, data_dir=data.get("data_dir", ""), manual_dir=data.get("manual_dir", ""),
        path=data.get("path", ""),
        test_per_class=count(data.get("test_per_class", 0), "data.test_per_class", "0: none"),
        validation_per_class=count(data.get("validation_per_class", 0),
                                    "data.validation_per_class", "0: none"),
        labels_per_class=count(data.get("labels_per_class", 0), "data.labels_per_class",
                                "0: all"),
        image_shape=tuple(shape) if shape else None,
        crop_padding=count(data.get("crop_padding", 0), "data.crop_padding", "0: no crop"),
        flip=bool(data.get("flip", False)), normalization=normalization,
        zca=bool(data.get("zca", False)),
        num_train=data.get("num_train", 0), num_test=data.get("num_test", 0),
        noise=data.get("noise", 0.0), turns=turns,
        prepare_timeout_s=positive_seconds(data.get("prepare_timeout_s", 3600.0),
                                           "data.prepare_timeout_s"),
        **streaming_options(data))


def streaming_options(data: ml_collections.ConfigDict) -> dict[str, Any]:
    """The streaming keys of config.data (mmix_jax.data.streaming_splits), validated."""
    streaming = data.get("streaming", "auto")
    if streaming not in (True, False, "auto"):
        raise invalid("data.streaming", streaming, "choose True, False or 'auto'")
    transform = data.get("host_transform", "")
    if transform not in TRANSFORMS:
        raise invalid("data.host_transform", transform, f"choose one of {TRANSFORMS}")
    shape = data.get("image_shape")
    if transform and not (shape and len(shape) == 3 and shape[0] == shape[1]):
        raise invalid("data.image_shape", shape,
                      f"host_transform {transform!r} needs a square (size, size, channels)")
    if transform and data.get("crop_padding", 0):
        raise invalid("data.crop_padding", data.crop_padding,
                      f"host_transform {transform!r} already crops: set it to 0")
    return dict(streaming=streaming,
                loader_threads=positive_int(data.get("loader_threads", 8), "data.loader_threads"),
                prefetch_batches=positive_int(data.get("prefetch_batches", 4),
                                              "data.prefetch_batches"),
                host_transform=transform, tfds_name=str(data.get("tfds_name", "")))


__all__ = ["data_spec", "streaming_options"]
