"""Kill, preemption, corruption and config changes: a resumed run ends bit-identical (CPU)."""

import json
import signal
import subprocess
import sys
import time

import pytest
from cli_runs import (
    ROOT,
    SHORT_RUN,
    assert_bit_identical,
    checkpoint_steps,
    environment,
    final_params,
    run,
    start,
)

TOTAL_STEPS = 1000


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its final params are what every interrupted run must end with."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = run(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    step, params = final_params(workdir / "manifold")
    assert step == TOTAL_STEPS
    return params


def wait_for_checkpoint(process, run_dir, at_least, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"run ended before checkpoint {at_least}: {process.stderr.read()[-2000:]}")
        if any(step >= at_least for step in checkpoint_steps(run_dir)):
            return
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"no checkpoint >= {at_least} within {timeout} s")


def resume_and_check(workdir, reference, *, resumed_after):
    result = run(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "manifold" / "summary.json").read_text())
    assert resumed_after <= summary["resumed_from_step"] < TOTAL_STEPS, summary
    step, params = final_params(workdir / "manifold")
    assert step == TOTAL_STEPS
    assert_bit_identical(params, reference)
    return result


def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path, reference):
    process = start(tmp_path)
    wait_for_checkpoint(process, tmp_path / "manifold", 300)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "summary.json").exists()
    resume_and_check(tmp_path, reference, resumed_after=300)


def test_sigkill_during_an_async_save_then_resume_is_bit_identical(tmp_path, reference):
    result = run(tmp_path, kill_during_save=500)
    assert result.returncode == -signal.SIGKILL
    steps = checkpoint_steps(tmp_path / "manifold")
    assert steps and max(steps) <= 500 and 450 in steps
    resume_and_check(tmp_path, reference, resumed_after=450)


def test_sigterm_saves_then_exits_and_resumes_bit_identical(tmp_path, reference):
    process = start(tmp_path)
    wait_for_checkpoint(process, tmp_path / "manifold", 200)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "preempted (SIGTERM): saved step" in stderr
    saved = max(checkpoint_steps(tmp_path / "manifold"))
    assert f"saved step {saved} " in stderr
    resume_and_check(tmp_path, reference, resumed_after=saved)


def test_sigterm_saves_before_any_evaluation(tmp_path):
    """The preemption checkpoint is written before anything is evaluated (the seam logs what
    the process did after SIGTERM, in order); the run stops with it on disk."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "preemption_seam.py"), *SHORT_RUN,
         f"--workdir={tmp_path}"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=environment())
    wait_for_checkpoint(process, tmp_path / "manifold", 100)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    events = [line.split("SEAM ", 1)[1] for line in stderr.splitlines() if "SEAM " in line]
    after = events[events.index("sigterm") + 1:]
    assert after and after[0].startswith("save "), events[-6:]
    saved = int(after[0].split()[1])
    assert "evaluate" not in after and saved in checkpoint_steps(tmp_path / "manifold")


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    result = run(tmp_path, kill_during_save=600)
    assert result.returncode == -signal.SIGKILL
    run_dir = tmp_path / "manifold"
    for _ in range(50):  # the kill may land before the save of 600 is committed
        latest = max(checkpoint_steps(run_dir))
        if latest in (550, 600):
            break
        time.sleep(0.1)
    previous = [s for s in checkpoint_steps(run_dir) if s < latest][-1]
    corrupted = 0
    for path in (run_dir / "checkpoints" / str(latest) / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00garbage" * 8)
            corrupted += 1
    assert corrupted
    result = resume_and_check(tmp_path, reference, resumed_after=previous)
    line = next(text for text in result.stderr.splitlines() if "is unreadable" in text)
    assert f"checkpoints/{latest} is unreadable" in line and "moved to" in line
    set_aside = list((run_dir / "checkpoints_unreadable").iterdir())
    assert [p.name.split("-")[0] for p in set_aside] == [str(latest)]  # kept, not deleted


def test_resume_with_a_different_model_is_refused_and_touches_nothing(tmp_path):
    result = run(tmp_path, kill_during_save=100)
    assert result.returncode == -signal.SIGKILL
    before = checkpoint_steps(tmp_path / "manifold")
    for _ in range(50):  # as above: let a commit that raced the kill show up first
        time.sleep(0.1)
        before, previous = checkpoint_steps(tmp_path / "manifold"), before
        if before == previous:
            break
    refused = run(tmp_path, "--config.model.widths=(64,64,64)", "--config.num_epochs=20")
    tail = f"checkpoints before: {before}; stderr:\n{refused.stderr[-3000:]}"
    assert refused.returncode != 0, tail
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("mmix-train: error:") and "holds checkpoints of a different run" in last, tail
    assert "model.widths: [256, 256, 256] → [64, 64, 64]" in last and "num_epochs" not in last, tail
    assert checkpoint_steps(tmp_path / "manifold") == before, tail
    assert not (tmp_path / "manifold" / "checkpoints_unreadable").exists(), tail


@pytest.mark.parametrize("metric, mode, values, best", [
    ("val_accuracy", "max", (0.5, 0.9, 0.7), 2),
    ("val_nll", "min", (0.9, 0.4, 0.6), 2),
    ("val_accuracy", "max", (0.5, 0.6, 0.7), 3),
])
def test_best_step_is_the_best_by_metric_not_the_latest(tmp_path, metric, mode, values, best):
    import numpy as np

    from mmix_jax.harness.checkpoint import Checkpoints, CheckpointSettings

    checkpoints = Checkpoints(tmp_path, CheckpointSettings(every_steps=1, keep=1,
                                                           best_metric=metric, best_mode=mode))
    for step, value in enumerate(values, start=1):
        checkpoints.save(step, {"w": np.full(2, step, np.float32)}, {}, {metric: value})
    checkpoints.wait()
    assert checkpoints.best_step() == best
    assert checkpoints.steps() == sorted({best, len(values)})  # the best and the latest kept
    checkpoints.close()
