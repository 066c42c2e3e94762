"""What resume does with checkpoints it cannot use: refuse a changed run, retry I/O, and set
aside only what is proven corrupt (Checkpoints directly, a tiny MLP state: seconds)."""

import json

import jax
import jax.numpy as jnp
import optax
import pytest
from etils import epath

from mmix_jax import parallel
from mmix_jax.errors import ConfigError, WorkdirError
from mmix_jax.harness import checkpoint as checkpoint_module
from mmix_jax.harness.checkpoint import Checkpoints, CheckpointSettings, abstract_like
from mmix_jax.models import get_model
from mmix_jax.state import create_train_state

CONFIG = {"seed": 0, "model": {"name": "mlp"}, "num_epochs": 10,
          "optimizer": {"momentum": 0.9, "learning_rate": 0.1}}


def state_with(momentum):
    model = get_model("mlp", num_classes=3, widths=(4,))
    tx = optax.sgd(0.1, momentum=momentum or None)
    return create_train_state(model, tx, jax.random.key(0), jnp.zeros((2, 5)))


def target(state):
    return abstract_like(state, parallel.replicated(parallel.make_mesh()))


@pytest.fixture
def saved(tmp_path):
    """Checkpoints at steps 1 and 2 of a momentum-0.9 run."""
    state = state_with(0.9)
    checkpoints = Checkpoints(tmp_path, CheckpointSettings(every_steps=1, best_metric=None,
                                                           async_save=False))
    for step in (1, 2):
        checkpoints.save(step, state.replace(step=jnp.int32(step)), CONFIG)
    checkpoints.wait()
    yield tmp_path, checkpoints, state
    checkpoints.close()


def listing(workdir):
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))


def test_a_changed_optimizer_is_refused_naming_the_key_before_anything_moves(saved):
    workdir, checkpoints, _ = saved
    before = listing(workdir)
    changed = json.loads(json.dumps(CONFIG))
    changed["optimizer"]["momentum"] = 0.0
    changed["num_epochs"] = 20  # may change on resume: not named
    with pytest.raises(ConfigError) as error:
        checkpoints.restore_latest(target(state_with(0.0)), changed)
    message = str(error.value)
    assert "optimizer.momentum: 0.9 → 0.0" in message and "num_epochs" not in message
    assert "\n" not in message
    assert listing(workdir) == before


def test_arrays_that_do_not_match_the_state_are_refused_not_set_aside(saved):
    """Same config keys, another state (here: no momentum trace, as after a code change)."""
    workdir, checkpoints, _ = saved
    before = listing(workdir)
    with pytest.raises(ConfigError, match="holds a state of 9 arrays that do not match this "
                                          "run's 5"):
        checkpoints.restore_latest(target(state_with(0.0)), CONFIG)
    assert listing(workdir) == before


def test_a_transient_io_error_is_retried(saved, monkeypatch):
    workdir, checkpoints, state = saved
    monkeypatch.setattr(checkpoint_module.time, "sleep", lambda seconds: None)
    original, calls = checkpoints._manager.restore, []

    def flaky(*args, **kwargs):
        calls.append(args[0])
        if len(calls) <= 2:
            raise OSError("connection reset")
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpoints._manager, "restore", flaky)
    before = listing(workdir)
    restored = checkpoints.restore_latest(target(state), CONFIG)
    assert int(restored.step) == 2 and len(calls) == 4  # 2 failures, config, state
    assert listing(workdir) == before


def test_a_persistent_io_error_is_reported_and_nothing_moves(saved, monkeypatch):
    workdir, checkpoints, state = saved
    monkeypatch.setattr(checkpoint_module.time, "sleep", lambda seconds: None)

    def broken(*args, **kwargs):
        raise OSError("input/output error")

    monkeypatch.setattr(checkpoints._manager, "restore", broken)
    before = listing(workdir)
    with pytest.raises(WorkdirError, match=r"could not read the config of .*checkpoints/2 after "
                                           r"4 attempts \(OSError: input/output error\); nothing "
                                           r"was moved"):
        checkpoints.restore_latest(target(state), CONFIG)
    assert listing(workdir) == before


def test_unreadable_arrays_with_a_matching_structure_are_set_aside(saved):
    workdir, checkpoints, state = saved
    for path in (workdir / "checkpoints" / "2" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":  # the OCDBT data files, not _METADATA
            path.write_bytes(b"\x00garbage" * 8)
    renamed = []

    def record(original, path, *args, **kwargs):
        renamed.append(str(path))
        return original(path, *args, **kwargs)

    with epath.testing.mock_epath(rename=record):  # moved through epath (object storage too)
        restored = checkpoints.restore_latest(target(state), CONFIG)
    assert int(restored.step) == 1
    assert [p.name.split("-")[0] for p in (workdir / "checkpoints_unreadable").iterdir()] == ["2"]
    assert str(workdir / "checkpoints" / "2") in renamed
