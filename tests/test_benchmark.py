"""scripts/benchmark.py in smoke mode produces well-formed JSON lines (no timing asserted)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

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


FAKE_REFERENCE = """
import json, os, sys
print("warming up")
print(json.dumps({"impl": "fake", "mode": sys.argv[sys.argv.index("--mode") + 1],
                  "images_per_s": 100.0, "seen_tunables": os.environ.get("GLIBC_TUNABLES", "")}))
"""


def test_benchmark_runs_the_reference_with_and_without_glibc_tunables(tmp_path):
    """--torch-malloc both: the reference runs once in this environment and once without
    GLIBC_TUNABLES, and each ratio line names the environment its reference ran in."""
    fake = tmp_path / "fake_reference.py"
    fake.write_text(FAKE_REFERENCE)
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.hugetlb=1")
    result = subprocess.run([sys.executable, "scripts/benchmark.py", "--smoke", "--modes", "manifold",
                             "--torch", "--torch-ref", str(fake), "--torch-malloc", "both"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["case"] for line in lines] == ["environment", "step", "torch", "ratio", "torch", "ratio"]
    step = lines[1]
    assert step["glibc_tunables"] == "glibc.malloc.hugetlb=1"
    same, default = lines[2], lines[4]
    assert same["seen_tunables"] == same["glibc_tunables"] == "glibc.malloc.hugetlb=1"
    assert default["seen_tunables"] == default["glibc_tunables"] == ""
    for reference, ratio in ((same, lines[3]), (default, lines[5])):
        assert ratio["torch_glibc_tunables"] == reference["glibc_tunables"]
        assert ratio["ours_over_torch_images_per_s"] == pytest.approx(step["images_per_s"] / 100.0)
