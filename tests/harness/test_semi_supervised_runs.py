"""Semi-supervised runs: the data streams and splits, the configs, the moons demonstration, and
a killed run resumed exactly."""


import importlib
import json
import pathlib
import signal
import sys

import jax
import numpy as np
import pytest
from cli_runs import ROOT, assert_bit_identical, checkpoint_steps, final_params

from mmix_jax.data.datasets import DataSpec, SemiSupervisedBatches, load_dataset
from mmix_jax.data.pipeline import ArrayDataset
from mmix_jax.data.zca import fit_zca
from mmix_jax.errors import DataError
from mmix_jax.harness.configuration import ConfigError, run_spec, run_specs

sys.path.insert(0, str(ROOT / "configs"))

CLASSES = 4


def write_tiny_npz(path, per_class=40):
    data = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), per_class).astype(np.int32)
    base = np.linspace(40, 200, CLASSES)[labels][:, None, None, None]
    images = np.clip(base + data.normal(0, 30, (labels.size, 8, 8, 1)), 0, 255).astype(np.uint8)
    np.savez(path, image=images, label=labels)
    return path


def tiny_spec(path, **changes):
    keys = dict(name="npz", path=str(path), test_per_class=10, validation_per_class=5,
                labels_per_class=5, unlabeled=True)
    return DataSpec(**{**keys, **changes})


def test_unlabelled_pool_is_every_training_image_outside_validation(tmp_path):
    splits = load_dataset(tiny_spec(write_tiny_npz(tmp_path / "d.npz")), seed=0,
                          num_classes=CLASSES)
    assert len(splits.test) == 40 and len(splits.validation) == 20
    assert len(splits.unlabeled) == 160 - 40 - 20 and len(splits.train) == 20
    assert np.bincount(splits.train.labels).tolist() == [5] * CLASSES
    pool = {img.tobytes() for img in splits.unlabeled.images}
    assert all(img.tobytes() in pool for img in splits.train.images)  # labelled ones included
    assert not pool & {img.tobytes() for img in splits.validation.images}


@pytest.mark.parametrize("changes, key", [
    (dict(labels_per_class=26), "config.data.labels_per_class = 26, but class 0 has only 25"),
    (dict(validation_per_class=31), "config.data.validation_per_class = 31, but class 0 has only 30"),
])
def test_impossible_splits_are_refused_naming_the_key(tmp_path, changes, key):
    path = write_tiny_npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match=key):
        load_dataset(tiny_spec(path, **changes), seed=0, num_classes=CLASSES)


def test_streams_are_functions_of_seed_and_step_and_independent():
    labeled = ArrayDataset(np.arange(20).reshape(20, 1, 1, 1).astype(np.uint8),
                           np.arange(20, dtype=np.int32) % 4)
    unlabeled = ArrayDataset(np.arange(100).reshape(100, 1, 1, 1).astype(np.uint8),
                             np.zeros(100, np.int32))
    batches = SemiSupervisedBatches(labeled, unlabeled, 10, 10, seed=3)
    again = SemiSupervisedBatches(labeled, unlabeled, 10, 10, seed=3)
    assert batches.steps_per_epoch == 10  # an epoch is one pass over the unlabelled pool
    for step in (0, 7, 25, 3):  # random access: resuming at any step sees the same batches
        jax.tree.map(np.testing.assert_array_equal, batches[step], again[step])
    seen = np.concatenate([batches[s]["labeled"]["image"].ravel() for s in range(2)])
    assert sorted(seen.tolist()) == list(range(20))  # the labelled set cycles every 2 steps
    other = SemiSupervisedBatches(labeled, unlabeled, 10, 10, seed=4)
    assert not np.array_equal(other[0]["unlabeled"]["image"], batches[0]["unlabeled"]["image"])


def test_zca_whitens_the_training_images():
    data = np.random.default_rng(0)
    mixing = data.normal(size=(12, 12))
    images = np.clip(128 + 20 * (data.normal(size=(3000, 12)) @ mixing) / 4, 0, 255)
    images = images.astype(np.uint8).reshape(3000, 2, 2, 3)
    mean, std = (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)
    zca = fit_zca(images, mean, std)
    np.testing.assert_allclose(zca.components, zca.components.T, atol=1e-5)
    from mmix_jax.data.augment import normalize
    white = np.asarray(zca(normalize(images, mean, std))).reshape(3000, -1)
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(12), atol=1e-3)


