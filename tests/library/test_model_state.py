"""Any model state, any flag, any stream: what the steps carry and pass for users' own models."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from cli_runs import sharded_check
from jax.experimental import checkify
from step_runs import train_drawing_points
from tiny_models import CountingNet

import mmix_jax
from mmix_jax.mixup import maybe_mix

IMAGES = jax.random.normal(jax.random.key(0), (8, 4, 4, 1))
LABELS = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
BATCH = {"image": IMAGES, "label": LABELS}
ERM = mmix_jax.MixSpec(num_classes=3, alpha=0.0, mix_layers=())


def state_of(model, images=IMAGES):
    return mmix_jax.create_train_state(model, optax.sgd(0.1), jax.random.key(1), images)


def test_every_collection_is_carried_and_updated_and_sown_losses_are_added():
    state = state_of(CountingNet())
    assert set(state.model_state) == {"batch_stats", "counters"}  # "losses" is not state
    assert int(state.model_state["counters"]["calls"]) == 0
    # By hand with flax: the training pass's BCE plus the sown penalty.
    logits, sown = state.apply_fn(state.variables(), IMAGES, train=True,
                                  mutable=["batch_stats", "counters", "losses"])
    bce = mmix_jax.bce_loss(logits, jax.nn.one_hot(LABELS, 3))
    penalty = sown["losses"]["activation_penalty"][0]
    assert float(penalty) > 0

    step = jax.jit(functools.partial(mmix_jax.mixup_step, config=ERM))
    new, metrics = step(state, BATCH, jax.random.key(2))
    np.testing.assert_allclose(metrics["sown_loss"], penalty, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], bce + penalty, rtol=1e-5)
    twice, _ = step(new, BATCH, jax.random.key(3))
    assert int(twice.model_state["counters"]["calls"]) == 2
    assert not np.allclose(twice.batch_stats["BatchNorm_0"]["mean"],
                           state.batch_stats["BatchNorm_0"]["mean"])

    ignored = jax.jit(functools.partial(mmix_jax.mixup_step, config=mmix_jax.MixSpec(
        num_classes=3, alpha=0.0, mix_layers=(), add_sown_losses=False)))
    without, metrics = ignored(state, BATCH, jax.random.key(2))
    np.testing.assert_allclose(metrics["loss"], bce, rtol=1e-5)
    np.testing.assert_allclose(metrics["sown_loss"], penalty, rtol=1e-5)  # reported anyway
    # the penalty's gradient reaches the first layer only when it is added
    assert not np.allclose(without.params["Dense_0"]["kernel"], new.params["Dense_0"]["kernel"])


def test_collections_are_carried_over_devices():
    """Under shard_map on 2 devices: the counter advances once per step (its maximum over
    devices), BatchNorm statistics are the mean of the devices' own."""
    assert "collections over devices" in sharded_check("collections_over_devices", devices=2)


class DeterministicNet(nn.Module):
    """flax's usual flag: `deterministic` rather than `train`."""

    @nn.compact
    def __call__(self, x, *, deterministic, mix_layer=None, perm=None, lam=None):
        x = maybe_mix(x.reshape(x.shape[0], -1), 0, mix_layer, perm, lam)
        h = nn.Dropout(0.5)(nn.relu(nn.Dense(16)(x)), deterministic=deterministic)
        return nn.Dense(3)(h)


class NoFlagNet(nn.Module):
    """A model with one behaviour: no flag at all."""

    @nn.compact
    def __call__(self, x, *, mix_layer=None, perm=None, lam=None):
        x = maybe_mix(x.reshape(x.shape[0], -1), 0, mix_layer, perm, lam)
        return nn.Dense(3)(x)


