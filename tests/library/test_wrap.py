"""mixable(): an unmodified Linen model with mix points, checked against our native models."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_runs import sharded_check
from tiny_models import tiny_plain, tiny_preact

from mmix_jax.errors import MixPointError
from mmix_jax.wrap import mixable

POINTS = ("stages_0", "stages_1", "stages_2")  # = our PreActResNet18's mix points 1, 2, 3


@pytest.fixture(scope="module")
def models():
    native = tiny_preact(num_classes=10)
    wrapped = mixable(tiny_plain(num_classes=10), points=POINTS)
    x = jax.random.normal(jax.random.key(0), (6, 8, 8, 3))
    variables = jax.jit(lambda key: native.init(key, x, train=False))(jax.random.key(1))
    return native, wrapped, variables, x


def test_wrapped_model_takes_the_original_variables_exactly(models):
    native, wrapped, variables, x = models
    own = jax.eval_shape(lambda: wrapped.init(jax.random.key(1), x, train=False))
    plain = jax.eval_shape(lambda: tiny_plain(num_classes=10).init(
        jax.random.key(1), x, train=False))
    assert jax.tree.structure(own) == jax.tree.structure(plain) == jax.tree.structure(variables)
    assert wrapped.num_mix_points == native.num_mix_points == 4


def test_forward_and_gradient_equal_the_native_model_for_every_k(models):
    native, wrapped, variables, x = models
    perm, lam = jnp.array([3, 2, 5, 0, 1, 4]), jnp.float32(0.3)

    def loss(params, model, k):
        mix = {} if k is None else dict(mix_layer=k, perm=perm, lam=lam)
        logits, _ = model.apply(dict(variables, params=params), x, train=True,
                                mutable=["batch_stats"], **mix)
        return jnp.sum(jax.nn.log_softmax(logits)[:, 0]), logits

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    plain = None
    for k in (None, 0, 1, 2, 3):  # a traced k: one compile per model for all four points
        traced = None if k is None else jnp.int32(k)
        (_, ours), grads = grad(variables["params"], native, traced)
        (_, theirs), wrapped_grads = grad(variables["params"], wrapped, traced)
        np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-6, err_msg=f"k={k}")
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(wrapped_grads)):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=f"k={k}")
        if k is None:
            plain = ours
        else:  # mixing changed the output: not a comparison of two ERM passes
            assert not np.allclose(plain, ours)


def test_a_traced_k_compiles_once_and_states_are_sown(models):
    _, wrapped, variables, x = models
    perm, lam = jnp.arange(6)[::-1], jnp.float32(0.5)
    forward = jax.jit(lambda k: wrapped.apply(variables, x, train=False, mix_layer=k, perm=perm,
                                              lam=lam, mutable=["intermediates"]))
    for k in range(4):
        _, sown = forward(jnp.int32(k))
    assert forward._cache_size() == 1
    assert sorted(sown["intermediates"]) == [f"mix_point_{i}" for i in range(4)]
    # At the mixed point (k = 3) the sown state is the mix of the unmixed one.
    _, plain = wrapped.apply(variables, x, train=False, mutable=["intermediates"])
    h = plain["intermediates"]["mix_point_3"][0]
    np.testing.assert_allclose(sown["intermediates"]["mix_point_3"][0],
                               0.5 * h + 0.5 * h[perm], rtol=1e-5, atol=1e-6)


def test_mixup_step_on_eight_devices_trains_the_wrapped_model_like_the_native_one():
    assert "wrapped == native" in sharded_check("wrapped_equals_native")


class Shared(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        dense = nn.Dense(16, name="twice")
        return nn.Dense(3, name="out")(dense(jax.nn.relu(dense(x.reshape(x.shape[0], -1)))))


class Pair(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x, x


class WithPair(nn.Module):
    @nn.compact
    def __call__(self, x):
        a, _ = Pair(name="pair")(x)
        return nn.Dense(2, name="head")(a)


@pytest.mark.parametrize("model, points, message", [
    (Shared(), ("missing",), r"\['missing'\] are not submodules .* paths are: \['out', 'twice'\]"),
    (Shared(), ("twice",), "'twice' was called 2 times in one forward pass"),
    (WithPair(), ("pair",), "'pair' returns tuple, not a batch-major array"),
])
def test_bad_points_are_named(model, points, message):
    x = jnp.ones((2, 4, 4, 1)) if isinstance(model, Shared) else jnp.ones((2, 4))
    with pytest.raises(MixPointError, match=message):
        mixable(model, points).init(jax.random.key(0), x)
    with pytest.raises(MixPointError, match="give a sequence of paths"):
        mixable(model, "pair")


class Deterministic(nn.Module):
    """Flax's usual flag: dropout on unless deterministic."""

    @nn.compact
    def __call__(self, x, deterministic=True):
        h = nn.relu(nn.Dense(16, name="hidden")(x))
        return nn.Dense(3)(nn.Dropout(0.5, deterministic=deterministic)(h))


