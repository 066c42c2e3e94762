"""Beta(α, α) draws with no rejection loop, so a compiled step holds no `while`.

`jax.random.beta` draws its two gammas by rejection inside a `while` loop. On XLA:GPU each
iteration of a loop with an unknown trip count copies its predicate to the host and blocks the
launch stream, which stalls a small step. Here each gamma is Marsaglia and Tsang's (2000)
rejection sampler run on `CANDIDATES` proposals at once, keeping the first accepted one: that is
exactly the distribution of the sequential sampler, conditioned on one of the proposals being
accepted. Everything is computed in log space (as `jax.random.beta` does), so small α neither
underflows nor divides 0 by 0:

    log G(a)   = log d + log v                          (a ≥ 1, d = a − 1/3, v = (1 + c·x)³)
    log G(a)   = log G(a + 1) + log(U) / a              (a < 1, the usual boost)
    log-odds   = log G₁ − log G₂,   λ = sigmoid(log-odds)

A proposal is accepted with probability 0.9517 at a = 1 and more at larger a (0.9582 at
a = 1.1, the shape drawn for α = 0.1; 0.9817 at a = 2; `acceptance_probability` integrates it),
so all `CANDIDATES` = 16 are rejected with probability at most 0.0483¹⁶ ≈ 9e−22 per gamma. Then
that gamma falls back to d = a − 1/3 (the proposal at x = 0, near the mode), a bias no float32
statistic can resolve.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

CANDIDATES = 16


def _log_gamma_at_least_one(key: jax.Array, shape_param: float, shape: tuple[int, ...],
                            candidates: int) -> jax.Array:
    """log G with G ~ Gamma(a, 1), a ≥ 1: the first accepted of `candidates` M-T proposals."""
    d = shape_param - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    normal_key, uniform_key = jax.random.split(key)
    x = jax.random.normal(normal_key, (*shape, candidates), jnp.float32)
    # log U with U in (0, 1]: −Exponential(1) never gives log(0).
    log_u = -jax.random.exponential(uniform_key, (*shape, candidates), jnp.float32)
    v = (1.0 + c * x) ** 3
    positive = v > 0
    log_v = jnp.log(jnp.where(positive, v, 1.0))
    accepted = positive & (log_u < 0.5 * x * x + d - d * v + d * log_v)
    first = jnp.argmax(accepted, axis=-1)  # 0 when none is accepted: handled below
    chosen_log_v = jnp.take_along_axis(log_v, first[..., None], axis=-1)[..., 0]
    chosen_log_v = jnp.where(jnp.any(accepted, axis=-1), chosen_log_v, 0.0)
    return jnp.log(jnp.float32(d)) + chosen_log_v


def log_gamma(key: jax.Array, shape_param: float, shape: tuple[int, ...] = (),
              candidates: int = CANDIDATES) -> jax.Array:
    """log G, G ~ Gamma(shape_param, 1), float32, without a loop (module docstring)."""
    if not shape_param > 0:
        raise ValueError(f"Gamma shape = {shape_param}: must be > 0.")
    if shape_param >= 1:
        return _log_gamma_at_least_one(key, shape_param, shape, candidates)
    gamma_key, boost_key = jax.random.split(key)
    boosted = _log_gamma_at_least_one(gamma_key, shape_param + 1.0, shape, candidates)
    log_u = -jax.random.exponential(boost_key, shape, jnp.float32)
    return boosted + log_u / shape_param


def symmetric_beta_log_odds(key: jax.Array, alpha: float, shape: tuple[int, ...] = (),
                            candidates: int = CANDIDATES) -> jax.Array:
    """log(λ / (1 − λ)) for λ ~ Beta(α, α), float32.

    The log-odds keep the tails that float32 rounds away in λ itself (at α = 0.1 about 10 % of
    the mass of λ rounds to exactly 1.0), so tests check the distribution on this statistic.
    """
    first_key, second_key = jax.random.split(key)
    return (log_gamma(first_key, alpha, shape, candidates)
            - log_gamma(second_key, alpha, shape, candidates))


def symmetric_beta(key: jax.Array, alpha: float, shape: tuple[int, ...] = (),
                   candidates: int = CANDIDATES) -> jax.Array:
    """λ ~ Beta(α, α) in [0, 1], float32, with no `while` in the compiled program."""
    return jax.nn.sigmoid(symmetric_beta_log_odds(key, alpha, shape, candidates))


def acceptance_probability(shape_param: float) -> float:
    """P(one Marsaglia–Tsang proposal is accepted) for Gamma(a), a ≥ 1 (numerical integral)."""
    from scipy import integrate, stats  # only for documentation and tests

    d = shape_param - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)

    def accept_density(x: float) -> float:
        v = (1.0 + c * x) ** 3
        if v <= 0:
            return 0.0
        log_bound = 0.5 * x * x + d - d * v + d * math.log(v)
        return stats.norm.pdf(x) * min(1.0, math.exp(log_bound))

    return integrate.quad(accept_density, -1.0 / c, 40.0, limit=200)[0]


__all__ = ["CANDIDATES", "acceptance_probability", "log_gamma", "symmetric_beta",
           "symmetric_beta_log_odds"]
