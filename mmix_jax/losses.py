"""Losses against soft (mixed) targets, numerically stable at saturated logits.

"bce" is what the paper's code trains with: binary cross-entropy between the softmax outputs
and the mixed one-hot targets, averaged over batch and classes; optax has no such loss (its
binary cross-entropies take sigmoid logits), so it is written here, exact where p rounds to 1.
"soft_ce" (the cross-entropy with soft targets, averaged over the batch) and the test NLL are
optax's. All are computed in float32.
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
import optax


def log_softmax_and_log1m_softmax(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns (log p, log(1 − p)) for p = softmax(logits) over the last axis, both finite.

    log(1 − p_i) = log1p(−p_i) is exact where p_i <= 1/2. Only the largest logit of a row can
    have p > 1/2; for it, log(1 − p_m) = logsumexp_{j != m}(z_j) − logsumexp(z), which stays
    exact when p_m rounds to 1 (logits of ±1e4), where log1p(−p) would be log(0).
    """
    logits = logits.astype(jnp.float32)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    is_max = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=bool)
    log_total = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    log_rest = jax.nn.logsumexp(jnp.where(is_max, -jnp.inf, logits), axis=-1, keepdims=True)
    # The unused branch gets a harmless input so that its gradient is not NaN (where-trap).
    log_p_small = jnp.where(is_max, -1.0, log_p)
    log1m_p = jnp.where(is_max, log_rest - log_total, jnp.log1p(-jnp.exp(log_p_small)))
    return log_p, log1m_p


def bce_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over batch and classes of −[y·log p + (1 − y)·log(1 − p)], p = softmax(logits)."""
    chex.assert_equal_shape((logits, targets))
    log_p, log1m_p = log_softmax_and_log1m_softmax(logits)
    targets = targets.astype(jnp.float32)
    return -jnp.mean(targets * log_p + (1 - targets) * log1m_p)


def soft_ce_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over the batch of −Σ_c y_c·log softmax(logits)_c (optax's, in float32)."""
    chex.assert_equal_shape((logits, targets))
    return jnp.mean(optax.losses.softmax_cross_entropy(logits.astype(jnp.float32),
                                                       targets.astype(jnp.float32)))


_LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "bce": bce_loss,
    "soft_ce": soft_ce_loss,
}


LOSS_NAMES: tuple[str, ...] = tuple(sorted(_LOSSES))


def get_loss(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The loss function called `name` ("bce" or "soft_ce")."""
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}: choose one of {LOSS_NAMES}.") from None


def nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example negative log-likelihood of integer labels (the paper's test NLL; optax's)."""
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                                  labels.astype(jnp.int32))
