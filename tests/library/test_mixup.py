"""The mixing functions against hand-computed values and distributional facts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmix_jax.mixup import NO_MIX, MixSpec, maybe_mix, mix, mix_targets, sample_mix


def test_mix_matches_hand_computed_values():
    h = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    perm = jnp.array([2, 0, 1])
    out = mix(h, perm, 0.25)
    # 0.25 * h[i] + 0.75 * h[perm[i]]
    expected = np.array([[4.0, 5.0], [1.5, 2.5], [3.5, 4.5]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_lambda_one_and_identity_permutation_return_h_bit_for_bit():
    h = jax.random.normal(jax.random.key(0), (16, 5, 3))
    perm = jax.random.permutation(jax.random.key(1), 16)
    assert (mix(h, perm, 1.0) == h).all()
    assert (mix(h, jnp.arange(16), 0.37) == h).all()


def test_mix_keeps_dtype():
    h = jnp.ones((4, 3), jnp.bfloat16)
    assert mix(h, jnp.arange(4)[::-1], jnp.float32(0.3)).dtype == jnp.bfloat16


def test_mix_targets_are_distributions_with_the_right_weights():
    one_hot = jax.nn.one_hot(jnp.array([0, 1, 2, 2]), 3)
    out = mix_targets(one_hot, jnp.array([1, 0, 3, 2]), 0.7)
    np.testing.assert_allclose(out, [[0.7, 0.3, 0], [0.3, 0.7, 0], [0, 0, 1], [0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-6)


def test_sample_mix_draws_layers_uniformly_and_lambda_from_beta():
    layers = (0, 1, 2)
    alpha = 2.0
    draws = jax.vmap(lambda k: sample_mix(k, 8, alpha=alpha, mix_layers=layers))(
        jax.random.split(jax.random.key(0), 6000))
    counts = np.bincount(np.asarray(draws.layer), minlength=3)
    assert set(np.unique(draws.layer)) == set(layers)
    np.testing.assert_allclose(counts / 6000, 1 / 3, atol=0.03)
    lam = np.asarray(draws.lam)
    assert ((lam >= 0) & (lam <= 1)).all()
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.05 for a = 2.
    assert abs(lam.mean() - 0.5) < 0.02
    assert abs(lam.var() - 1 / (4 * (2 * alpha + 1))) < 0.005
    perms = np.sort(np.asarray(draws.perm), axis=1)
    assert (perms == np.arange(8)).all()  # each draw is a permutation


def test_sample_mix_without_mixing_is_the_identity():
    for alpha, layers in ((2.0, ()), (0.0, (0, 1))):
        draw = sample_mix(jax.random.key(0), 5, alpha=alpha, mix_layers=layers)
        assert int(draw.layer) == NO_MIX and float(draw.lam) == 1.0
        assert (draw.perm == jnp.arange(5)).all()


def test_sample_mix_shares_k_and_lambda_across_devices_but_not_the_permutation():
    rng = jax.random.key(3)
    per_device = jax.vmap(lambda _: sample_mix(rng, 64, alpha=1.0, mix_layers=(0, 1, 2),
                                               axis_name="data"), axis_name="data")(jnp.arange(4))
    assert len(set(np.asarray(per_device.layer).tolist())) == 1
    assert len(set(np.asarray(per_device.lam).tolist())) == 1
    perms = {tuple(p) for p in np.asarray(per_device.perm).tolist()}
    assert len(perms) == 4


def test_maybe_mix_only_at_its_point_for_static_and_traced_k():
    h = jnp.arange(6.0).reshape(3, 2)
    perm, lam = jnp.array([1, 2, 0]), jnp.float32(0.5)
    assert (maybe_mix(h, 1, None, None, None) == h).all()
    assert (maybe_mix(h, 1, 2, perm, lam) == h).all()
    np.testing.assert_allclose(maybe_mix(h, 1, 1, perm, lam), mix(h, perm, lam))
    traced = jax.jit(lambda k: maybe_mix(h, 1, k, perm, lam))
    np.testing.assert_allclose(traced(jnp.int32(1)), mix(h, perm, lam))
    assert (traced(jnp.int32(0)) == h).all()
    with pytest.raises(ValueError, match="without perm and lam"):
        maybe_mix(h, 0, 0, None, None)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=1), "num_classes"),
    (dict(num_classes=10, alpha=-0.5), "alpha"),
    (dict(num_classes=10, mix_layers=(0, 0)), "mix_layers"),
    (dict(num_classes=10, mix_layers=(-1,)), "mix_layers"),
    (dict(num_classes=10, loss="mse"), "loss"),
])
def test_mixspec_rejects_invalid_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MixSpec(**kwargs)


def test_mixspec_is_hashable_and_normalises_layers():
    spec = MixSpec(num_classes=10, mix_layers=[0, 1])
    assert spec.mix_layers == (0, 1)
    assert hash(spec) == hash(MixSpec(num_classes=10, mix_layers=(0, 1)))
    assert not MixSpec(num_classes=10, mix_layers=()).mixes
    assert not MixSpec(num_classes=10, alpha=0.0).mixes


def test_bfloat16_states_are_mixed_in_float32_with_the_targets_lambda():
    """λ = 0.3 is 0.30078125 in bfloat16: mixing with it would weight hidden states and targets
    differently. The mix is computed in float32 with the float32 λ and rounded once."""
    h = jax.random.normal(jax.random.key(3), (64, 8)).astype(jnp.bfloat16)
    perm = jax.random.permutation(jax.random.key(4), 64)
    lam = jnp.float32(0.3)
    wide = h.astype(jnp.float32)
    expected = (wide + (1 - lam) * (wide[perm] - wide)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(mix(h, perm, lam), np.float32),
                                  np.asarray(expected, np.float32))
    lam16 = lam.astype(jnp.bfloat16)  # what mixing in bfloat16 did
    rounded = h + (1 - lam16) * (h[perm] - h)
    assert (np.asarray(rounded, np.float32) != np.asarray(expected, np.float32)).any()