def test_a_native_model_with_flax_deterministic_flag_trains_and_evaluates():
    # init in evaluation mode: with deterministic=False its Dropout would need a key here
    state = state_of(DeterministicNet())
    step = jax.jit(functools.partial(mmix_jax.mixup_step, config=mmix_jax.MixSpec(
        num_classes=3, alpha=1.0, mix_layers=(0,))))
    (first, _), (again, _) = step(state, BATCH, jax.random.key(4)), step(state, BATCH,
                                                                        jax.random.key(4))
    other, _ = step(state, BATCH, jax.random.key(5))
    kernel = "Dense_1"
    np.testing.assert_array_equal(first.params[kernel]["kernel"], again.params[kernel]["kernel"])
    assert not np.allclose(first.params[kernel]["kernel"], other.params[kernel]["kernel"])
    # evaluation is deterministic=True: the NLL of the plain deterministic forward pass
    logits = state.apply_fn(state.variables(), IMAGES, deterministic=True)
    by_hand = -jnp.sum(jax.nn.log_softmax(logits)[jnp.arange(8), LABELS])
    np.testing.assert_allclose(mmix_jax.eval_step(state, BATCH)["nll"], by_hand, rtol=1e-5)


def test_a_native_model_without_a_flag_trains_and_evaluates():
    state = state_of(NoFlagNet())
    step = jax.jit(functools.partial(mmix_jax.mixup_step, config=mmix_jax.MixSpec(
        num_classes=3, alpha=1.0, mix_layers=(0,))))
    new, metrics = step(state, BATCH, jax.random.key(4))
    assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
    assert float(mmix_jax.eval_step(new, BATCH)["count"]) == 8


class DropPathNet(nn.Module):
    """Stochastic depth on its own stream, "drop_path", besides dropout."""

    @nn.compact
    def __call__(self, x, *, train, mix_layer=None, perm=None, lam=None):
        x = maybe_mix(x.reshape(x.shape[0], -1), 0, mix_layer, perm, lam)
        h = nn.relu(nn.Dense(8)(x))
        if train:
            h = h * jax.random.bernoulli(self.make_rng("drop_path"), 0.5, (x.shape[0], 1))
        return nn.Dense(3)(nn.Dropout(0.3, deterministic=not train)(h))


def ssl_spec(**kwargs):
    return mmix_jax.SemiSupervisedSpec(num_classes=3, rampup_steps=0, supervised_layers=(0,),
                                       unsupervised_layers=(0,), **kwargs)


def test_semi_supervised_step_draws_every_named_stream_from_its_key():
    state = state_of(DropPathNet())
    unlabeled = {"image": IMAGES[::-1]}
    named = jax.jit(functools.partial(mmix_jax.ssl_mixup_step, config=ssl_spec(
        rng_streams=("dropout", "drop_path"))))
    first, again = (named(state, BATCH, unlabeled, jax.random.key(6)) for _ in range(2))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), first, again))
    other = named(state, BATCH, unlabeled, jax.random.key(7))
    assert not np.allclose(other[0].params["Dense_1"]["kernel"], first[0].params["Dense_1"]["kernel"])
    with pytest.raises(Exception, match="drop_path"):  # not named: flax's missing-stream error
        jax.jit(functools.partial(mmix_jax.ssl_mixup_step, config=ssl_spec()))(
            state, BATCH, unlabeled, jax.random.key(6))


def test_semi_supervised_step_checks_labels_and_batches():
    state = state_of(NoFlagNet())
    unlabeled = {"image": IMAGES}
    checked = jax.jit(checkify.checkify(functools.partial(
        mmix_jax.ssl_mixup_step, config=ssl_spec(check_labels=True))))
    error, _ = checked(state, dict(BATCH, label=LABELS.at[3].set(3)), unlabeled, jax.random.key(1))
    with pytest.raises(checkify.JaxRuntimeError, match=r"labels outside \[0, 3\).*max 3"):
        error.throw()
    error, _ = checked(state, BATCH, unlabeled, jax.random.key(1))
    error.throw()  # in range: nothing to report
    step = functools.partial(mmix_jax.ssl_mixup_step, config=ssl_spec())
    with pytest.raises(ValueError, match="unlabelled batch has no 'image'"):
        step(state, BATCH, {"images": IMAGES}, jax.random.key(1))
    with pytest.raises(ValueError, match="integer class indices"):
        step(state, dict(BATCH, label=jax.nn.one_hot(LABELS, 3)), unlabeled, jax.random.key(1))


class ForeignBlock(nn.Module):
    """Dense, ReLU, dropout and stochastic depth (its own "drop_path" stream): not affine."""

    @nn.compact
    def __call__(self, h, deterministic: bool):
        branch = nn.Dropout(0.2)(nn.relu(nn.Dense(16)(h)), deterministic=deterministic)
        if not deterministic:
            branch = branch * jax.random.bernoulli(self.make_rng("drop_path"), 0.8, (h.shape[0], 1))
        return h + branch


