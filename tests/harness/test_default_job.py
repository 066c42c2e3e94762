"""The embedded default job end to end, through the real command line, on a tiny budget."""

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


SHORT_JOB = ["--config=configs/default.py", "--config.num_epochs=30",
             "--config.optimizer.milestones=(20,25)", "--config.data.num_train=1000",
             "--config.log_every_steps=100"]


def short_job(workdir):
    return subprocess.run([sys.executable, "-m", "mmix_jax.harness.main", *SHORT_JOB,
                           f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_spirals_job_trains_all_three_methods_and_writes_figure_and_summary(tmp_path):
    workdir = tmp_path / "spirals"
    result = short_job(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"\[100\] .*loss=.*mixed_accuracy=", result.stderr)  # progress: metrics
    assert re.search(r"\[100\] .*steps_per_sec=", result.stderr)  # clu ReportProgress

    summary = json.loads((workdir / "summary.json").read_text())
    assert sorted(summary) == ["erm", "input", "manifold"]
    for method, metrics in summary.items():
        assert metrics["steps"] == 300
        assert metrics["test_accuracy"] > 0.8, (method, metrics)  # chance is 0.5
        assert 0 < metrics["test_nll"] < 0.693, (method, metrics)  # below a uniform guess
        assert 0.5 <= metrics["off_data_confidence"] <= 1.0
        assert (workdir / method / "summary.json").exists()
        assert json.loads((workdir / method / "config.json").read_text())["mix"]["layers"] == \
            {"erm": [], "input": [0], "manifold": [0, 1, 2]}[method]
    png = (workdir / "decision_boundaries.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000

    again = subprocess.run(
        [sys.executable, "-m", "mmix_jax.harness.main", "--config=configs/default.py",
         f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already holds a finished run" in again.stderr
    assert json.loads((workdir / "summary.json").read_text()) == summary

    # As if stopped while the second method ("input") was being evaluated: the command's own
    # summary and input's are missing. The same command finishes it: erm and manifold are
    # reused as they are, input resumes from its checkpoint, and the report is the same.
    (workdir / "summary.json").unlink()
    (workdir / "input" / "summary.json").unlink()
    erm_mtime = (workdir / "erm" / "summary.json").stat().st_mtime_ns
    resumed = short_job(workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "erm finished earlier" in resumed.stderr and "manifold finished earlier" in resumed.stderr
    assert (workdir / "erm" / "summary.json").stat().st_mtime_ns == erm_mtime
    again_summary = json.loads((workdir / "summary.json").read_text())
    for method in ("erm", "manifold"):
        assert again_summary[method] == summary[method]
    for key in ("steps", "test_accuracy", "test_nll"):
        assert again_summary["input"][key] == summary["input"][key]


def test_a_second_run_reuses_the_compiled_step_from_the_persistent_cache(tmp_path):
    """config.compilation_cache_dir: the first run writes the train step's executable there, a
    second run with the same config finds it (no new train-step entry: the key did not change)."""
    cache = tmp_path / "compilation_cache"

    def train(name):
        result = subprocess.run(
            [sys.executable, "-m", "mmix_jax.harness.main", "--config=configs/default.py:manifold",
             f"--workdir={tmp_path / name}", "--config.num_epochs=1", "--config.data.num_train=200",
             "--config.batch_size=10", "--config.optimizer.milestones=()",
             f"--config.compilation_cache_dir={cache}"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return sorted(path.name for path in cache.iterdir() if path.name.endswith("-cache"))

    def train_steps(entries):
        """The train step's entries; small programs (initialisation, evaluation) compile in
        about the cache's 0.5 s threshold and may be cached in one run and not the other."""
        return [name for name in entries if name.startswith("jit_per_device")]

    first = train_steps(train("first"))
    assert first, "the train step was not cached"
    assert train_steps(train("second")) == first
