"""TFDS data: real Fashion-MNIST prepared offline, mocked CIFAR/SVHN/MNIST, a hand-built CIFAR
archive in the original format, and the errors for bad archives and bad data."""

import gzip
import io
import os
import pathlib
import shutil
import tarfile

import numpy as np
import pytest

from mmix_jax.data import tfds_source
from mmix_jax.data.datasets import (
    IMAGE_SOURCES,
    ArrayDataset,
    DataSpec,
    TrainBatches,
    eval_preprocess,
    load_dataset,
)
from mmix_jax.errors import ConfigError, DataError

tfds = pytest.importorskip("tensorflow_datasets")

from shared_data import FASHION_FILES, FASHION_MNIST, needs_fashion_mnist  # noqa: E402


def records(images, labels):
    """Each example as bytes (pixels + label), sorted: equal iff the same multiset of examples."""
    return sorted(image.tobytes() + bytes([int(label)]) for image, label in zip(images, labels))


def data_config(**keys):
    return DataSpec(**keys)


@needs_fashion_mnist
def test_fashion_mnist_prepares_offline_and_loads_into_memory(fashion_data_dir):
    splits = load_dataset(data_config(name="fashion_mnist", data_dir=str(fashion_data_dir),
                                      manual_dir=str(FASHION_MNIST)), seed=0)
    assert splits.train.images.shape == (60000, 28, 28, 1)
    assert splits.test.images.shape == (10000, 28, 28, 1)
    assert splits.train.images.dtype == np.uint8 and splits.train.labels.dtype == np.int32
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
    np.testing.assert_array_equal(np.bincount(splits.train.labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(splits.test.labels), [1000] * 10)
    # The test split holds exactly the archive's (image, label) records (TFDS may reorder).
    with gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        raw_labels = np.frombuffer(f.read(), np.uint8, offset=8)
    assert records(splits.test.images, splits.test.labels) == records(raw, raw_labels)
    # Normalisation statistics are those of the training pixels.
    pixels = splits.train.images.astype(np.float64) / 255
    np.testing.assert_allclose(splits.mean, [pixels.mean()], rtol=1e-9)
    np.testing.assert_allclose(splits.std, [pixels.std()], rtol=1e-6)


@needs_fashion_mnist
def test_labels_per_class_is_balanced_and_epochs_are_different_orders_of_it(fashion_data_dir):
    splits = load_dataset(data_config(name="fashion_mnist", data_dir=str(fashion_data_dir),
                                      labels_per_class=37), seed=3)
    np.testing.assert_array_equal(np.bincount(splits.train.labels, minlength=10), [37] * 10)
    batches = TrainBatches(splits.train, batch_size=10, seed=3)
    first, second = batches.epoch_order(0).copy(), batches.epoch_order(1).copy()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.arange(370))
    np.testing.assert_array_equal(np.sort(second), np.arange(370))
    again = load_dataset(data_config(name="fashion_mnist", data_dir=str(fashion_data_dir),
                                     labels_per_class=37), seed=3)
    np.testing.assert_array_equal(again.train.images, splits.train.images)  # (seed) decides
    # As the authors' loader: labels_per_class is at most that many (their SVHN 7325 keeps all).
    everything = load_dataset(data_config(name="fashion_mnist", data_dir=str(fashion_data_dir),
                                          labels_per_class=7000), seed=0)
    np.testing.assert_array_equal(np.bincount(everything.train.labels), [6000] * 10)
    # A validation split is held out first (balanced; disjointness: test_npz.py); too many: error.
    held = load_dataset(data_config(name="fashion_mnist", data_dir=str(fashion_data_dir),
                                    validation_per_class=50, labels_per_class=7000), seed=0)
    np.testing.assert_array_equal(np.bincount(held.validation.labels), [50] * 10)
    np.testing.assert_array_equal(np.bincount(held.train.labels), [5950] * 10)
    with pytest.raises(DataError, match="validation_per_class = 6001, but class 0 has only 6000"):
        load_dataset(data_config(name="fashion_mnist", data_dir=str(fashion_data_dir),
                                 validation_per_class=6001), seed=0)


