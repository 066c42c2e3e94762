"""Every step and every model checks, while tracing, that each mix point asked for is one the
model has: otherwise the targets would be mixed and the inputs not (wrong pairs, silently)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import mmix_jax
import mmix_jax.nnx as mnnx
from mmix_jax.errors import MixPointError
from mmix_jax.mixup import sample_mix


class TinyNet(nn.Module):
    """README's own-model example: mix points 0 (input) and 1 (the hidden activation)."""

    @nn.compact
    def __call__(self, x, *, train, mix_layer=None, perm=None, lam=None):
        x = mmix_jax.maybe_mix(x, 0, mix_layer, perm, lam)
        x = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
        x = mmix_jax.maybe_mix(x, 1, mix_layer, perm, lam)
        return nn.Dense(3)(x)


class TheirNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(3)(nn.relu(nn.Dense(8, name="hidden")(x.reshape(x.shape[0], -1))))


BATCH = {"image": jnp.ones((4, 2, 2, 1)), "label": jnp.array([0, 1, 2, 0])}


def state_of(model):
    return mmix_jax.create_train_state(model, optax.sgd(0.1), jax.random.key(0), BATCH["image"])


def step_with(points):
    spec = mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=points)
    return jax.jit(functools.partial(mmix_jax.mixup_step, config=spec))


def test_a_point_the_model_lacks_stops_the_step_naming_the_points_it_has():
    with pytest.raises(MixPointError, match=r"mix point\(s\) \[2, 5\] .* TinyNet never reached "
                                            r"them \(its mix points are \[0, 1\]\)"):
        step_with((0, 1, 2, 5))(state_of(TinyNet()), BATCH, jax.random.key(1))


def test_the_points_the_model_has_train_and_compile_once():
    step = step_with((0, 1))
    state = state_of(TinyNet())
    for i in range(4):
        state, metrics = step(state, BATCH, jax.random.key(i))
    assert step._cache_size() == 1 and int(metrics["mix_layer"]) in (0, 1)


def test_mixup_loss_checks_the_points_too():
    state = state_of(TinyNet())
    spec = mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0, 3))
    draw = sample_mix(jax.random.key(1), 4, alpha=1.0, mix_layers=(0, 3))
    with pytest.raises(MixPointError, match=r"\[3\]"):
        jax.grad(lambda p: mmix_jax.mixup_loss(p, state, BATCH["image"], BATCH["label"], draw,
                                               config=spec)[0])(state.params)


def test_a_model_without_points_is_named_as_such():
    class Plain(nn.Module):
        @nn.compact
        def __call__(self, x, *, train, **mixing):
            return nn.Dense(3)(x.reshape(x.shape[0], -1))

    with pytest.raises(MixPointError, match="Plain never reached them .it has no mix point"):
        step_with((0,))(state_of(Plain()), BATCH, jax.random.key(1))


def test_the_semi_supervised_step_checks_both_terms():
    state = state_of(TinyNet())
    for supervised, unsupervised, missing in (((0, 4), (0, 1), r"\[4\]"),
                                              ((0, 1), (1, 2), r"\[2\]")):
        spec = mmix_jax.SemiSupervisedSpec(
            num_classes=3, rampup_steps=0, supervised_alpha=1.0, supervised_layers=supervised,
            unsupervised_layers=unsupervised)
        with pytest.raises(MixPointError, match=missing):
            jax.jit(functools.partial(mmix_jax.ssl_mixup_step, config=spec))(
                state, BATCH, {"image": BATCH["image"]}, jax.random.key(1))


def test_a_wrapped_linen_model_checks_steps_and_direct_calls():
    model = mmix_jax.mixable(TheirNet(), points=("hidden",))
    with pytest.raises(MixPointError, match=r"\[2\] .*its mix points are \[0, 1\]"):
        step_with((0, 1, 2))(state_of(model), BATCH, jax.random.key(1))
    variables = model.init(jax.random.key(0), BATCH["image"])
    perm, lam = jnp.array([1, 0, 3, 2]), jnp.float32(0.5)
    with pytest.raises(MixPointError, match=r"\[7\]"):
        model.apply(variables, BATCH["image"], mix_layer=7, perm=perm, lam=lam)
    model.apply(variables, BATCH["image"], mix_layer=1, perm=perm, lam=lam)  # a real point


def test_our_models_check_a_direct_call():
    model = mmix_jax.get_model("mlp", num_classes=3, widths=(8,))  # points 0 and 1
    variables = model.init(jax.random.key(0), BATCH["image"], train=False)
    perm, lam = jnp.array([1, 0, 3, 2]), jnp.float32(0.5)
    with pytest.raises(MixPointError, match=r"\[2\] .*its mix points are \[0, 1\]"):
        model.apply(variables, BATCH["image"], train=False, mix_layer=2, perm=perm, lam=lam)


def test_the_nnx_step_and_direct_calls_check_the_points():
    class TheirNnx(nnx.Module):
        def __init__(self, rngs):
            self.hidden, self.out = nnx.Linear(4, 8, rngs=rngs), nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1))))

    model = mnnx.mixable(TheirNnx(nnx.Rngs(0)), points=("hidden",))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    spec = mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0, 1, 3))
    with pytest.raises(MixPointError, match=r"\[3\] .*its mix points are \[0, 1\]"):
        mnnx.mixup_step(model, optimizer, BATCH, jax.random.key(1), config=spec)
    with pytest.raises(MixPointError, match=r"\[5\]"):
        model(BATCH["image"], mix_layer=5, perm=jnp.arange(4), lam=jnp.float32(0.5))
