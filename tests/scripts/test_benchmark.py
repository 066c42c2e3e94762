"""scripts/benchmark.py in smoke mode produces well-formed JSON lines (no timing asserted)."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
from blocked_imports import run_blocked

ROOT = pathlib.Path(__file__).resolve().parents[2]


FAKE_REFERENCE = """
import json, os, sys
print("warming up")
print(json.dumps({"impl": "fake", "mode": sys.argv[sys.argv.index("--mode") + 1],
                  "images_per_s": 100.0, "seen_tunables": os.environ.get("GLIBC_TUNABLES", "")}))
"""


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of scripts/benchmark.py with every optional part (each compile of the
    smoke model costs seconds, so the tests below share it): two tuned CPU devices with
    cross-device BatchNorm, the host input path, a given peak, a trace, the wrapped model, the
    NNX ratio, and a stand-in reference run with and without GLIBC_TUNABLES. Returns
    (JSON lines, the trace folder)."""
    tmp = tmp_path_factory.mktemp("benchmark")
    fake = tmp / "fake_reference.py"
    fake.write_text(FAKE_REFERENCE)
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.hugetlb=1")
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "--smoke", "--modes", "erm,manifold",
         "--cpu-devices", "2", "--cpu-tuning", "--cross-device-bn", "--pipeline",
         "--peak-tflops", "0.5", "--profile-dir", str(tmp / "traces"), "--wrapped", "--nnx",
         "--torch", "--torch-ref", str(fake), "--torch-malloc", "both"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")], tmp


def of_case(lines, case, **match):
    return [line for line in lines
            if line["case"] == case and all(line.get(k) == v for k, v in match.items())]


def test_benchmark_lines_come_in_order_on_two_tuned_cpu_devices(smoke_run):
    lines, _ = smoke_run
    assert lines[0]["case"] == "environment" and lines[0]["devices"] == ["cpu", "cpu"]
    assert "--xla_cpu_multi_thread_eigen=false" in lines[0]["xla_flags"]
    native = of_case(lines, "step", wrapped=False)
    assert [line["mode"] for line in native] == ["erm", "manifold"]
    for line in native:
        assert line["batch"] == 8 and line["devices"] == 2 and line["cross_device_bn"] is True
        assert line["step_s_min"] <= line["step_s_median"] <= line["step_s_max"]
        assert line["images_per_s"] > 0 and line["pipeline_images_per_s"] > 0
        assert line["compile_s"] > 0 and line["jax"] and line["device_kind"]
    [ratio] = [line for line in of_case(lines, "ratio") if "manifold_over_erm_step_time" in line]
    assert ratio["manifold_over_erm_step_time"] == pytest.approx(
        native[1]["step_s_median"] / native[0]["step_s_median"])


def test_benchmark_reports_model_flops_mfu_and_writes_a_trace(smoke_run):
    """Model FLOPs are the smoke model's train FLOPs × batch; the MFU divides the achieved model
    FLOP/s by the given peak of every device (2 here); --profile-dir leaves a trace of one extra
    window."""
    from mmix_jax.evaluation import flops
    from mmix_jax.models import get_model

    lines, tmp = smoke_run
    step = of_case(lines, "step", wrapped=False, mode="erm")[0]
    smoke_model = get_model("preactresnet18", num_classes=10, width=4)
    assert step["model_flops_per_step"] == 8 * 3 * flops.forward_flops_per_example(
        smoke_model, (16, 16, 3))
    assert step["model_tflops_per_s"] == pytest.approx(
        step["model_flops_per_step"] / step["step_s_median"] / 1e12)
    assert step["peak_tflops_per_device"] == 0.5
    assert step["mfu"] == pytest.approx(step["model_tflops_per_s"] / (0.5 * 2))
    traces = list(pathlib.Path(step["profile_dir"]).rglob("*.xplane.pb"))
    assert pathlib.Path(step["profile_dir"]).parent == tmp / "traces" and traces
    # Without --peak-tflops a CPU has no known peak: model FLOP/s, but no utilisation.
    assert flops.peak_flops_per_s("cpu", "float32") is None


