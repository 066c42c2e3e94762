"""The train step: pure, compiled once for every k, and equal to simpler formulations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from step_runs import train_drawing_points
from tiny_models import tiny_preact

from mmix_jax.losses import bce_loss
from mmix_jax.mixup import MixSpec, sample_mix
from mmix_jax.models import get_model
from mmix_jax.optim import paper_sgd, step_schedule
from mmix_jax.state import create_train_state
from mmix_jax.step import eval_step, mixup_loss, mixup_step

LR, MOMENTUM, WD = 0.1, 0.9, 1e-4


def make_state(name="mlp", model=None, **kwargs):
    model = model or get_model(name, num_classes=4, **kwargs)
    images = jax.random.normal(jax.random.key(0), (8, 4, 4, 3))
    labels = jnp.array([0, 1, 2, 3, 0, 1, 2, 3])
    tx = paper_sgd(step_schedule(LR, [], 0.1), momentum=MOMENTUM, weight_decay=WD)
    state = create_train_state(model, tx, jax.random.key(1), images)
    return state, {"image": images, "label": labels}


def test_step_is_pure_bit_identical_outputs():
    state, batch = make_state(model=tiny_preact(num_classes=4))
    step = jax.jit(functools.partial(mixup_step, config=MixSpec(num_classes=4)))
    rng = jax.random.key(7)
    first, second = step(state, batch, rng), step(state, batch, rng)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), first, second))
    other = step(state, batch, jax.random.key(8))
    assert not (other[0].params["head"]["kernel"] == first[0].params["head"]["kernel"]).all()


def test_hundred_steps_with_varying_k_compile_once():
    state, batch = make_state(widths=(8, 8, 8))
    spec = MixSpec(num_classes=4, alpha=2.0, mix_layers=(0, 1, 2, 3))
    step = jax.jit(functools.partial(mixup_step, config=spec), donate_argnums=0)
    state, drawn, _ = train_drawing_points(
        step, state, batch, [jax.random.fold_in(jax.random.key(3), i) for i in range(100)])
    assert drawn == {0, 1, 2, 3}
    assert step._cache_size() == 1
    assert int(state.step) == 100


def test_erm_step_equals_hand_written_pytorch_sgd():
    state, batch = make_state(widths=(8,))
    spec = MixSpec(num_classes=4, mix_layers=())
    step = jax.jit(functools.partial(mixup_step, config=spec))

    def loss(params):
        logits = state.apply_fn({"params": params}, batch["image"], train=False)
        return bce_loss(logits, jax.nn.one_hot(batch["label"], 4))

    # PyTorch SGD(nesterov, weight_decay): d = g + wd*w; buf = m*buf + d; w -= lr*(d + m*buf)
    params = state.params
    buf = jax.tree.map(jnp.zeros_like, params)
    for i in range(3):
        d = jax.tree.map(lambda g, w: g + WD * w, jax.grad(loss)(params), params)
        buf = jax.tree.map(lambda b, x: MOMENTUM * b + x, buf, d)
        params = jax.tree.map(lambda w, x, b: w - LR * (x + MOMENTUM * b), params, d, buf)
        state, metrics = step(state, batch, jax.random.key(i))
        assert int(metrics["mix_layer"]) == -1 and float(metrics["lam"]) == 1.0
    chex_close = jax.tree.map(lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-6),
                              state.params, params)
    assert all(jax.tree.leaves(chex_close))


@pytest.mark.parametrize("layers", [(0,), (1, 2)])
def test_mixing_a_batch_of_identical_examples_is_an_erm_step(layers):
    """Every partner equals its example, so mixed inputs and targets equal the originals."""
    state, batch = make_state(widths=(8, 8))
    same = {"image": jnp.broadcast_to(batch["image"][:1], batch["image"].shape),
            "label": jnp.zeros_like(batch["label"])}
    mixed = mixup_step(state, same, jax.random.key(4),
                       config=MixSpec(num_classes=4, alpha=1.0, mix_layers=layers))
    erm = mixup_step(state, same, jax.random.key(4), config=MixSpec(num_classes=4, mix_layers=()))
    assert float(mixed[1]["lam"]) < 1.0 and int(mixed[1]["mix_layer"]) in layers
    np.testing.assert_allclose(mixed[1]["loss"], erm[1]["loss"], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 mixed[0].params, erm[0].params)


def test_input_mixup_loss_equals_the_loss_on_a_hand_mixed_batch():
    """With λ and perm known, the mixed loss is the plain loss on λx + (1-λ)x[perm] and mixed
    targets. The draw is read back from the reported lam and from a two-class batch."""
    state, batch = make_state(widths=(8,))
    images = batch["image"][:2]
    labels = jnp.array([0, 1])
    spec = MixSpec(num_classes=4, alpha=1.0, mix_layers=(0,))
    for seed in range(20):  # find a draw that swaps the two examples
        _, metrics = mixup_step(state, {"image": images, "label": labels}, jax.random.key(seed),
                                config=spec)
        lam = metrics["lam"]
        logits_fn = lambda x: state.apply_fn({"params": state.params}, x, train=True)  # noqa: E731
        swapped = images[::-1]
        hand_x = lam * images + (1 - lam) * swapped
        hand_y = lam * jax.nn.one_hot(labels, 4) + (1 - lam) * jax.nn.one_hot(labels[::-1], 4)
        if np.isclose(metrics["loss"], bce_loss(logits_fn(hand_x), hand_y), rtol=1e-5):
            return
    pytest.fail("no draw matched a swap of the two examples: mixing is not λx + (1-λ)x[perm]")


def test_schedule_decays_at_each_milestone():
    schedule = step_schedule(0.1, [10, 20], 0.1)
    values = [float(schedule(s)) for s in (0, 9, 10, 19, 20, 1000)]
    np.testing.assert_allclose(values, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_eval_step_counts_masked_padding_out():
    state, batch = make_state(model=tiny_preact(num_classes=4))
    full = eval_step(state, batch)
    padded = {"image": jnp.concatenate([batch["image"], batch["image"][:3]]),
              "label": jnp.concatenate([batch["label"], batch["label"][:3]]),
              "mask": jnp.concatenate([jnp.ones(8), jnp.zeros(3)])}
    sums = eval_step(state, padded)
    assert float(sums["count"]) == 8
    np.testing.assert_allclose(sums["nll"], full["nll"], rtol=1e-5)
    assert float(sums["correct"]) == float(full["correct"])
    logits = state.apply_fn(state.variables(), batch["image"], train=False)
    expected_nll = -jnp.sum(jax.nn.log_softmax(logits)[jnp.arange(8), batch["label"]])
    np.testing.assert_allclose(full["nll"], expected_nll, rtol=1e-5)


def test_bad_batches_fail_at_the_boundary():
    state, batch = make_state()
    with pytest.raises(ValueError, match="same batch size"):
        mixup_step(state, {"image": batch["image"], "label": batch["label"][:5]},
                   jax.random.key(0), config=MixSpec(num_classes=4))
    with pytest.raises(ValueError, match="integer class indices"):
        mixup_step(state, {"image": batch["image"], "label": batch["label"].astype(jnp.float32)},
                   jax.random.key(0), config=MixSpec(num_classes=4))


def test_grad_norm_metric_is_the_global_norm_of_the_gradient():
    state, batch = make_state(widths=(8,))
    _, metrics = mixup_step(state, batch, jax.random.key(0), config=MixSpec(num_classes=4,
                                                                             mix_layers=()))

    def loss(params):
        logits = state.apply_fn({"params": params}, batch["image"], train=True)
        return bce_loss(logits, jax.nn.one_hot(batch["label"], 4))

    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(jax.grad(loss)(state.params)),
                               rtol=1e-5)


def test_optax_apply_if_finite_skips_a_non_finite_update_and_counts_it():
    """The library's guard against NaN is optax's: wrap the optimiser in apply_if_finite; the
    step then leaves the parameters as they were on a non-finite gradient and counts it."""
    model = get_model("mlp", num_classes=4, widths=(8,))
    images = jax.random.normal(jax.random.key(0), (8, 4, 4, 3))
    batch = {"image": images, "label": jnp.array([0, 1, 2, 3, 0, 1, 2, 3])}
    tx = optax.apply_if_finite(optax.sgd(0.1), max_consecutive_errors=3)
    state = create_train_state(model, tx, jax.random.key(1), images)
    step = jax.jit(functools.partial(mixup_step, config=MixSpec(num_classes=4, mix_layers=())))
    poisoned = dict(batch, image=images.at[0, 0, 0, 0].set(jnp.nan))
    skipped, metrics = step(state, poisoned, jax.random.key(2))
    assert not np.isfinite(float(metrics["loss"]))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), skipped.params,
                                     state.params))
    assert int(skipped.opt_state.notfinite_count) == 1
    trained, _ = step(skipped, batch, jax.random.key(3))
    assert int(trained.opt_state.notfinite_count) == 0
    assert not (trained.params["head"]["kernel"] == state.params["head"]["kernel"]).all()


def test_mixup_loss_takes_a_flax_examples_train_state():
    """mixup_loss needs only apply_fn (and batch_stats if any): flax's own TrainState works, and
    gives the loss our TrainState gives."""
    from flax.training import train_state

    ours, batch = make_state(widths=(8,))
    theirs = train_state.TrainState.create(apply_fn=ours.apply_fn, params=ours.params,
                                           tx=optax.sgd(0.1))
    spec = MixSpec(num_classes=4, alpha=1.0, mix_layers=(0, 1))
    draw = sample_mix(jax.random.key(3), 8, alpha=1.0, mix_layers=(0, 1))
    args = (batch["image"], batch["label"], draw)
    loss_theirs, _ = mixup_loss(theirs.params, theirs, *args, config=spec)
    loss_ours, _ = mixup_loss(ours.params, ours, *args, config=spec)
    assert float(loss_theirs) == float(loss_ours) and np.isfinite(float(loss_theirs))


def test_every_named_rng_stream_gets_its_own_key_from_the_step_key():
    """A model drawing from "drop_path" besides "dropout" (stochastic depth) trains once the
    stream is named; its update is a function of the step key alone."""
    import flax.linen as nn

    class DropPath(nn.Module):
        @nn.compact
        def __call__(self, x, *, train, mix_layer=None, perm=None, lam=None):
            from mmix_jax.mixup import maybe_mix

            x = maybe_mix(x.reshape(x.shape[0], -1), 0, mix_layer, perm, lam)
            h = nn.relu(nn.Dense(8)(x))
            if train:  # drop the whole residual branch per example
                keep = jax.random.bernoulli(self.make_rng("drop_path"), 0.5, (x.shape[0], 1))
                h = h * keep
            return nn.Dense(4)(nn.Dropout(0.3, deterministic=not train)(h))

    state, batch = make_state(model=DropPath())
    named = MixSpec(num_classes=4, alpha=1.0, mix_layers=(0,),
                    rng_streams=("dropout", "drop_path"))
    step = jax.jit(functools.partial(mixup_step, config=named))
    first, second = step(state, batch, jax.random.key(5)), step(state, batch, jax.random.key(5))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), first, second))
    other = step(state, batch, jax.random.key(6))
    assert not (other[0].params["Dense_1"]["kernel"] == first[0].params["Dense_1"]["kernel"]).all()
    with pytest.raises(Exception, match="drop_path"):  # not named: flax's missing-stream error
        jax.jit(functools.partial(mixup_step, config=MixSpec(num_classes=4, alpha=1.0,
                                                             mix_layers=(0,))))(
            state, batch, jax.random.key(5))
    with pytest.raises(ValueError, match="MixSpec.rng_streams = 'dropout'"):
        MixSpec(num_classes=4, rng_streams="dropout")