class ForeignNet(nn.Module):
    """Someone else's model: flax's `deterministic` flag, stochastic depth, a sown auxiliary
    loss and a custom collection (a call counter); no mixing contract."""

    @nn.compact
    def __call__(self, x, *, deterministic: bool):
        calls = self.variable("counters", "calls", lambda: jnp.zeros((), jnp.int32))
        if not deterministic and not self.is_initializing():
            calls.value += 1
        h = nn.relu(nn.Dense(16, name="stem")(x.reshape(x.shape[0], -1)))
        h = ForeignBlock(name="block")(h, deterministic)
        self.sow("losses", "activation", 1e-3 * jnp.mean(jnp.square(h)))
        return nn.Dense(3, name="head")(h)


def test_someone_elses_model_trains_through_mixable_with_one_compile_and_mixes_exactly():
    model = mmix_jax.mixable(ForeignNet(), ("block",))
    state = state_of(model)
    assert set(state.model_state) == {"counters"}
    spec = mmix_jax.MixSpec(num_classes=3, alpha=2.0, mix_layers=(0, 1),
                            rng_streams=("dropout", "drop_path"))
    step = jax.jit(functools.partial(mmix_jax.mixup_step, config=spec))
    state, layers, history = train_drawing_points(step, state, BATCH,
                                                  [jax.random.key(i) for i in range(6)])
    for metrics in history:
        assert np.isfinite(float(metrics["loss"])) and float(metrics["sown_loss"]) > 0
    assert layers == {0, 1} and step._cache_size() == 1
    assert int(state.model_state["counters"]["calls"]) == 6

    # The state at point 1 (after the block), in training mode, against by-hand mixing of the
    # unmixed pass's state with the same keys.
    perm, lam = jnp.array([7, 6, 5, 4, 3, 2, 1, 0]), jnp.float32(0.3)
    rngs = {"dropout": jax.random.key(9), "drop_path": jax.random.key(10)}

    def state_at_point(**mix):
        _, sown = model.apply(state.variables(), IMAGES, train=True, rngs=rngs,
                              mutable=["intermediates", "counters", "losses"], **mix)
        return sown["intermediates"]["mix_point_1"][0]

    unmixed = state_at_point()
    mixed = state_at_point(mix_layer=1, perm=perm, lam=lam)
    np.testing.assert_allclose(mixed, lam * unmixed + (1 - lam) * unmixed[perm], rtol=1e-6,
                               atol=1e-6)
    assert not np.allclose(mixed, unmixed)


def test_mixup_step_trains_flax_examples_train_states():
    """flax's own TrainState (no BatchNorm), and the flax-examples subclass with a batch_stats
    field: the step updates its params and its statistics."""
    from flax.training import train_state
    from tiny_models import tiny_preact

    class WithStats(train_state.TrainState):
        batch_stats: dict

    spec = mmix_jax.MixSpec(num_classes=3, alpha=1.0, mix_layers=(0, 1))
    images = jax.random.normal(jax.random.key(0), (8, 8, 8, 3))
    batch = {"image": images, "label": LABELS}
    model = tiny_preact(num_classes=3)
    variables = model.init(jax.random.key(1), images, train=False)
    theirs = WithStats.create(apply_fn=model.apply, params=variables["params"], tx=optax.sgd(0.1),
                              batch_stats=variables["batch_stats"])
    new, metrics = jax.jit(functools.partial(mmix_jax.mixup_step, config=spec))(
        theirs, batch, jax.random.key(2))
    assert type(new) is WithStats and int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(new.batch_stats),
                                                     jax.tree.leaves(theirs.batch_stats)))
    plain_model = NoFlagNet()
    plain = train_state.TrainState.create(
        apply_fn=plain_model.apply, params=plain_model.init(jax.random.key(1), IMAGES)["params"],
        tx=optax.sgd(0.1))
    new, _ = mmix_jax.mixup_step(plain, BATCH, jax.random.key(2), config=mmix_jax.MixSpec(
        num_classes=3, alpha=1.0, mix_layers=(0,)))
    assert not np.allclose(new.params["Dense_0"]["kernel"], plain.params["Dense_0"]["kernel"])
