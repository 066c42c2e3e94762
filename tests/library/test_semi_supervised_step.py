"""The semi-supervised step (SSL Manifold Mixup and ICT) against simpler formulations: the
ramp-up, the mean teacher, the consistency losses, by-hand gradients and BatchNorm passes."""


import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sharded_checks

from mmix_jax.losses import soft_ce_loss
from mmix_jax.mixup import MixSpec
from mmix_jax.models import MixableModel, get_model
from mmix_jax.optim import paper_sgd, step_schedule
from mmix_jax.semi_supervised import (
    SemiSupervisedSpec,
    consistency_loss,
    ssl_mixup_step,
    teacher_decay,
    unsupervised_weight,
)
from mmix_jax.state import create_train_state, with_teacher
from mmix_jax.step import mixup_step

CLASSES = 4


class TinyBatchNormNet(MixableModel):
    """Dense → BatchNorm → LeakyReLU → dropout, twice, then the logits: BatchNorm statistics and
    dropout keys matter as in the WRN, at a fraction of its compile time. Mix points 0, 1, 2."""

    num_classes: int = CLASSES
    dtype: jnp.dtype = jnp.float32

    @property
    def num_mix_points(self) -> int:
        return 3

    @property
    def has_batch_norm(self) -> bool:
        return True

    def setup(self):
        self.dense = [nn.Dense(16), nn.Dense(16), nn.Dense(self.num_classes)]
        self.norms = [nn.BatchNorm(momentum=0.9), nn.BatchNorm(momentum=0.9)]
        self.dropout = nn.Dropout(0.3)

    def segment(self, index, h, train):
        h = self.dense[index](h.reshape(h.shape[0], -1))
        if index == 2:
            return h
        h = nn.leaky_relu(self.norms[index](h, use_running_average=not train), 0.01)
        return self.dropout(h, deterministic=not train)


def small_bn_state(teacher=False):
    """A small network with BatchNorm and dropout, its state and a batch of each kind."""
    model = TinyBatchNormNet()
    data = np.random.default_rng(0)
    labeled = {"image": jnp.asarray(data.normal(size=(8, 8, 8, 3)), jnp.float32),
               "label": jnp.arange(8, dtype=jnp.int32) % CLASSES}
    unlabeled = {"image": jnp.asarray(data.normal(size=(6, 8, 8, 3)), jnp.float32)}
    tx = paper_sgd(step_schedule(0.1, [], 0.1), momentum=0.9, weight_decay=5e-4)
    state = create_train_state(model, tx, jax.random.key(1), labeled["image"])
    return (with_teacher(state) if teacher else state), labeled, unlabeled


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_zero_weight_update_equals_supervised_mixup_step_with_cross_entropy():
    state, labeled, unlabeled = small_bn_state()
    spec = SemiSupervisedSpec(num_classes=CLASSES, rampup_steps=0, unsupervised_weight_max=0.0)
    rng = jax.random.key(3)
    ssl_state, ssl_metrics = jax.jit(functools.partial(ssl_mixup_step, config=spec))(
        state, labeled, unlabeled, rng)
    supervised = MixSpec(num_classes=CLASSES, alpha=0.1, mix_layers=(0, 1, 2), loss="soft_ce")
    sup_state, sup_metrics = jax.jit(functools.partial(mixup_step, config=supervised))(
        state, labeled, jax.random.split(rng)[0])
    assert_trees_equal((ssl_state.params, ssl_state.batch_stats, ssl_state.opt_state),
                       (sup_state.params, sup_state.batch_stats, sup_state.opt_state))
    np.testing.assert_array_equal(ssl_metrics["supervised_loss"], sup_metrics["loss"])
    assert float(ssl_metrics["unsupervised_loss"]) == 0.0
    moved = max(float(jnp.abs(a - b).max()) for a, b in
                zip(jax.tree.leaves(ssl_state.params), jax.tree.leaves(state.params)))
    assert moved > 1e-3


def test_cross_entropy_on_mixed_one_hot_is_the_lambda_weighted_sum():
    logits = jax.random.normal(jax.random.key(0), (5, CLASSES)) * 3
    y_a, y_b = jnp.array([0, 1, 2, 3, 0]), jnp.array([3, 3, 1, 0, 0])
    lam = 0.3
    one_hot = functools.partial(jax.nn.one_hot, num_classes=CLASSES)
    ce = lambda y: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))  # noqa: E731
    np.testing.assert_allclose(soft_ce_loss(logits, lam * one_hot(y_a) + (1 - lam) * one_hot(y_b)),
                               lam * ce(y_a) + (1 - lam) * ce(y_b), rtol=1e-6)


