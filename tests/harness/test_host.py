"""mmix_jax.harness.host.configure_cpu and the --cpu_devices/--cpu_tuning flags (subprocesses: the set-up
must happen before JAX starts its backends, which this test process has long done)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from cli_runs import ROOT, assert_bit_identical, environment, final_params, run

from mmix_jax.harness import host

PROBE = """
import json, os, sys
import jax
from mmix_jax.harness import host
host.configure_cpu({devices}, {tuning})
host.configure_cpu({devices}, {tuning})  # twice: the flags must not pile up
print(json.dumps({{"devices": jax.device_count(), "xla_flags": os.environ.get("XLA_FLAGS", "")}}))
"""


def run_probe(count, tuning, env):
    """The probe in a subprocess with environment `env`; it must succeed."""
    result = subprocess.run([sys.executable, "-c", PROBE.format(devices=count, tuning=tuning)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def probe(count, tuning, **env):
    return json.loads(run_probe(count, tuning, environment(**env)).stdout.strip().splitlines()[-1])


def test_cpu_devices_and_tuning_flags_are_applied_once():
    seen = probe(3, True)
    assert seen["devices"] == 3
    flags = seen["xla_flags"].split()
    for flag in host.CPU_TUNING_XLA_FLAGS:
        assert flags.count(flag) == 1


def test_a_tuning_flag_the_user_set_keeps_the_users_value():
    """XLA takes the last value of a repeated flag, so appending ours would override the user."""
    own = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE"
    assert own not in host.CPU_TUNING_XLA_FLAGS  # else this test would prove nothing
    flags = probe(0, True, XLA_FLAGS=own)["xla_flags"].split()
    assert [f for f in flags if f.startswith("--xla_cpu_experimental_ynn_fusion_type=")] == [own]
    assert "--xla_cpu_multi_thread_eigen=false" in flags  # the flags the user did not set are added


def test_cpu_devices_overrides_a_forced_device_count_and_keeps_other_flags():
    seen = probe(2, False, devices=8)
    assert seen["devices"] == 2
    assert seen["xla_flags"] == environment(devices=8)["XLA_FLAGS"]  # as given, the count kept
    assert "--xla_force_host_platform_device_count=8" in seen["xla_flags"].split()


def test_nothing_asked_changes_nothing():
    seen = probe(0, False)
    assert seen == {"devices": 1, "xla_flags": environment().get("XLA_FLAGS", "")}


def test_too_late_is_a_clear_error_and_negative_counts_are_refused():
    code = ("import jax, jax.numpy as jnp\nfrom mmix_jax.harness import host\n"
            "jnp.ones(2).block_until_ready()\nhost.configure_cpu(2)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env=environment())
    assert result.returncode != 0
    assert "HostSetupError" in result.stderr and "right after `import jax`" in result.stderr
    with pytest.raises(ValueError, match="cpu devices = -1 is invalid"):
        host.configure_cpu(-1)


def test_cli_cpu_devices_trains_exactly_as_two_forced_host_devices(tmp_path):
    """--cpu_devices=2 is the same 2-device data-parallel run as XLA's forced device count."""
    short = ["--config.num_epochs=2", "--config.optimizer.milestones=(1,)"]
    flagged = run(tmp_path / "flag", *short, "--cpu_devices=2")
    assert flagged.returncode == 0, flagged.stderr[-3000:]
    assert "on 2 cpu device(s)" in flagged.stderr
    forced = run(tmp_path / "forced", *short, devices=2)
    assert forced.returncode == 0, forced.stderr[-3000:]
    step_a, params_a = final_params(tmp_path / "flag" / "manifold")
    step_b, params_b = final_params(tmp_path / "forced" / "manifold")
    assert step_a == step_b == 200
    assert_bit_identical(params_a, params_b)


def test_cli_cpu_tuning_trains_to_the_same_result_within_float_tolerance(tmp_path):
    """The tuning flags change kernels (summation order), not the computation."""
    short = ["--config.num_epochs=2", "--config.optimizer.milestones=(1,)"]
    tuned = run(tmp_path / "tuned", *short, "--cpu_devices=2", "--cpu_tuning")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    plain = run(tmp_path / "plain", *short, "--cpu_devices=2")
    assert plain.returncode == 0, plain.stderr[-3000:]
    _, params_tuned = final_params(tmp_path / "tuned" / "manifold")
    _, params_plain = final_params(tmp_path / "plain" / "manifold")
    for key, value in params_plain.items():
        np.testing.assert_allclose(params_tuned[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
    summaries = [json.loads((tmp_path / name / "manifold" / "summary.json").read_text())
                 for name in ("tuned", "plain")]
    assert summaries[0]["test_accuracy"] == pytest.approx(summaries[1]["test_accuracy"], abs=0.01)