def test_benchmark_runs_the_reference_with_and_without_glibc_tunables(smoke_run):
    """--torch-malloc both: the reference runs once in this environment and once without
    GLIBC_TUNABLES, and each ratio line names the environment its reference ran in."""
    lines, _ = smoke_run
    for mode in ("erm", "manifold"):
        step = of_case(lines, "step", wrapped=False, mode=mode)[0]
        assert step["glibc_tunables"] == "glibc.malloc.hugetlb=1"
        same, default = of_case(lines, "torch", mode=mode)
        assert same["seen_tunables"] == same["glibc_tunables"] == "glibc.malloc.hugetlb=1"
        assert default["seen_tunables"] == default["glibc_tunables"] == ""
        ratios = [line for line in of_case(lines, "ratio", mode=mode)
                  if "ours_over_torch_images_per_s" in line]
        assert [r["torch_glibc_tunables"] for r in ratios] == ["glibc.malloc.hugetlb=1", ""]
        for ratio in ratios:
            assert ratio["same_model"] is False  # the smoke model is 4 wide, the reference 64
            assert ratio["ours_over_torch_images_per_s"] == pytest.approx(
                step["images_per_s"] / 100.0)


def test_benchmark_prints_the_wrapped_and_nnx_ratios(smoke_run):
    lines, _ = smoke_run
    for mode in ("erm", "manifold"):
        native = of_case(lines, "step", wrapped=False, mode=mode)[0]
        wrapped = of_case(lines, "step", wrapped=True, mode=mode)[0]
        [ratio] = [line for line in of_case(lines, "ratio", mode=mode)
                   if "wrapped_over_native_step_time" in line]
        assert ratio["wrapped_over_native_step_time"] == pytest.approx(
            wrapped["step_s_median"] / native["step_s_median"])
    nnx = [line for line in lines if "nnx_over_linen_step_time" in line]
    assert len(nnx) == 2 and all(line["nnx_over_linen_step_time"] > 0 for line in nnx)


FAKE_TORCH = """
calls = []
def set_default_device(device):
    calls.append(device)
"""

SCRIPT_SEEING_THE_DEVICE = """
import json, sys, torch
print(json.dumps({"argv": sys.argv, "default_device_calls": torch.calls, "name": __name__}))
"""


def test_torch_on_device_sets_the_default_device_before_running_the_script(tmp_path):
    """The shim runs the script as __main__ with its own arguments, after setting PyTorch's
    default device (a stand-in `torch` records the call, so no PyTorch is needed)."""
    (tmp_path / "torch.py").write_text(FAKE_TORCH)
    script = tmp_path / "reference.py"
    script.write_text(SCRIPT_SEEING_THE_DEVICE)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "scripts/torch_on_device.py", "cuda", str(script),
                             "--batch", "512"], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"argv": [str(script), "--batch", "512"], "default_device_calls": ["cuda"],
                    "name": "__main__"}


def load_benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_the_reference_through_the_device_shim(tmp_path):
    """--torch-device cuda: the reference runs under torch_on_device.py and its line says so."""
    (tmp_path / "torch.py").write_text(FAKE_TORCH)
    fake = tmp_path / "fake_reference.py"
    fake.write_text("import json, sys, torch\n"
                    "print(json.dumps({'images_per_s': 50.0, 'calls': torch.calls,\n"
                    "                  'argv': sys.argv[1:]}))\n")
    benchmark = load_benchmark_module()
    args = benchmark.parse_args(["--torch", "--torch-ref", str(fake), "--torch-device", "cuda",
                                 "--batch-sizes", "512"])
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    line = benchmark.torch_reference("manifold", 512, args, env)
    assert line["case"] == "torch" and line["device"] == "cuda" and line["calls"] == ["cuda"]
    assert line["argv"][:6] == ["--batch", "512", "--steps", "5", "--mode", "manifold"]
    on_cpu = benchmark.torch_reference("manifold", 512, benchmark.parse_args(
        ["--torch", "--torch-ref", str(fake)]), env)
    assert on_cpu["device"] == "cpu" and on_cpu["calls"] == []  # run directly, no shim


