"""Data parallelism across two processes on 127.0.0.1 (subprocesses, bounded time)."""

import json
import subprocess
import sys

from cli_runs import (
    ROOT,
    assert_bit_identical,
    command,
    environment,
    final_params,
    run,
    run_two_processes,
)
from shared_data import FASHION_MNIST, needs_fashion_mnist


def test_two_processes_train_like_one_process_on_the_same_global_batches(tmp_path):
    short = ["--config.num_epochs=2", "--config.checkpoint.every_steps=100"]
    single = run(tmp_path / "single", *short, devices=2)
    assert single.returncode == 0, single.stderr[-3000:]

    workdir = tmp_path / "two_processes"
    for returncode, err in run_two_processes(command(workdir, *short)):
        # Each process ends with multihost_utils.assert_equal(params): identical on both.
        assert returncode == 0, err[-3000:]
    summary = json.loads((workdir / "manifold" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    step_single, params_single = final_params(tmp_path / "single" / "manifold")
    step_multi, params_multi = final_params(workdir / "manifold")
    assert step_single == step_multi == 200
    assert_bit_identical(params_multi, params_single)


IMAGE_CONFIG = """
import sys
sys.path.insert(0, {configs!r})
import supervised

def get_config(arg=""):
    config = supervised.get_config("fashion_mnist,preactresnet18,manifold,epochs=1")
    config.model = dict(name="mlp", widths=(64, 64), activation="relu", dtype="float32")
    config.mix.layers = (1, 2)
    config.data.update(dict(labels_per_class=100, manual_dir={manual!r}, data_dir={data_dir!r}))
    config.log_every_steps = 5
    config.eval.update(dict(deformations=(), rotation_angles=(), ood_sets=(), pgd_steps=()))
    return config
"""


@needs_fashion_mnist
def test_two_processes_on_real_images_prepare_once_augment_and_evaluate_like_one(tmp_path):
    """TFDS preparation into one shared data_dir, on-device crop/flip, and the gathered
    full evaluation (ECE, FGSM) across two processes equal a 2-device single process."""
    config_file = tmp_path / "images.py"
    config_file.write_text(IMAGE_CONFIG.format(configs=str(ROOT / "configs"),
                                               manual=str(FASHION_MNIST),
                                               data_dir=str(tmp_path / "tfds")))
    base = [sys.executable, "-m", "mmix_jax.harness.main", f"--config={config_file}"]
    for returncode, err in run_two_processes(base + [f"--workdir={tmp_path / 'two'}"], optimized=True):
        assert returncode == 0, err[-3000:]
    single = subprocess.run(base + [f"--workdir={tmp_path / 'one'}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env=environment(devices=2, optimized=True))
    assert single.returncode == 0, single.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1 and two["steps"] == one["steps"] == 10
    for key in ("train_accuracy", "test_accuracy", "test_nll", "test_ece", "fgsm_accuracy"):
        assert two[key] == one[key], key