def test_ramp_up_at_0_20_40_and_60_percent_of_training_inside_one_compiled_step():
    total, w_max = 1000, 2.0  # the authors ramp over the first 40 % of the updates
    spec = SemiSupervisedSpec(num_classes=CLASSES, rampup_steps=400, unsupervised_weight_max=w_max,
                              unsupervised_layers=(0,))
    expected = {0: w_max * np.exp(-5.0), 200: w_max * np.exp(-5 * 0.5 ** 2), 400: w_max,
                600: w_max}
    for step, value in expected.items():
        np.testing.assert_allclose(unsupervised_weight(step, spec), value, rtol=1e-6)
    state, labeled, unlabeled = sharded_checks_mlp_state()
    step_fn = jax.jit(functools.partial(ssl_mixup_step, config=spec))
    for step, value in expected.items():
        _, metrics = step_fn(state.replace(step=jnp.asarray(step, jnp.int32)), labeled,
                             unlabeled, jax.random.key(step))
        np.testing.assert_allclose(metrics["unsupervised_weight"], value, rtol=1e-6)
    assert step_fn._cache_size() == 1
    assert 0.4 * total == spec.rampup_steps


def sharded_checks_mlp_state():
    model = get_model("mlp", num_classes=CLASSES, widths=(8, 8))
    images = jnp.ones((4, 2, 2, 1))
    state = create_train_state(model, optax.sgd(0.1), jax.random.key(0), images)
    return state, {"image": images, "label": jnp.arange(4) % CLASSES}, {"image": images + 1}


def test_step_equals_by_hand_gradients_with_constant_targets():
    """The whole update by hand (sharded_checks.ssl_by_hand; here the plain step, not sharded;
    test_parallel runs it on 8 devices for both target kinds): targets held constant, so no
    gradient flows through them."""
    sharded_checks.ssl_by_hand("self", sharded=False)


def test_step_with_target_gradient_through_equals_by_hand_gradients_of_the_full_objective():
    """target_gradient "through": the same update by hand, now with the targets a function of
    the weights, so the gradient also flows through the targets' pass. (The by-hand update
    with constant targets differs from it, so this comparison can fail.)"""
    sharded_checks.ssl_by_hand("self", sharded=False, target_gradient="through")


def test_mean_teacher_is_the_ema_of_the_weights_with_ict_warm_up():
    assert float(teacher_decay(1, 0.999)) == 0.5
    np.testing.assert_allclose(teacher_decay(2, 0.999), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(teacher_decay(10 ** 6, 0.999), 0.999, rtol=1e-6)
    state, labeled, unlabeled = small_bn_state(teacher=True)
    spec = SemiSupervisedSpec(num_classes=CLASSES, rampup_steps=0, targets="mean_teacher",
                              unsupervised_layers=(0,))
    step = jax.jit(functools.partial(ssl_mixup_step, config=spec))
    first, _ = step(state, labeled, unlabeled, jax.random.key(0))
    second, _ = step(first, labeled, unlabeled, jax.random.key(1))
    by_hand = jax.tree.map(lambda t, p1, p2: (2 / 3) * (0.5 * t + 0.5 * p1) + (1 / 3) * p2,
                           state.params, first.params, second.params)
    for a, b in zip(jax.tree.leaves(second.teacher["params"]), jax.tree.leaves(by_hand)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # The teacher keeps its own BatchNorm statistics, from its own (train-mode) passes.
    assert not np.allclose(jax.tree.leaves(second.teacher["model_state"]["batch_stats"])[0],
                           jax.tree.leaves(state.teacher["model_state"]["batch_stats"])[0])
    with pytest.raises(ValueError, match="need a teacher"):
        step(state.replace(teacher=None), labeled, unlabeled, jax.random.key(0))


def test_ict_consistency_is_the_mse_of_softmaxes_and_self_the_mse_of_logits():
    logits, targets = jnp.array([[0.0, np.log(3.0)]]), jnp.array([[0.0, 0.0]])
    # softmax: (1/4, 3/4) against (1/2, 1/2): squared differences 1/16 each, mean 1/16.
    np.testing.assert_allclose(consistency_loss(logits, targets, "mean_teacher"), 1 / 16, rtol=1e-6)
    np.testing.assert_allclose(consistency_loss(logits, targets, "self"), np.log(3.0) ** 2 / 2, rtol=1e-6)


def test_spec_refuses_impossible_settings():
    with pytest.raises(ValueError, match="targets"):
        SemiSupervisedSpec(num_classes=10, rampup_steps=0, targets="teacher")
    with pytest.raises(ValueError, match="unlabelled term needs mix points"):
        SemiSupervisedSpec(num_classes=10, rampup_steps=0, unsupervised_layers=())
    with pytest.raises(ValueError, match="target_gradient = 'sideways'"):
        SemiSupervisedSpec(num_classes=10, rampup_steps=0, target_gradient="sideways")
    assert hash(SemiSupervisedSpec(num_classes=10, rampup_steps=5)) == hash(
        SemiSupervisedSpec(num_classes=10, rampup_steps=5))


def test_authors_wrn28_2_parameter_count_from_their_layer_list():
    def block(c_in, c_out, shortcut):
        return (2 * c_in + 9 * c_in * c_out + c_out + 2 * c_out + 9 * c_out * c_out + c_out
                + (c_in * c_out + c_out if shortcut else 0))

    widths, count = [16, 32, 64, 128], 9 * 3 * 16 + 16
    for stage in range(3):
        for j in range(4):
            c_in = widths[stage] if j == 0 else widths[stage + 1]
            count += block(c_in, widths[stage + 1], j == 0)
    count += 2 * 128 + 128 * 10 + 10
    model = get_model("wrn28_2_ssl", num_classes=10)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                  train=False))
    assert sum(x.size for x in jax.tree.leaves(variables["params"])) == count == 1_469_642


