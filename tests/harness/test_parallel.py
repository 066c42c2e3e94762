"""Data parallelism on 8 simulated CPU devices (in subprocesses: a process's device count is
fixed when JAX starts)."""

from cli_runs import sharded_check


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
