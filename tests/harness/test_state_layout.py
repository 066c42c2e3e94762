"""Checkpoints written before `TrainState.model_state` (a top-level `batch_stats`, a teacher of
{"params", "batch_stats"}) restore into today's state, array for array."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_models import CountingNet, tiny_preact

from mmix_jax import parallel
from mmix_jax.errors import ConfigError
from mmix_jax.harness.checkpoint import Checkpoints, CheckpointSettings, abstract_like
from mmix_jax.models import get_model
from mmix_jax.state import create_train_state, with_teacher

CONFIG = {"seed": 0, "model": {"name": "preactresnet18"}, "num_epochs": 10}


def trained_state(model, teacher):
    """A state whose arrays all differ from a fresh one's (moved params, statistics, step)."""
    images = jnp.zeros((2, 8, 8, 3))
    state = create_train_state(model, optax.sgd(0.1, momentum=0.9), jax.random.key(0), images)
    state = jax.tree.map(lambda leaf: leaf + 1 if jnp.issubdtype(leaf.dtype, jnp.floating)
                         else leaf + 3, with_teacher(state) if teacher else state)
    if teacher:  # a teacher that differs from the student
        state = state.replace(teacher=jax.tree.map(lambda leaf: leaf * 2, state.teacher))
    return state


def as_batch_stats_layout(state):
    """The state as the earlier TrainState saved it: the tree Orbax wrote for its fields."""
    teacher = state.teacher
    return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
            "opt_state": state.opt_state,
            "teacher": None if teacher is None else {
                "params": teacher["params"], "batch_stats": teacher["model_state"]["batch_stats"]}}


@pytest.mark.parametrize("model, teacher", [("preact", True), ("preact", False), ("mlp", False)])
def test_a_batch_stats_checkpoint_restores_into_model_state(tmp_path, model, teacher):
    network = tiny_preact(num_classes=3) if model == "preact" else get_model(
        "mlp", num_classes=3, widths=(4,))
    state = trained_state(network, teacher)
    checkpoints = Checkpoints(tmp_path, CheckpointSettings(every_steps=1, best_metric=None,
                                                           async_save=False))
    checkpoints.save(3, as_batch_stats_layout(state), CONFIG)
    checkpoints.wait()
    fresh = create_train_state(network, optax.sgd(0.1, momentum=0.9), jax.random.key(5),
                               jnp.zeros((2, 8, 8, 3)))
    fresh = with_teacher(fresh) if teacher else fresh
    restored = checkpoints.restore_latest(
        abstract_like(fresh, parallel.replicated(parallel.make_mesh())), CONFIG)
    checkpoints.close()
    got, want = jax.tree.leaves_with_path(restored), jax.tree.leaves_with_path(state)
    assert [path for path, _ in got] == [path for path, _ in want]
    for (path, a), (_, b) in zip(got, want):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    assert set(restored.model_state) == ({"batch_stats"} if model == "preact" else set())


def test_a_batch_stats_checkpoint_for_a_model_with_more_collections_is_refused(tmp_path):
    state = create_train_state(CountingNet(), optax.sgd(0.1), jax.random.key(0),
                               jnp.zeros((2, 4, 4, 1)))
    checkpoints = Checkpoints(tmp_path, CheckpointSettings(every_steps=1, best_metric=None,
                                                           async_save=False))
    checkpoints.save(1, as_batch_stats_layout(state), CONFIG)
    checkpoints.wait()
    target = abstract_like(state, parallel.replicated(parallel.make_mesh()))
    with pytest.raises(ConfigError, match="9 arrays that do not match this run's 10"):
        checkpoints.restore_latest(target, CONFIG)
    with pytest.raises(ConfigError, match=r"predates model_state.*\['counters'\]"):
        checkpoints.restore_step(1, target)
    checkpoints.close()
    assert (tmp_path / "checkpoints" / "1").exists()  # nothing moved
