"""Losses against hand-computed values, a naive formulation, and saturated logits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmix_jax.losses import bce_loss, get_loss, nll, soft_ce_loss

# softmax([0, 0, ln 2]) = [1/4, 1/4, 1/2]
LOGITS = jnp.array([[0.0, 0.0, math.log(2.0)]])
TARGETS = jnp.array([[0.0, 0.5, 0.5]])


def test_bce_hand_computed():
    per_class = [-math.log(0.75),
                 -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)),
                 -(0.5 * math.log(0.5) + 0.5 * math.log(0.5))]
    assert float(bce_loss(LOGITS, TARGETS)) == pytest.approx(sum(per_class) / 3, rel=1e-6)


def test_soft_ce_hand_computed():
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.5))
    assert float(soft_ce_loss(LOGITS, TARGETS)) == pytest.approx(expected, rel=1e-6)


def test_bce_equals_naive_formula_on_moderate_logits():
    logits = 3 * jax.random.normal(jax.random.key(0), (64, 10))
    targets = jax.nn.softmax(jax.random.normal(jax.random.key(1), (64, 10)))
    p = jax.nn.softmax(logits)
    naive = -jnp.mean(targets * jnp.log(p) + (1 - targets) * jnp.log(1 - p))
    np.testing.assert_allclose(bce_loss(logits, targets), naive, rtol=1e-5)
    g_stable = jax.grad(bce_loss)(logits, targets)
    g_naive = jax.grad(lambda z: -jnp.mean(targets * jax.nn.log_softmax(z)
                                           + (1 - targets) * jnp.log(1 - jax.nn.softmax(z))))(logits)
    np.testing.assert_allclose(g_stable, g_naive, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("loss", ["bce", "soft_ce"])
def test_saturated_logits_give_finite_exact_losses_and_gradients(loss):
    logits = jnp.array([[1e4, -1e4], [-1e4, 1e4]])
    right = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    wrong = right[:, ::-1]
    fn = get_loss(loss)
    assert float(fn(logits, right)) == pytest.approx(0.0, abs=1e-6)
    # Wrong with certainty: log p = -2e4 for the target class; for BCE also log(1 - p) = -2e4.
    assert float(fn(logits, wrong)) == pytest.approx(2e4, rel=1e-6)
    for targets in (right, wrong, jnp.full((2, 2), 0.5)):
        value, grads = jax.value_and_grad(fn)(logits, targets)
        assert np.isfinite(value) and np.isfinite(grads).all()


def test_bf16_logits_are_computed_in_float32():
    assert bce_loss(LOGITS.astype(jnp.bfloat16), TARGETS).dtype == jnp.float32


def test_nll_hand_computed():
    np.testing.assert_allclose(nll(LOGITS, jnp.array([2])), [math.log(2.0)], rtol=1e-6)


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="unknown loss 'mse'.*bce"):
        get_loss("mse")