class InputNormNet(MixableModel):
    """BatchNorm on the (flattened) input, then the logits: the running statistics after an
    update are averages of the batches the passes saw, computable by hand. One mix point (0)."""

    num_classes: int = CLASSES
    dtype: jnp.dtype = jnp.float32

    @property
    def num_mix_points(self) -> int:
        return 1

    @property
    def has_batch_norm(self) -> bool:
        return True

    def setup(self):
        self.norm = nn.BatchNorm(momentum=0.9)
        self.dense = nn.Dense(self.num_classes)

    def segment(self, index, h, train):
        h = self.norm(h.reshape(h.shape[0], -1), use_running_average=not train)
        return self.dense(h)


@pytest.mark.parametrize("passes", ["step", "authors"])
def test_batch_norm_statistics_follow_the_pass_order_by_hand(passes):
    """"step": targets (clean u), mixed labelled, mixed u. "authors": mixed labelled, clean u,
    mixed u, then after the update clean labelled and clean u. Running mean and variance after
    one update from (0, 1), each pass r ← 0.9·r + 0.1·(batch statistic), against numpy."""
    from mmix_jax.semi_supervised import draws
    data = np.random.default_rng(4)
    labeled = {"image": jnp.asarray(data.normal(1.0, 2.0, (8, 5)), jnp.float32),
               "label": jnp.arange(8, dtype=jnp.int32) % CLASSES}
    unlabeled = {"image": jnp.asarray(data.normal(-1.0, 0.5, (6, 5)), jnp.float32)}
    state = create_train_state(InputNormNet(), paper_sgd(step_schedule(0.1, [], 0.1)),
                               jax.random.key(1), labeled["image"])
    spec = SemiSupervisedSpec(num_classes=CLASSES, rampup_steps=0, supervised_layers=(0,),
                              unsupervised_layers=(0,), batch_norm_passes=passes)
    rng = jax.random.key(7)
    new_state, _ = jax.jit(functools.partial(ssl_mixup_step, config=spec))(
        state, labeled, unlabeled, rng)
    drawn = draws(rng, spec, 8, 6)

    def mixed(x, draw):
        x, lam = np.asarray(x, np.float64), float(draw.lam)
        return lam * x + (1 - lam) * x[np.asarray(draw.perm)]

    lab, unl = np.asarray(labeled["image"], np.float64), np.asarray(unlabeled["image"], np.float64)
    lab_mixed, unl_mixed = mixed(lab, drawn.supervised), mixed(unl, drawn.unsupervised)
    order = {"step": [unl, lab_mixed, unl_mixed],
             "authors": [lab_mixed, unl, unl_mixed, lab, unl]}[passes]
    mean, var = np.zeros(5), np.ones(5)
    for batch in order:
        mean = 0.9 * mean + 0.1 * batch.mean(0)
        var = 0.9 * var + 0.1 * batch.var(0)
    stats = new_state.batch_stats["norm"]
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["var"], var, rtol=1e-5, atol=1e-6)



def test_ict_consistency_is_zero_for_affine_logits_and_not_for_curved_ones():
    """Mixing commutes with an affine map: f(λx + (1−λ)x′) = λf(x) + (1−λ)f(x′) for
    f(x) = Wx + b, so ICT's consistency against the mixed logits is 0 at every λ; a map with a
    squared feature does not commute, and scores above 0."""
    rng = np.random.default_rng(0)
    points = jnp.asarray(rng.normal(size=(64, 2)), jnp.float32)
    perm = jnp.asarray(rng.permutation(64), jnp.int32)
    weights = jnp.asarray([[1.5, -2.0], [0.5, 3.0]])

    def affine(x):
        return x @ weights + 0.3

    def curved(x):
        return jnp.stack([x[:, 0] ** 2, x[:, 1]], axis=1) @ weights

    for lam in (0.1, 0.5, 0.8):
        mixed_points = lam * points + (1 - lam) * points[perm]
        for predict, zero in ((affine, True), (curved, False)):
            logits = predict(points)
            targets = lam * logits + (1 - lam) * logits[perm]
            loss = float(consistency_loss(predict(mixed_points), targets, "mean_teacher"))
            assert (loss < 1e-9) if zero else (loss > 1e-4), (predict.__name__, lam, loss)
