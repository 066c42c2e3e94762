"""The loop-free Beta(α, α) sampler against scipy.stats.beta, for every α the configs use."""

import jax
import numpy as np
import pytest
from scipy import special, stats

from mmix_jax import beta

DRAWS = 100_000


def log_odds_cdf(t: np.ndarray, alpha: float) -> np.ndarray:
    """P(log(λ / (1 − λ)) ≤ t) for λ ~ Beta(α, α), in float64 without rounding the tails
    (symmetry: for t > 0 it is 1 − P(λ ≤ sigmoid(−t)))."""
    t = np.asarray(t, np.float64)
    lower = stats.beta.cdf(special.expit(-np.abs(t)), alpha, alpha)
    return np.where(t <= 0, lower, 1.0 - lower)


@pytest.mark.parametrize("alpha", [0.1, 0.2, 1.0, 2.0])
def test_log_odds_follow_beta_by_kolmogorov_smirnov(alpha):
    """The log-odds, not λ: at α = 0.1 about 10 % of λ rounds to 1.0 in float32 (any sampler)."""
    draws = jax.jit(lambda key: beta.symmetric_beta_log_odds(key, alpha, (DRAWS,)))(
        jax.random.key(0))
    result = stats.kstest(np.asarray(draws, np.float64), lambda t: log_odds_cdf(t, alpha))
    assert result.pvalue > 1e-3, (alpha, result)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_lambda_itself_follows_beta_where_float32_keeps_it(alpha):
    lam = np.asarray(jax.jit(lambda key: beta.symmetric_beta(key, alpha, (DRAWS,)))(
        jax.random.key(1)), np.float64)
    assert ((lam >= 0) & (lam <= 1)).all()
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_small_alpha_lambda_rounds_to_one_as_the_docs_say():
    lam = np.asarray(beta.symmetric_beta(jax.random.key(2), 0.1, (DRAWS,)))
    # sigmoid(t) = 1 / (1 + e⁻ᵗ) is 1.0 in float32 once e⁻ᵗ ≤ 2⁻²⁴, i.e. 1 − λ ≤ 2⁻²⁴ (to
    # first order): P = 0.0961 from scipy.
    expected = stats.beta.sf(1 - 2.0 ** -24, 0.1, 0.1)
    assert abs((lam == 1.0).mean() - expected) < 5 * np.sqrt(expected * (1 - expected) / DRAWS)


@pytest.mark.parametrize("shape_param", [1.1, 2.0])
def test_fallback_happens_at_the_rejection_rate_and_returns_d(shape_param):
    """With one candidate, a draw falls back to log(d), d = a − 1/3, exactly when the proposal is
    rejected: the fraction of such draws is 1 − the integrated acceptance probability."""
    draws = np.asarray(beta.log_gamma(jax.random.key(3), shape_param, (DRAWS,), candidates=1))
    fallback = np.log(np.float32(shape_param - 1 / 3), dtype=np.float64)
    rejected = 1 - beta.acceptance_probability(shape_param)
    observed = (np.abs(draws - fallback) < 1e-6).mean()  # an accepted draw so close: p ≈ 1e-6
    assert abs(observed - rejected) < 5 * np.sqrt(rejected * (1 - rejected) / DRAWS), observed
    # Sixteen candidates: all rejected with probability rejected ** 16 (below 1e-21).
    assert rejected ** beta.CANDIDATES < 1e-21


def test_gamma_shape_must_be_positive():
    with pytest.raises(ValueError, match="must be > 0"):
        beta.log_gamma(jax.random.key(0), 0.0)
