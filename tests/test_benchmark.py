"""scripts/benchmark.py in smoke mode produces well-formed JSON lines (no timing asserted)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_benchmark_smoke_lines_are_well_formed():
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--smoke", "--pipeline",
                             "--modes", "erm,manifold"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    cases = [line["case"] for line in lines]
    assert cases == ["environment", "step", "step", "ratio"]
    for line in lines[1:3]:
        assert line["mode"] in ("erm", "manifold") and line["batch"] == 8
        assert line["step_s_min"] <= line["step_s_median"] <= line["step_s_max"]
        assert line["images_per_s"] > 0 and line["pipeline_images_per_s"] > 0
        assert line["compile_s"] > 0 and line["jax"] and line["device_kind"]
    assert lines[3]["manifold_over_erm_step_time"] > 0


def test_benchmark_smoke_on_two_tuned_cpu_devices_reports_them():
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--smoke", "--modes", "manifold",
                             "--cpu-devices", "2", "--cpu-tuning", "--cross-device-bn"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["case"] for line in lines] == ["environment", "step"]
    assert lines[0]["devices"] == ["cpu", "cpu"]
    assert "--xla_cpu_multi_thread_eigen=false" in lines[0]["xla_flags"]
    step = lines[1]
    assert step["devices"] == 2 and step["cross_device_bn"] is True and step["images_per_s"] > 0