@needs_fashion_mnist
def test_missing_archive_is_named_before_any_download(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in FASHION_FILES[1:]:
        os.symlink(FASHION_MNIST / name, manual / name)
    with pytest.raises(DataError) as error:
        tfds_source.prepare("fashion_mnist", str(tmp_path / "data"), str(manual))
    message = str(error.value)
    assert "lacks 1 of the 4 original archives of fashion_mnist" in message
    assert "train-images-idx3-ubyte.gz" in message and "\n" not in message


@needs_fashion_mnist
@pytest.mark.parametrize("damage", ["flip_a_byte", "truncate"])
def test_damaged_archive_is_named_with_what_was_expected(tmp_path, damage):
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in FASHION_FILES:
        shutil.copy(FASHION_MNIST / name, manual / name)
    victim = manual / "train-labels-idx1-ubyte.gz"
    data = bytearray(victim.read_bytes())
    if damage == "flip_a_byte":
        data[1000] ^= 0xFF
    else:
        data = data[:-10]
    victim.write_bytes(bytes(data))
    expected = "has SHA-256" if damage == "flip_a_byte" else "has 29505 bytes but"
    with pytest.raises(DataError, match=expected) as error:
        tfds_source.prepare("fashion_mnist", str(tmp_path / "data"), str(manual))
    assert str(victim) in str(error.value)
    assert not (tmp_path / "data" / "fashion_mnist").exists() or not any(
        (tmp_path / "data" / "fashion_mnist").rglob("*.tfrecord*"))


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn_cropped", "mnist"])
def test_other_datasets_load_through_the_same_path_with_mocked_tfds(tmp_path, name):
    source = IMAGE_SOURCES[name]
    with tfds.testing.mock_data(num_examples=30):
        splits = load_dataset(data_config(name=name, data_dir=str(tmp_path)), seed=0)
    assert splits.train.images.shape == (30,) + source.image_shape
    assert splits.test.images.shape == (30,) + source.image_shape
    assert splits.train.images.dtype == np.uint8
    assert 0 <= splits.train.labels.min() and splits.train.labels.max() < source.num_classes
    assert len(splits.mean) == len(splits.std) == source.image_shape[-1]


def cifar10_binary_archive(path: pathlib.Path, per_file: int = 3):
    """A tiny cifar-10-binary.tar.gz in the original format (label byte + R, G, B planes)."""
    rng = np.random.default_rng(0)
    images, labels = {}, {}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    with tarfile.open(path, "w:gz") as tar:
        def add(name, payload):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        add("batches.meta.txt", "\n".join(f"class{i}" for i in range(10)).encode() + b"\n")
        for name in names:
            images[name] = rng.integers(0, 256, (per_file, 32, 32, 3), dtype=np.uint8)
            labels[name] = rng.integers(0, 10, per_file, dtype=np.uint8)
            records = [bytes([label]) + image.transpose(2, 0, 1).tobytes()
                       for image, label in zip(images[name], labels[name])]
            add(name, b"".join(records))
    return images, labels


def test_hand_built_cifar_archive_checksum_refused_then_read_pixel_exact(tmp_path, monkeypatch):
    manual = tmp_path / "manual"
    manual.mkdir()
    images, labels = cifar10_binary_archive(manual / "cifar-10-binary.tar.gz")
    config = data_config(name="cifar10", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    with pytest.raises(DataError, match=r"cifar-10-binary.tar.gz has \d+ bytes but the original"):
        load_dataset(config, seed=0)

    # Explicitly bypass both checksum checks (ours and TFDS's): the archive is ours, not the
    # published one; everything else is the real TFDS CIFAR-10 builder.
    monkeypatch.setattr(tfds_source, "check_manual_dir", lambda builder, manual_dir: None)
    monkeypatch.setattr(tfds.download.DownloadManager, "_register_or_validate_checksums",
                        lambda self, url, url_info, path: None)
    splits = load_dataset(config, seed=0)
    train_images = np.concatenate([images[f"data_batch_{i}.bin"] for i in range(1, 6)])
    train_labels = np.concatenate([labels[f"data_batch_{i}.bin"] for i in range(1, 6)])
    # TFDS may store examples in any order: compare as sorted (pixels, label) records.
    assert records(splits.train.images, splits.train.labels) == records(train_images, train_labels)
    assert records(splits.test.images, splits.test.labels) == records(
        images["test_batch.bin"], labels["test_batch.bin"])


def test_labels_out_of_range_and_wrong_image_shape_are_named():
    images = np.zeros((4, 28, 28, 1), np.uint8)
    bad_labels = ArrayDataset(images, np.array([0, 3, 10, 2], np.int32))
    with pytest.raises(DataError, match=r"labels range over 0..10 but config.num_classes = 10"):
        tfds_source.check_split(bad_labels, "mnist split 'train'", (28, 28, 1), 10)
    good = ArrayDataset(images, np.array([0, 3, 9, 2], np.int32))
    with pytest.raises(DataError, match=r"images are \(28, 28, 1\) but config.data.image_shape = "
                                        r"\(32, 32, 3\)"):
        tfds_source.check_split(good, "mnist split 'train'", (32, 32, 3), 10)
    floats = ArrayDataset(images.astype(np.float32), good.labels)
    with pytest.raises(DataError, match="expected uint8"):
        tfds_source.check_split(floats, "x", None, 10)


def test_unknown_dataset_and_mismatched_classes_are_config_errors():
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "configs"))
    import supervised  # noqa: E402

    from mmix_jax.harness.configuration import check_config

    config = supervised.get_config("cifar10,preactresnet18,manifold")
    config.data.name = "imagenet21k"
    with pytest.raises(ConfigError, match="config.data.name = 'imagenet21k' is invalid"):
        check_config(config)
    config = supervised.get_config("cifar10,preactresnet18,manifold")
    config.num_classes = 100
    with pytest.raises(ConfigError, match="config.num_classes = 100 is invalid: cifar10 has 10"):
        check_config(config)