class NoFlag(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(16, name="hidden")(x)))


def test_mixable_passes_the_steps_train_flag_in_the_models_own_terms():
    import functools

    import optax

    import mmix_jax

    x = jax.random.normal(jax.random.key(0), (8, 4))
    batch = {"image": x, "label": jnp.arange(8) % 3}
    spec = mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0, 1))
    step = jax.jit(functools.partial(mmix_jax.mixup_step, config=spec))
    for module in (Deterministic(), NoFlag()):
        model = mixable(module, points=("hidden",))
        state = mmix_jax.create_train_state(model, optax.sgd(0.1), jax.random.key(1), x)
        state, metrics = step(state, batch, jax.random.key(2))
        assert np.isfinite(float(metrics["loss"]))
        evaluated = mmix_jax.eval_step(state, batch)  # train=False
        assert float(evaluated["count"]) == 8
    # train=True reaches the deterministic model as deterministic=False: dropout is on, so two
    # dropout keys give two outputs; in evaluation (deterministic=True) the output is fixed.
    model = mixable(Deterministic(), points=("hidden",))
    variables = model.init(jax.random.key(1), x, train=False)
    on = [model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(k)})
          for k in (3, 4)]
    assert not np.allclose(on[0], on[1])
    np.testing.assert_array_equal(model.apply(variables, x, train=False),
                                  Deterministic().apply(variables, x))  # the model's own eval


class ScannedNet(nn.Module):
    """An embedding, three blocks (nn.scan over one, or each under nn.remat) and a head."""

    scan: bool

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.Dense(4, name="embed")(x)
        if self.scan:
            h, _ = nn.scan(ScanBlock, variable_axes={"params": 0}, split_rngs={"params": True},
                           length=3)(name="blocks")(h, None)
        else:
            for i in range(3):
                h = nn.remat(Block)(name=f"block{i}")(h)
        return nn.Dense(2, name="head")(h)


class Block(nn.Module):
    @nn.compact
    def __call__(self, h):
        return nn.relu(nn.Dense(4)(h))


class ScanBlock(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        return Block(name="Dense_0_block")(h), None


@pytest.mark.parametrize("points", [("blocks",), ("blocks/Dense_0_block",)])
def test_a_point_in_a_scan_is_refused_as_a_scan_and_remat_blocks_mix(points):
    x = jnp.arange(12.0).reshape(4, 3)
    perm, lam = jnp.array([3, 2, 1, 0]), jnp.float32(0.25)
    scanned = ScannedNet(scan=True)
    with pytest.raises(MixPointError, match="lifted transform such as nn.scan"):
        mixable(scanned, points).apply(scanned.init(jax.random.key(0), x), x, mix_layer=1,
                                       perm=perm, lam=lam)
    # nn.remat lifts too, but each block runs once: a mix point like any other
    unrolled = ScannedNet(scan=False)
    variables = unrolled.init(jax.random.key(0), x)
    mixed = mixable(unrolled, ("block0",)).apply(variables, x, mix_layer=1, perm=perm, lam=lam)
    p = variables["params"]
    h = x @ p["embed"]["kernel"] + p["embed"]["bias"]
    h = nn.relu(h @ p["block0"]["Dense_0"]["kernel"] + p["block0"]["Dense_0"]["bias"])
    h = lam * h + (1 - lam) * h[perm]
    for i in (1, 2):
        h = nn.relu(h @ p[f"block{i}"]["Dense_0"]["kernel"] + p[f"block{i}"]["Dense_0"]["bias"])
    np.testing.assert_allclose(mixed, h @ p["head"]["kernel"] + p["head"]["bias"], rtol=1e-5,
                               atol=1e-6)
