"""Image classification data through tensorflow-datasets, held in host memory as uint8 arrays.

Each split is prepared once by TFDS (`download_and_prepare`, from the internet or, offline,
from the original archives in `manual_dir`), read once into numpy, and validated against the
config before anything is compiled. TensorFlow is only used here, on the CPU: it is told not to
see any accelerator, so it never takes GPU memory from JAX.

Offline: put the original archives (e.g. the four Fashion-MNIST `.gz` files, or
`cifar-10-binary.tar.gz`) in one folder and set `config.data.manual_dir` to it. They are
checked here first (present, right size, right SHA-256, the figures TFDS publishes), so a
missing or damaged file is one clear error instead of a download attempt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from typing import Any, Optional

import numpy as np

from mmix_jax.data.pipeline import ArrayDataset
from mmix_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """A TFDS image classification dataset and what the models expect from it."""

    tfds_name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    train_split: str = "train"
    test_split: str = "test"
    streams: bool = False  # data.streaming="auto" streams it (too large for host memory)


IMAGE_SOURCES: dict[str, ImageSource] = {
    "cifar10": ImageSource("cifar10", (32, 32, 3), 10),
    "cifar100": ImageSource("cifar100", (32, 32, 3), 100),
    "svhn_cropped": ImageSource("svhn_cropped", (32, 32, 3), 10),
    "mnist": ImageSource("mnist", (28, 28, 1), 10),
    "fashion_mnist": ImageSource("fashion_mnist", (28, 28, 1), 10),
    # 1.28 M JPEGs of varying size, read through config.data.manual_dir; shape after the crop
    "imagenet2012": ImageSource("imagenet2012", (224, 224, 3), 1000, "train", "validation",
                                streams=True),
}


def hide_accelerators_from_tensorflow() -> None:
    """TensorFlow (used by TFDS to prepare and read data) must not grab GPU/TPU memory."""
    import tensorflow as tf  # imported here: only the TFDS path needs it

    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # already initialised, or no such device type
            pass


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_manual_dir(builder: Any, manual_dir: pathlib.Path) -> None:
    """Raises DataError unless every archive the builder needs is in `manual_dir`, intact.

    TFDS would otherwise try (and retry for minutes) to download a missing file.
    """
    expected = builder.url_infos or {}
    if not expected:
        return  # a builder with manual instructions of its own: TFDS checks those files
    name = builder.info.name
    missing = [(url, info) for url, info in expected.items()
               if not (manual_dir / info.filename).is_file()]
    if missing:
        listing = ", ".join(f"{info.filename} (from {url})" for url, info in missing)
        raise DataError(
            f"config.data.manual_dir = '{manual_dir}' lacks {len(missing)} of the "
            f"{len(expected)} original archives of {name}: {listing}. Put the files there "
            "unchanged, or set config.data.manual_dir='' to let TFDS download them.")
    for url, info in expected.items():
        path = manual_dir / info.filename
        size = path.stat().st_size
        if size != info.size:
            raise DataError(f"{path} has {size} bytes but the original archive of {name} has "
                            f"{info.size} ({url}): the file is truncated or not the original; "
                            "replace it.")
        checksum = _sha256(path)
        if checksum != info.checksum:
            raise DataError(f"{path} has SHA-256 {checksum} but the original archive of {name} "
                            f"has {info.checksum} ({url}): the file is damaged or not the "
                            "original; replace it.")


def _builder(name: str, data_dir: str, file_format: str = "") -> Any:
    import tensorflow_datasets as tfds

    kwargs = dict(file_format=file_format) if file_format else {}
    return tfds.builder(name, data_dir=data_dir or None, **kwargs)


def prepare(name: str, data_dir: str = "", manual_dir: str = "", file_format: str = "") -> Any:
    """The TFDS builder of `name`, prepared in `data_dir` (from `manual_dir` if given), in
    `file_format` ("": TFDS's default; "array_record" for random access)."""
    import tensorflow_datasets as tfds

    hide_accelerators_from_tensorflow()
    builder = _builder(name, data_dir, file_format)
    if builder.is_prepared():
        return builder
    if manual_dir:
        manual = pathlib.Path(manual_dir).expanduser()
        if not manual.is_dir():
            raise DataError(f"config.data.manual_dir = '{manual_dir}' is not a directory: give "
                            f"the folder holding the original archives of {name}.")
        check_manual_dir(builder, manual)
        config = tfds.download.DownloadConfig(manual_dir=str(manual))
        builder.download_and_prepare(download_config=config)
    else:
        builder.download_and_prepare()
    return builder


def read_split(builder: Any, split: str, chunk: int = 10_000) -> ArrayDataset:
    """A whole split as uint8 images [N, H, W, C] and int32 labels [N], in TFDS's order."""
    import tensorflow_datasets as tfds

    dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    chunks = list(tfds.as_numpy(dataset.batch(chunk)))
    if not chunks:
        raise DataError(f"{builder.info.name} split {split!r} in {builder.data_dir} is empty.")
    images = np.concatenate([images for images, _ in chunks])
    labels = np.concatenate([labels for _, labels in chunks]).astype(np.int32)
    return ArrayDataset(images, labels)


def check_split(dataset: ArrayDataset, what: str, image_shape: Optional[tuple[int, ...]],
                num_classes: int) -> None:
    """Raises DataError for images of the wrong shape/dtype or labels outside [0, num_classes)."""
    if dataset.images.dtype != np.uint8 or dataset.images.ndim != 4:
        raise DataError(f"{what}: images are {dataset.images.dtype}{list(dataset.images.shape)}, "
                        "expected uint8 [N, height, width, channels].")
    if image_shape and tuple(dataset.images.shape[1:]) != tuple(image_shape):
        raise DataError(f"{what}: images are {tuple(dataset.images.shape[1:])} but "
                        f"config.data.image_shape = {tuple(image_shape)}: fix that key (or the "
                        "data) so the model gets the inputs it was configured for.")
    if len(dataset) == 0:
        raise DataError(f"{what} is empty.")
    low, high = int(dataset.labels.min()), int(dataset.labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(f"{what}: labels range over {low}..{high} but config.num_classes = "
                        f"{num_classes} allows 0..{num_classes - 1}: set config.num_classes to "
                        "the dataset's number of classes.")


def channel_statistics(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...],
                                                                        tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units."""
    total = np.zeros(images.shape[-1])
    squares = np.zeros(images.shape[-1])
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].astype(np.float64) / 255.0
        total += block.sum(axis=(0, 1, 2))
        squares += (block ** 2).sum(axis=(0, 1, 2))
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


__all__ = ["IMAGE_SOURCES", "ImageSource", "channel_statistics",
           "check_manual_dir", "check_split", "hide_accelerators_from_tensorflow", "prepare",
           "read_split"]