def test_missing_manual_dir_is_named(tmp_path):
    with pytest.raises(DataError, match="manual_dir = .*nowhere' is not a directory"):
        tfds_source.prepare("mnist", str(tmp_path), str(tmp_path / "nowhere"))


def test_eval_preprocess_normalises_with_the_split_statistics():
    from mmix_jax.data.datasets import Splits
    images = np.array([0, 51, 255], np.uint8).reshape(3, 1, 1, 1)
    data = ArrayDataset(images, np.zeros(3, np.int32))
    splits = Splits(data, data, 2, mean=(0.2,), std=(0.5,))
    out = np.asarray(eval_preprocess(splits)({"image": images})["image"]).ravel()
    np.testing.assert_allclose(out, [(0 - 0.2) / 0.5, (0.2 - 0.2) / 0.5, (1 - 0.2) / 0.5],
                               atol=1e-6)


def test_cifar10_manifold_config_trains_and_evaluates_end_to_end_on_mocked_tfds(tmp_path):
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "configs"))
    import supervised  # noqa: E402

    from mmix_jax.harness import runs

    config = supervised.get_config("cifar10,preactresnet18,manifold,epochs=2")
    config.model.width = 4
    config.data.data_dir = str(tmp_path / "tfds")
    config.batch_size, config.eval_batch_size, config.log_every_steps = 10, 20, 4
    # Outliers from the paired TFDS set (mocked too); the other robustness metrics are
    # tested on a small MLP (test_npz.py, test_robustness.py).
    config.eval.update(dict(deformations=(), rotation_angles=(), pgd_steps=(),
                            ood_sets=("tfds:svhn_cropped",)))
    with tfds.testing.mock_data(num_examples=40):
        summary = runs.run(config, tmp_path / "run")
    assert 0.0 <= summary["run"]["ood_svhn_cropped_msp_auroc"] <= 1.0
    assert summary["run"]["steps"] == 8
    for key in ("test_error_percent", "test_nll", "test_ece", "fgsm_accuracy"):
        assert np.isfinite(summary["run"][key]), key
