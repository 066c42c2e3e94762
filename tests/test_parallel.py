"""Data parallelism on 8 CPU devices and across two processes (subprocesses, bounded time)."""

import json
import subprocess
import sys

import pytest

from cli_runs import (ROOT, assert_bit_identical, command, environment, final_params, free_port,
                      run)


def sharded_check(name, *args, devices=8):
    result = subprocess.run([sys.executable, "tests/sharded_checks.py", name, *map(str, args)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=environment(devices=devices))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_eight_device_erm_step_equals_one_device_step_with_cross_device_batch_norm():
    assert "devices 8" in sharded_check("erm_equivalence")


def test_eight_device_mixup_step_equals_by_hand_per_shard_computation():
    assert "devices 8" in sharded_check("mixing_by_hand")


def test_checkpoint_written_on_eight_devices_restores_on_two(tmp_path):
    assert "saved on 8 devices" in sharded_check("save_for_restore", tmp_path, devices=8)
    assert "restored on 2 devices" in sharded_check("restore_elsewhere", tmp_path, devices=2)


def test_two_processes_train_like_one_process_on_the_same_global_batches(tmp_path):
    short = ["--config.num_epochs=2", "--config.checkpoint.every_steps=100"]
    single = run(tmp_path / "single", *short, devices=2)
    assert single.returncode == 0, single.stderr[-3000:]

    port = free_port()
    workdir = tmp_path / "two_processes"
    processes = [subprocess.Popen(
        command(workdir, *short, f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2", f"--process_id={i}"),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=environment(devices=1)) for i in range(2)]
    try:
        errors = [p.communicate(timeout=300)[1] for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        pytest.fail("two-process run did not finish in 300 s")
    for p, err in zip(processes, errors):
        # Each process ends with multihost_utils.assert_equal(params): identical on both.
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((workdir / "manifold" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    step_single, params_single = final_params(tmp_path / "single" / "manifold")
    step_multi, params_multi = final_params(workdir / "manifold")
    assert step_single == step_multi == 200
    assert_bit_identical(params_multi, params_single)
