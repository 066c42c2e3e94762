"""Runs that cannot train sensibly stop cleanly, in one line. A diverging run: after
config.stop_after_nonfinite_steps consecutive non-finite steps, one line names the step and the
last finite checkpoint, which is kept; no non-finite state is saved and no summary of one is
written. A mixed run whose batch leaves one example per device: refused before training."""

import jax.numpy as jnp
import numpy as np
import pytest
from cli_runs import checkpoint_steps, final_params, run

from mmix_jax.errors import DivergedError
from mmix_jax.harness.divergence import DivergenceGuard


def test_a_learning_rate_that_diverges_stops_the_cli_and_keeps_the_finite_checkpoints(
        tmp_path):
    """The short spirals run at learning rate 30, saving every step: its first steps are
    finite and saved, then the loss turns NaN; the run stops 5 steps later."""
    result = run(tmp_path, "--config.optimizer.learning_rate=30",
                 "--config.checkpoint.every_steps=1")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mmix-train: error: training diverged: the loss or gradient was not "
                           "finite for 5 consecutive steps, up to step "), last
    diverged_at = int(last.split("up to step ")[1].split(";")[0])
    steps = checkpoint_steps(tmp_path / "manifold")
    assert steps and max(steps) <= diverged_at - 5, (steps, diverged_at)  # nothing after
    assert f"the last checkpoint, step {max(steps)}, is kept as it was" in last
    _, params = final_params(tmp_path / "manifold")
    assert all(np.isfinite(value).all() for value in params.values())
    assert not (tmp_path / "summary.json").exists()
    assert not (tmp_path / "manifold" / "summary.json").exists()
    assert "not saved, its loss or gradient is not finite" in result.stderr


def guard_after(flags, patience):
    guard = DivergenceGuard(patience, "/runs/x/checkpoints")
    for step, finite in enumerate(flags, 1):
        value = jnp.float32(1.0 if finite else jnp.nan)
        guard.add(step, {"loss": value, "grad_norm": jnp.float32(1.0)})
    return guard


def test_the_guard_counts_consecutive_non_finite_steps_only():
    assert guard_after([True, False, False, True, False, False], patience=3).check(None) is False
    assert guard_after([True, False, True], patience=2).check(None) is True
    with pytest.raises(DivergedError, match=r"3 consecutive steps, up to step 4; .*step 50, is "
                                            r"kept as it was in /runs/x/checkpoints"):
        guard_after([True, False, False, False], patience=3).check(last_saved=50)
    with pytest.raises(DivergedError, match="up to step 2"):
        guard_after([True, False], patience=5).require_finite(None)


def test_a_mixed_run_with_one_example_per_device_is_refused_in_one_line(tmp_path):
    result = run(tmp_path, "--cpu_devices=2", "--config.batch_size=2")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("mmix-train: error: config.batch_size = 2 gives 1 example(s) per device on "
                    "2 devices, and each device mixes within its own batch: use at least 4."), last
    assert not (tmp_path / "manifold" / "checkpoints").exists()
