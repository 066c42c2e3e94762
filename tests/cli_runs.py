"""Helpers for tests that run `python -m mmix_jax.harness.main` in subprocesses."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from session_settings import FAST_COMPILE_XLA_FLAGS

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A short Manifold Mixup run on the spirals: 1000 steps of 10 examples, checkpoints every 50.
SHORT_RUN = ["--config=configs/default.py:manifold", "--config.num_epochs=10",
             "--config.data.num_train=1000", "--config.batch_size=10",
             "--config.optimizer.milestones=(5,8)", "--config.log_every_steps=100",
             "--config.checkpoint.every_epochs=0", "--config.checkpoint.every_steps=50",
             "--config.checkpoint.keep=2"]


def command(workdir, *extra, kill_during_save=None):
    """The short run's command; with `kill_during_save=STEP` through the test seam that
    SIGKILLs the process once the save of STEP has started (tests/kill_during_save.py)."""
    entry = (["-m", "mmix_jax.harness.main"] if kill_during_save is None else
             [str(ROOT / "tests" / "kill_during_save.py"), str(kill_during_save)])
    return [sys.executable, *entry, *SHORT_RUN, f"--workdir={workdir}", *extra]


def environment(devices=None, optimized=False, **extra):
    """The subprocess environment: this checkout first on the path; with `devices`, that many
    CPU devices; with `optimized`, without the session's fast-compile XLA flags (for runs whose
    time goes to executing, not compiling: there those flags cost more than they save)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path, **extra)
    if optimized and "XLA_FLAGS" not in extra:
        env["XLA_FLAGS"] = " ".join(flag for flag in env.get("XLA_FLAGS", "").split()
                                    if flag not in FAST_COMPILE_XLA_FLAGS.split())
    if devices:  # beside the session's flags (tests/conftest.py), unless `extra` replaced them
        count = f"--xla_force_host_platform_device_count={devices}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {count}".strip()
    return env


def run(workdir, *extra, timeout=300, kill_during_save=None, **env):
    return subprocess.run(command(workdir, *extra, kill_during_save=kill_during_save), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=environment(**env))


def start(workdir, *extra, **env):
    return subprocess.Popen(command(workdir, *extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=environment(**env))


def checkpoint_steps(run_dir):
    directory = pathlib.Path(run_dir) / "checkpoints"
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def final_params(run_dir):
    """The params of the newest checkpoint of `run_dir` as {path: numpy array}."""
    step = checkpoint_steps(run_dir)[-1]
    path = pathlib.Path(run_dir).absolute() / "checkpoints" / str(step) / "state"
    checkpointer = ocp.StandardCheckpointer()
    # Restore onto this process's first device, whatever topology wrote the checkpoint.
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        checkpointer.metadata(path).item_metadata.tree)
    restored = checkpointer.restore(path, target)
    return step, {jax.tree_util.keystr(k): np.asarray(v)
                  for k, v in jax.tree_util.tree_flatten_with_path(restored["params"])[0]}


def assert_bit_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_processes(argv, timeout=300, optimized=False):
    """Runs `argv` (a CLI command) as 2 processes of one JAX job on 127.0.0.1, one CPU device
    each; kills both on timeout. Returns [(returncode, stderr)] per process."""
    import pytest

    port = free_port()
    processes = [subprocess.Popen(
        [*argv, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
         f"--process_id={i}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=environment(devices=1, optimized=optimized)) for i in range(2)]
    try:
        errors = [p.communicate(timeout=timeout)[1] for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        pytest.fail(f"two-process run did not finish in {timeout} s")
    return [(p.returncode, err) for p, err in zip(processes, errors)]


def sharded_check(name, *args, devices=8):
    """Runs CHECK of tests/sharded_checks.py on `devices` simulated CPU devices; its stdout."""
    result = subprocess.run([sys.executable, "tests/sharded_checks.py", name, *map(str, args)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=environment(devices=devices))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