@pytest.mark.parametrize("name", ["ssl_fashion_mnist", "ssl_cifar10", "ssl_svhn"])
def test_semi_supervised_configs_are_valid_with_the_stated_protocol(name):
    module = importlib.import_module(name)
    for method in module.METHODS:
        spec = run_spec(module.get_config(method))
        ssl = spec.semi_supervised
        assert spec.data.unlabeled and spec.data.validation_per_class > 0
        steps_per_epoch = 550
        total = spec.num_epochs * steps_per_epoch
        expected = module.METHODS[method]["rampup_fraction"] * total
        assert ssl.step_spec(steps_per_epoch).rampup_steps == round(expected)
        assert (ssl.spec.unsupervised_weight_max == 0) == (method == "supervised")
    assert len(run_specs(module.get_config(""))) == 3


@pytest.mark.parametrize("key, value, message", [
    ("data.labels_per_class", 0, "config.data.labels_per_class = 0 is invalid"),
    ("semi_supervised.targets", "teacher", "config.semi_supervised.targets = 'teacher'"),
    ("semi_supervised.unsupervised_layers", (0, 9), "config.semi_supervised.unsupervised_layers"),
    ("semi_supervised.rampup_epochs", 1000.0, "must be at most num_epochs"),
    ("semi_supervised.ema_decay", 1.0, "config.semi_supervised.ema_decay = 1.0"),
    ("semi_supervised.target_gradient", "through", "target_gradient = 'through' needs targets"),
])
def test_config_errors_name_the_key(key, value, message):
    config = importlib.import_module("ssl_fashion_mnist").get_config("ict")
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_spec(config)


def test_sigkill_then_resume_is_bit_identical_teacher_included(tmp_path):
    import subprocess

    from cli_runs import environment

    data = write_tiny_npz(tmp_path / "tiny.npz")

    def cli(workdir):
        return [sys.executable, "-m", "mmix_jax.harness.main", "--config=tests/ssl_tiny_config.py:ict",
                f"--config.data.path={data}", f"--workdir={workdir}"]

    def teacher_params(run_dir):
        import orbax.checkpoint as ocp
        step = checkpoint_steps(run_dir)[-1]
        restored = ocp.StandardCheckpointer().restore(
            pathlib.Path(run_dir).absolute() / "checkpoints" / str(step) / "state")
        return {jax.tree_util.keystr(k): np.asarray(v) for k, v in
                jax.tree_util.tree_flatten_with_path(restored["teacher"]["params"])[0]}

    reference = subprocess.run(cli(tmp_path / "ref"), cwd=ROOT, capture_output=True, text=True,
                               timeout=300, env=environment())
    assert reference.returncode == 0, reference.stderr[-3000:]
    process = subprocess.Popen(cli(tmp_path / "killed"), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=environment())
    from test_faults import wait_for_checkpoint
    wait_for_checkpoint(process, tmp_path / "killed", 150)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    resumed = subprocess.run(cli(tmp_path / "killed"), cwd=ROOT, capture_output=True, text=True,
                             timeout=300, env=environment())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert 150 <= summary["resumed_from_step"] < 400, summary
    for run_dir in (tmp_path / "ref", tmp_path / "killed"):
        assert final_params(run_dir)[0] == 400
    assert_bit_identical(final_params(tmp_path / "killed")[1], final_params(tmp_path / "ref")[1])
    assert_bit_identical(teacher_params(tmp_path / "killed"), teacher_params(tmp_path / "ref"))
    reference_summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert summary["val_selected_test_error_percent"] == \
        reference_summary["val_selected_test_error_percent"]
    assert reference_summary["test_error_percent"] < 50  # 4 classes: chance is 75 % error


