"""Data parallelism on 8 CPU devices and across two processes (subprocesses, bounded time)."""

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
    sharded_check,
)
from shared_data import FASHION_MNIST, needs_fashion_mnist


def test_eight_device_erm_step_equals_one_device_step_with_cross_device_batch_norm():
    out = sharded_check("erm_equivalence")
    assert "devices 8" in out
    # and the gradient is averaged under shard_map (check_vma on and off) and pmap alike
    for wrapper in ("check_vma=True", "check_vma=False", "pmap"):
        assert f"{wrapper} params max diff" in out, out


def test_eight_device_mixup_and_semi_supervised_steps_equal_by_hand_per_shard_computations():
    out = sharded_check("supervised_and_semi_supervised_by_hand")
    assert "devices 8 mix_layer" in out
    assert "devices 8 targets self" in out and "devices 8 targets mean_teacher" in out


def test_checkpoint_written_on_eight_devices_restores_on_two(tmp_path):
    assert "saved on 8 devices" in sharded_check("save_for_restore", tmp_path, devices=8)
    assert "restored on 2 devices" in sharded_check("restore_elsewhere", tmp_path, devices=2)


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


def test_a_process_waits_for_a_slow_first_process_then_collectives_work():
    """Process 0's preparation takes 35 s, longer than Gloo's 30 s default timeout: process 1
    waits on the coordination service (not a device collective) and both then all-gather.
    Process 0's failure reaches process 1 by message; a wait past its timeout is refused."""
    from cli_runs import free_port
    port, sleep_s = free_port(), 35
    processes = [subprocess.Popen(
        [sys.executable, "tests/slow_host.py", str(port), str(i), str(sleep_s)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(devices=1))
        for i in range(2)]
    outputs = [p.communicate(timeout=240) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    zero, one = ([line for line in out.splitlines() if not line.startswith("[Gloo]")]
                 for out, _ in outputs)
    assert zero[0] == "failure: disk full"
    assert one[0] == ("failure: 'failing preparation' failed on process 0: OSError: disk full")
    assert zero[1] == "too slow: finished"
    assert one[1].startswith("timeout: process 1 waited 1 s for process 0 to finish 'too slow'")
    assert "config.data.prepare_timeout_s" in one[1]
    waited = float(one[2].split()[2])
    assert waited >= sleep_s - 5, one[2]  # process 0 slept 4 s of it in the previous call
    assert zero[2].endswith("allgather [1.0, 2.0]") and one[2].endswith("allgather [1.0, 2.0]")
