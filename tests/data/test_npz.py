"""Local .npz image data: balanced, disjoint, seeded splits and one clear error per bad file."""

import pathlib

import numpy as np
import pytest

from mmix_jax.data.datasets import DataSpec, load_dataset
from mmix_jax.errors import DataError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def write_npz(path, per_class=(30, 25, 40), shape=(4, 4, 1), **extra):
    """Distinct images (the index is written into the pixels) with `per_class[c]` of class c."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.int64)
    index = np.arange(labels.size)
    images = np.zeros((labels.size,) + shape, np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = index % 256, index // 256
    np.savez(path, **{"image": images, "label": labels, **extra})
    return images, labels


def config(path, **keys):
    return DataSpec(**dict(dict(name="npz", path=str(path), test_per_class=5), **keys))


def ids(dataset):
    pixels = dataset.images.astype(int)
    return set((pixels[:, 0, 0, 0] + 256 * pixels[:, 0, 1, 0]).tolist())


def test_test_split_is_balanced_disjoint_and_fixed_by_the_seed(tmp_path):
    images, labels = write_npz(tmp_path / "d.npz")
    splits = load_dataset(config(tmp_path / "d.npz", validation_per_class=3), seed=7,
                          num_classes=3)
    np.testing.assert_array_equal(np.bincount(splits.test.labels), [5, 5, 5])
    np.testing.assert_array_equal(np.bincount(splits.validation.labels), [3, 3, 3])
    train, test, val = ids(splits.train), ids(splits.test), ids(splits.validation)
    assert not (train & test) and not (train & val) and not (test & val)
    assert len(train | test | val) == labels.size  # nothing lost
    for part in (splits.train, splits.test, splits.validation):  # labels travel with images
        np.testing.assert_array_equal(labels[sorted(ids(part))], np.sort(part.labels))
    again = load_dataset(config(tmp_path / "d.npz", validation_per_class=3), seed=7,
                         num_classes=3)
    assert ids(again.test) == test and ids(again.validation) == val
    other = load_dataset(config(tmp_path / "d.npz", validation_per_class=3), seed=8,
                         num_classes=3)
    assert ids(other.test) != test


def test_file_with_test_arrays_uses_them(tmp_path):
    test_images = np.full((6, 4, 4, 1), 9, np.uint8)
    write_npz(tmp_path / "d.npz", test_image=test_images, test_label=np.arange(6) % 3)
    splits = load_dataset(config(tmp_path / "d.npz"), seed=0, num_classes=3)
    assert len(splits.test) == 6 and len(splits.train) == 95
    np.testing.assert_array_equal(splits.test.images, test_images)


@pytest.mark.parametrize("arrays, message", [
    (dict(image=np.zeros((4, 4, 4, 1), np.uint8)), r"lacks \['label'\]"),
    (dict(image=np.zeros((4, 4, 4, 1), np.float32), label=np.zeros(4)), "expected uint8"),
    (dict(image=np.zeros((4, 4, 4), np.uint8), label=np.zeros(4, int)), r"image\[..., None\]"),
    (dict(image=np.zeros((4, 4, 4, 1), np.uint8), label=np.zeros(3, int)), "but 3 labels"),
    (dict(image=np.zeros((4, 4, 4, 1), np.uint8), label=np.array([0, 1, 2, 7])),
     "labels range over 0..7 but config.num_classes = 3"),
    (dict(image=np.zeros((4, 4, 4, 1), np.uint8), label=np.zeros(4, int),
          test_image=np.zeros((1, 4, 4, 1), np.uint8)), "without its partner"),
    (dict(image=np.zeros((6, 4, 4, 1), np.uint8), label=np.array([0, 0, 1, 1, 2, 2])),
     "test_per_class = 5, but class 0 has only 2"),
])
def test_bad_files_get_one_clear_error(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(config(tmp_path / "bad.npz"), seed=0, num_classes=3)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="is not a file"):
        load_dataset(config(tmp_path / "none.npz"), seed=0, num_classes=3)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(config(tmp_path / "junk.npz"), seed=0, num_classes=3)


def test_half_normalisation_is_the_authors_svhn_constants(tmp_path):
    write_npz(tmp_path / "d.npz", shape=(4, 4, 3))
    splits = load_dataset(config(tmp_path / "d.npz", normalization="half"), seed=0,
                          num_classes=3)
    assert splits.mean == splits.std == (0.5, 0.5, 0.5)


def test_validation_selected_checkpoint_is_the_best_on_validation(tmp_path):
    """A short run with a validation split: the reported val-selected evaluation is the
    checkpoint whose validation accuracy was highest, and the best test error is the lowest
    seen; both read against history.json, which the evaluations during training wrote."""
    import json
    import sys

    from mmix_jax.harness import runs
    sys.path.insert(0, str(ROOT / "configs"))
    import supervised  # noqa: E402

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 60)
    images = (rng.random((180, 8, 8, 1)) * 60 + labels[:, None, None, None] * 60).astype(np.uint8)
    np.savez(tmp_path / "d.npz", image=images, label=labels)
    config = supervised.get_config("fashion_mnist,preactresnet18,manifold,epochs=6")
    config.num_classes = 3
    config.model = dict(name="mlp", widths=(32, 32), dtype="float32", init="torch")
    config.data.update(dict(name="npz", path=str(tmp_path / "d.npz"), test_per_class=15,
                            validation_per_class=10, image_shape=(8, 8, 1)))
    config.batch_size, config.eval_batch_size, config.log_every_steps = 10, 15, 5
    config.checkpoint.every_epochs, config.checkpoint.keep = 1, 1
    robustness = {key: config.eval[key] for key in ("deformations", "rotation_angles",
                                                    "pgd_steps")}
    config.eval.update(dict(deformations=(), rotation_angles=(), ood_sets=(), pgd_steps=()))
    summary = runs.run(config, tmp_path / "run")["run"]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4, 5, 6]
    best_val = max(entry["val_accuracy"] for entry in history)
    assert summary["val_selected_epoch"] * 10 in [e["step"] for e in history]
    chosen = next(e for e in history if e["step"] == summary["val_selected_epoch"] * 10)
    assert chosen["val_accuracy"] == best_val
    assert summary["val_selected_test_error_percent"] == pytest.approx(
        chosen["test_error_percent"])
    assert summary["best_test_error_percent"] == min(e["test_error_percent"] for e in history)
    assert summary["best_test_error_percent"] <= summary["test_error_percent"]
    assert summary["train_examples"] == 3 * 35 and summary["fgsm_space"] == "normalized"
    # --mode=evaluate redoes the choice from the kept checkpoints (for runs made before the
    # choice was fixed, when it always took the latest): the best validation accuracy again.
    (tmp_path / "run" / "evaluation_val_selected.json").unlink()
    runs.evaluate(config, tmp_path / "run")
    selected = json.loads((tmp_path / "run" / "evaluation_val_selected.json").read_text())
    assert next(e for e in history if e["step"] == selected["step"])["val_accuracy"] == best_val
    assert not any(key.startswith(("deform_", "ood_", "pgd_")) for key in summary)

    # --mode=evaluate adds the robustness metrics to the finished run, from its checkpoints,
    # with another .npz as the out-of-distribution set.
    outliers = rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "outliers.npz", image=outliers, label=np.zeros(30, np.int64))
    config.eval.update(dict(robustness, ood_sets=(f"npz:{tmp_path / 'outliers.npz'}",
                                                  "uniform", "gaussian")))
    runs.evaluate(config, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    for name in ("rotate20", "rotate40", "shear", "zoom_in", "zoom_out"):
        assert 0.0 <= summary[f"deform_{name}_accuracy"] <= 1.0
        assert summary[f"val_selected_deform_{name}_accuracy"] >= 0.0
    for name in ("outliers", "uniform", "gaussian"):
        for score in ("msp", "energy"):
            assert 0.0 <= summary[f"ood_{name}_{score}_auroc"] <= 1.0
            assert 0.0 <= summary[f"ood_{name}_{score}_fpr95"] <= 1.0
        assert sum(evaluation["confidence_histogram"][name]) == evaluation["ood"][name]["examples"]
    assert evaluation["ood"]["outliers"]["examples"] == 30
    # rotation by 0° is the clean test set
    assert evaluation["rotation_sweep"]["angle"][0] == 0.0
    assert evaluation["rotation_sweep"]["accuracy"][0] == pytest.approx(summary["test_accuracy"])
    assert summary["pgd_clean_accuracy"] == pytest.approx(summary["test_accuracy"])  # 45 < 1000
    assert all(0.0 <= summary[f"pgd_accuracy_{n}"] <= 1.0 for n in (1, 10, 20))
    assert sum(evaluation["reliability"]["count"]) == 45