def test_semi_supervised_run_on_eight_devices(tmp_path):
    import subprocess

    from cli_runs import environment

    data = write_tiny_npz(tmp_path / "tiny.npz")
    result = subprocess.run(
        [sys.executable, "-m", "mmix_jax.harness.main", "--config=tests/ssl_tiny_config.py:manifold",
         f"--config.data.path={data}", f"--workdir={tmp_path / 'run'}", "--cpu_devices=8",
         "--config.batch_size=16", "--config.semi_supervised.unlabeled_batch_size=16",
         "--config.eval_batch_size=16", "--config.num_epochs=3",
         "--config.semi_supervised.rampup_epochs=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["devices"] == 8 and summary["steps"] == 3 * (100 // 16)
    assert summary["train_examples"] == 20 and np.isfinite(summary["test_nll"])


def test_each_process_takes_its_share_of_both_streams(monkeypatch):
    from mmix_jax import parallel

    batch = {"labeled": {"image": np.arange(8), "label": np.arange(8) + 100},
             "unlabeled": {"image": np.arange(12) + 200}}
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    share = parallel.process_share(batch)
    assert share["labeled"]["image"].tolist() == [4, 5, 6, 7]
    assert share["labeled"]["label"].tolist() == [104, 105, 106, 107]
    assert share["unlabeled"]["image"].tolist() == list(range(206, 212))


def test_cosine_rampdown_is_icts_formula_per_update():
    from mmix_jax.optim import OptimizerSpec, make_optimizer
    spec = OptimizerSpec(learning_rate=0.1, nesterov=False, schedule="cosine",
                         rampdown_epochs=4.5)
    _, schedule = make_optimizer(spec, steps_per_epoch=10)
    for step in (0, 1, 10, 22, 44, 45, 60):
        epoch = min(step / 10, 4.5)  # ICT: epoch + step_in_epoch / steps_in_epoch
        expected = 0.1 * 0.5 * (np.cos(np.pi * epoch / 4.5) + 1)
        assert float(schedule(step)) == pytest.approx(expected, abs=1e-7), step
    config = importlib.import_module("ssl_fashion_mnist").get_config("ict")
    config.optimizer.rampdown_epochs = config.num_epochs - 1
    with pytest.raises(ConfigError, match="optimizer.rampdown_epochs .* at or after the last"):
        run_spec(config)


@pytest.mark.parametrize("name, alpha, epochs", [("ssl_cifar10", 1.0, 1000),
                                                 ("ssl_svhn", 0.1, 200)])
def test_ict_preset_has_icts_readme_settings(name, alpha, epochs):
    """ICT's README: --dropout 0.0 --mixup_consistency 100.0 --consistency_rampup_ends at 1/4
    of --epochs, --lr_rampdown_epochs 450 for --epochs 400, --ema_decay 0.999, α 1 (CIFAR-10)
    and 0.1 (SVHN), momentum 0.9 without Nesterov (its default), weight decay 1e-4 (default).
    The other methods keep the Manifold Mixup settings."""
    specs = dict(run_specs(importlib.import_module(name).get_config("")))
    ict = specs["ict"]
    assert dict(ict.model.options)["dropout_rate"] == 0.0
    assert (ict.optimizer.momentum, ict.optimizer.nesterov, ict.optimizer.weight_decay,
            ict.optimizer.schedule) == (0.9, False, 1e-4, "cosine")
    assert ict.optimizer.rampdown_epochs == pytest.approx(epochs * 450 / 400)
    ssl = ict.semi_supervised
    assert (ssl.spec.supervised_alpha, ssl.spec.unsupervised_alpha,
            ssl.spec.unsupervised_weight_max, ssl.spec.ema_decay, ssl.spec.targets) == (
        alpha, alpha, 100.0, 0.999, "mean_teacher")
    assert ssl.rampup_epochs == pytest.approx(epochs / 4)
    manifold = specs["manifold"]
    assert dict(manifold.model.options)["dropout_rate"] == 0.3
    assert (manifold.optimizer.nesterov, manifold.optimizer.weight_decay,
            manifold.optimizer.schedule) == (True, 5e-4, "step")


def test_two_moons_lie_on_two_unit_half_circles_half_a_unit_apart():
    """Without noise, class 0 lies on the upper half of the unit circle about (−½, −¼) and
    class 1 on the lower half of the one about (½, ¼); the two arcs come within ½ of each
    other (at their tips) and no closer. With noise, points move by about `noise`."""
    from mmix_jax.data.synthetic import two_moons
    clean = two_moons(4000, noise=0.0, seed=3)
    x, y = clean.images.astype(np.float64), clean.labels
    assert set(np.unique(y)) == {0, 1} and abs(np.mean(y) - 0.5) < 0.05
    centres = np.where(y[:, None] == 0, [-0.5, -0.25], [0.5, 0.25])
    np.testing.assert_allclose(np.linalg.norm(x - centres, axis=1), 1.0, atol=1e-6)
    assert np.all(x[y == 0, 1] >= -0.25 - 1e-6) and np.all(x[y == 1, 1] <= 0.25 + 1e-6)
    gaps = np.linalg.norm(x[y == 0][:, None] - x[y == 1][None], axis=-1)
    assert 0.5 - 1e-6 <= gaps.min() < 0.52
    noisy = two_moons(4000, noise=0.1, seed=3)
    np.testing.assert_array_equal(noisy.labels, y)  # the same draw, then the noise
    assert np.std(noisy.images - clean.images) == pytest.approx(0.1, rel=0.05)


def test_moons_demonstration_trains_three_methods_on_six_labels(tmp_path):
    """configs/ssl_moons.py at a fifteenth of its epochs: 3 labelled points per class, every
    other training point outside validation unlabelled; the three methods report the
    validation-selected checkpoint, and the labelled-only baseline has learnt from 6 points.
    Each reports how many unlabelled points lie near its boundary, beside the Bayes boundary's."""
    from mmix_jax.harness import runs
    config = importlib.import_module("ssl_moons").get_config("epochs=10")
    splits = load_dataset(run_specs(config)[0][1].data, seed=0, num_classes=2)
    np.testing.assert_array_equal(np.bincount(splits.train.labels), [3, 3])
    assert len(splits.unlabeled) == 2000 - 50 and len(splits.validation) == 50
    summary = runs.run(config, tmp_path / "demo")
    assert sorted(summary) == ["ict", "manifold", "supervised"]
    for method, metrics in summary.items():
        assert metrics["steps"] == 10 * (1950 // 100) and metrics["train_examples"] == 6
        assert metrics["val_selected_epoch"] in range(1, 11), method
    assert summary["supervised"]["val_selected_test_accuracy"] > 0.65  # chance is 0.5
    assert (tmp_path / "demo" / "decision_boundaries.png").stat().st_size > 20_000
    # The low-density reference is the data's: the same for every method, and the Bayes
    # boundary runs in the gap (near < 3 % of the unlabelled points).
    assert len({metrics["unlabeled_near_bayes_boundary"] for metrics in summary.values()}) == 1
    assert summary["supervised"]["unlabeled_near_bayes_boundary"] < 0.03
    assert all(0 <= metrics["unlabeled_near_boundary"] <= 1 for metrics in summary.values())


def test_runs_on_icts_settings_are_labelled_apart_from_the_methods_they_resemble():
    """Tables and curves must not average a control with the method it controls for: runs on
    ICT's run settings (cosine ramp-down) that are not ICT carry "(ICT's settings)", and the
    label follows the consistency term actually trained (weight 0: labelled only)."""
    from mmix_jax.harness.methods import semi_supervised_label
    module = importlib.import_module("ssl_fashion_mnist")

    def label(method, schedule=None, **ssl):
        config = module.get_config(method)
        config.semi_supervised.update(ssl)
        config.optimizer.schedule = schedule or config.optimizer.schedule
        return semi_supervised_label(config.to_dict())

    assert label("supervised") == "Labelled only"
    assert label("manifold") == "SSL Manifold Mixup"
    assert label("ict") == "ICT"
    assert label("ict", unsupervised_weight_max=0.0) == "Labelled only (ICT's settings)"
    assert label("ict", targets="self") == "SSL Manifold Mixup (ICT's settings)"
    assert label("ict", "step", targets="self") == (
        "SSL Manifold Mixup (ICT's settings, step schedule)")
    assert label("manifold", "cosine") == "SSL Manifold Mixup"  # dropout, Nesterov: not ICT's
    assert label("manifold", target_gradient="through") == (
        "SSL Manifold Mixup, targets differentiated")
    assert label("supervised", target_gradient="through") == "Labelled only"  # no targets


def test_runs_checkpointed_before_later_semi_supervised_keys_existed_still_resume():
    """A stored config without semi_supervised.target_gradient or batch_norm_passes (written
    before the keys existed) meant the stopped gradient and the library's pass order: it
    matches "stop" and "step" and differs from "through" and "authors"; a supervised config
    gains no semi-supervised key."""
    from mmix_jax.harness.checkpoint import config_differences

    stored = {"seed": 0, "semi_supervised": {"targets": "self", "unsupervised_weight_max": 1.0}}
    current = {"seed": 0, "semi_supervised": dict(stored["semi_supervised"],
                                                  target_gradient="stop",
                                                  batch_norm_passes="step")}
    assert config_differences(stored, current) == []
    current["semi_supervised"].update(target_gradient="through", batch_norm_passes="authors")
    assert config_differences(stored, current) == [
        "semi_supervised.batch_norm_passes: 'step' → 'authors'",
        "semi_supervised.target_gradient: 'stop' → 'through'"]
    assert config_differences({"seed": 0, "mix": {"alpha": 2.0}},
                              {"seed": 0, "mix": {"alpha": 2.0}}) == []