def test_the_default_reference_environment_drops_every_allocator_variable(monkeypatch):
    """--torch-malloc default runs PyTorch as usually run: no glibc tunables, no preloaded malloc,
    no jemalloc options; "same" keeps them, and each line names what its run had."""
    benchmark = load_benchmark_module()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    monkeypatch.setenv("MALLOC_CONF", "thp:always")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    same, default = benchmark.torch_environments("both")
    for name in ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_CONF"):
        assert name in same and name not in default
    assert same["OMP_NUM_THREADS"] == default["OMP_NUM_THREADS"] == "2"  # the rest is kept
    assert benchmark.allocator_environment(same) == {
        "glibc_tunables": "glibc.malloc.hugetlb=1", "malloc_conf": "thp:always",
        "ld_preload": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}
    assert benchmark.allocator_environment(default) == {
        "glibc_tunables": "", "ld_preload": "", "malloc_conf": ""}


def test_a_ratio_is_marked_comparable_only_for_the_references_network():
    benchmark = load_benchmark_module()
    assert benchmark.same_model_as_reference("preactresnet18", benchmark.parse_args([]))
    assert benchmark.same_model_as_reference("preactresnet18", benchmark.parse_args(["--width", "64"]))
    for model, argv in (("preactresnet18", ["--smoke"]), ("preactresnet18", ["--num-classes", "100"]),
                        ("preactresnet34", []), ("wrn28_10", [])):
        assert not benchmark.same_model_as_reference(model, benchmark.parse_args(argv)), (model, argv)


def test_the_pytorch_reference_is_our_preactresnet18():
    """Same network as ours: the parameter count of PreActResNet18 (10 classes), 11,171,146."""
    torch = pytest.importorskip("torch", reason="the benchmark's optional [bench] extra")
    spec = importlib.util.spec_from_file_location("torch_reference",
                                                  ROOT / "scripts" / "torch_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.PreActResNet18()
    assert sum(p.numel() for p in model.parameters()) == 11_171_146
    logits = model(torch.zeros(2, 3, 32, 32), 1, torch.tensor([1, 0]), 0.5)
    assert tuple(logits.shape) == (2, 10)


def test_gpu_check_smoke_covers_every_step_without_the_harness_packages(tmp_path):
    """scripts/gpu_check.py on tiny shapes: every mode timed, no conditional left in the
    optimised programs, the ratios written, with ml_collections, grain, array_record, clu,
    TensorFlow, TFDS and matplotlib blocked (the GPU machine's image has none of them)."""
    out = tmp_path / "gpu_check.json"
    result = run_blocked("import runpy; "
                         f"sys.argv = ['gpu_check.py', '--smoke', '--out', {str(out)!r}]; "
                         "runpy.run_path('scripts/gpu_check.py', run_name='__main__')")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED_BLOCKED []" in result.stdout
    report = json.loads(out.read_text())
    assert report["errors"] == [] and report["skipped"] == []
    steps = {(line["model"], line["mode"]): line for line in report["lines"]
             if line["case"] == "step"}
    assert set(steps) == {("preactresnet18", mode) for mode in ("erm", "input", "manifold", "ssl")
                          } | {("vit_mini", mode) for mode in ("erm", "input", "manifold")}
    for line in steps.values():
        # No conditional survives. XLA:CPU's optimised programs do hold `while` loops, ERM's
        # too (its scatter expansion); the GPU's count is the one that matters, so only report.
        assert line["hlo_conditional_ops"] == 0 and line["hlo_while_ops"] >= 0, line
        assert line["images_per_s"] > 0 and line["step_s_min"] <= line["step_s_max"]
    assert steps[("preactresnet18", "erm")]["pipeline_images_per_s"] > 0  # the host input path
    ratio = {r["model"]: r["manifold_over_erm_step_time"] for r in report["ratios"]
             if "manifold_over_erm_step_time" in r}
    assert set(ratio) == {"preactresnet18", "vit_mini"} and min(ratio.values()) > 0


def test_loader_benchmark_prints_a_rate_per_thread_count():
    result = subprocess.run([sys.executable, "scripts/loader_benchmark.py", "--images", "16",
                             "--side", "64", "--size", "32", "--threads", "1,2", "--batch", "4",
                             "--batches", "2", "--step-batch", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(line["case"], line["threads"]) for line in lines] == [("loader", 1), ("loader", 2)]
    assert all(line["images_per_s"] > 0 and line["size"] == 32 for line in lines)
