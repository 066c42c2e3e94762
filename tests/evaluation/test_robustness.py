"""Robustness metrics against independent facts: AUROC and FPR95 by hand, deformations against
np.rot90 and the identity, PGD against FGSM and against the closed form of a linear model."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmix_jax.errors import DataError
from mmix_jax.evaluation import deformations, ood
from mmix_jax.evaluation.attacks import fgsm_logits_fn, madry_step_size, pgd_logits_fn
from mmix_jax.evaluation.input_space import InputSpace


def test_auroc_with_ties_equals_the_pairwise_count_by_hand():
    inside, outside = np.array([3.0, 1.0, 2.0, 2.0]), np.array([2.0, 0.0, 3.0])
    # 12 pairs (in, out): in > out for (3,2) (3,0) (1,0) (2,0) (2,0) = 5; ties (3,3) (2,2) (2,2)
    assert ood.auroc(inside, outside) == pytest.approx((5 + 0.5 * 3) / 12)
    assert ood.auroc(np.ones(4), np.ones(3)) == 0.5  # all tied: chance
    assert ood.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    np.testing.assert_array_equal(ood.midranks(np.array([5.0, 1.0, 5.0, 3.0])),
                                  [3.5, 1.0, 3.5, 2.0])


def test_fpr_at_95_tpr_thresholds_at_the_score_that_keeps_95_percent():
    inside = np.arange(1, 101, dtype=float)  # 95 % of these are >= 6
    outside = np.array([0.0, 5.0, 6.0, 50.0])
    assert ood.fpr_at_tpr(inside, outside) == 0.5  # 6 and 50 are >= 6


def test_scores_are_the_softmax_maximum_and_logsumexp():
    logits = np.array([[0.0, np.log(3.0)], [1.0, 1.0]])
    scores = ood.scores(logits)
    np.testing.assert_allclose(scores["msp"], [0.75, 0.5])
    np.testing.assert_allclose(scores["energy"], [np.log(4.0), 1.0 + np.log(2.0)])


def test_an_out_of_distribution_set_of_another_shape_is_refused_by_name(tmp_path):
    np.savez(tmp_path / "svhn_like.npz", image=np.zeros((5, 32, 32, 3), np.uint8),
             label=np.zeros(5, np.int64))
    with pytest.raises(DataError, match=r"svhn_like.npz'.*\[32, 32, 3\] but the model takes "
                                        r"\[28, 28, 1\]"):
        ood.load_images(f"npz:{tmp_path / 'svhn_like.npz'}", shape=(28, 28, 1), count=5, seed=0)
    with pytest.raises(DataError, match="'npz:.*missing.npz'.*not a file"):
        ood.load_images(f"npz:{tmp_path / 'missing.npz'}", shape=(28, 28, 1), count=5, seed=0)
    noise = ood.load_images("gaussian", shape=(4, 4, 1), count=3, seed=0)
    assert noise.shape == (3, 4, 4, 1) and noise.dtype == np.uint8


def test_rotation_by_90_degrees_is_np_rot90_and_zoom_1_shear_0_are_the_identity():
    images = np.random.default_rng(0).random((3, 6, 6, 2)).astype(np.float32)

    def deformed(kind, value):
        matrices = deformations.sampling_matrix(kind, [value] * 3).astype(np.float32)
        return np.asarray(deformations.deform(jnp.asarray(images), jnp.asarray(matrices)))

    np.testing.assert_allclose(deformed("rotate", 90.0), np.rot90(images, 1, axes=(1, 2)),
                               atol=1e-6)
    np.testing.assert_allclose(deformed("rotate", -90.0), np.rot90(images, -1, axes=(1, 2)),
                               atol=1e-6)
    np.testing.assert_array_equal(deformed("zoom", 1.0), images)
    np.testing.assert_array_equal(deformed("shear", 0.0), images)
    # zoom out ×0.5 of a white 6×6 image: output o samples 2·(o − 2.5) + 2.5, inside the image
    # for o in 2..3, half a pixel outside (bilinear with black) for o = 1 and 4, beyond for 0, 5
    white = jnp.ones((1, 6, 6, 1))
    shrunk = np.asarray(deformations.deform(white, jnp.asarray(
        deformations.sampling_matrix("zoom", [0.5]), jnp.float32)))[0, :, :, 0]
    profile = np.array([0.0, 0.5, 1.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(shrunk, np.outer(profile, profile), atol=1e-6)
    preset = deformations.DEFORMATIONS["rotate20"].sampling_matrices(1000, seed=0)
    angles = np.rad2deg(np.arctan2(preset[:, 0, 1], preset[:, 0, 0]))
    assert -20.0 <= angles.min() < -19.0 and 19.0 < angles.max() <= 20.0
    np.testing.assert_array_equal(preset, deformations.DEFORMATIONS["rotate20"]
                                  .sampling_matrices(1000, seed=0))


def _mlp_state(seed=0, features=12, classes=3):
    keys = jax.random.split(jax.random.key(seed), 2)
    params = {"w1": jax.random.normal(keys[0], (features, 8)),
              "w2": jax.random.normal(keys[1], (8, classes))}

    def apply_fn(variables, inputs, train):
        hidden = jnp.tanh(inputs.reshape(inputs.shape[0], -1) @ variables["w1"])
        return hidden @ variables["w2"]

    return types.SimpleNamespace(apply_fn=apply_fn, variables=lambda: params)


@pytest.mark.parametrize("attack_space", ["normalized", "pixel"])
def test_pgd_with_one_step_of_size_epsilon_and_no_random_start_is_fgsm(attack_space):
    rng = np.random.default_rng(1)
    batch = {"image": jnp.asarray(rng.integers(0, 256, (16, 2, 2, 3), dtype=np.uint8)),
             "label": jnp.asarray(rng.integers(0, 3, 16), jnp.int32)}
    space, state = InputSpace((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), _mlp_state()
    fgsm = fgsm_logits_fn(space, 0.1, attack_space)(state, batch)
    one_step = pgd_logits_fn(space, 0.1, 1, 0.1, attack_space)(state, batch)
    # equal up to float rounding (the loop body is compiled, FGSM here runs op by op)
    np.testing.assert_allclose(np.asarray(one_step), np.asarray(fgsm), rtol=1e-5, atol=1e-5)
    # Madry's α = 2.5 ε / steps with one step overshoots, and the projection makes it FGSM
    overshoot = pgd_logits_fn(space, 0.1, 1, madry_step_size(0.1, 1), attack_space)(state, batch)
    np.testing.assert_allclose(np.asarray(overshoot), np.asarray(fgsm), rtol=1e-5, atol=1e-5)
    # a smaller step is not FGSM
    assert not np.allclose(np.asarray(pgd_logits_fn(space, 0.1, 1, 0.05, attack_space)(
        state, batch)), np.asarray(fgsm), rtol=1e-3, atol=1e-3)


def test_pgd_on_a_linear_model_reaches_the_closed_form_optimum_from_a_random_start():
    """Two classes, logits W x + b: the loss falls with the margin m = (w_y − w_o)·x, so the
    worst point of the L∞ ball is x − ε·sign(w_y − w_o) whatever the start, with margin
    m − ε‖w_y − w_o‖₁; 10 steps of 0.25 ε reach it from anywhere in the ball."""
    rng = np.random.default_rng(2)
    weights = jnp.asarray(rng.normal(0.0, 0.3, (6, 2)), jnp.float32)
    bias = jnp.asarray([0.1, -0.2], jnp.float32)
    state = types.SimpleNamespace(apply_fn=lambda v, x, train: x.reshape(x.shape[0], -1)
                                  @ v["w"] + v["b"], variables=lambda: {"w": weights, "b": bias})
    space = InputSpace((0.5,), (0.25,))
    images = rng.integers(0, 256, (8, 1, 6, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, 8).astype(np.int32)
    epsilon = 0.2
    batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels),
             "start": jnp.asarray(rng.uniform(-1, 1, images.shape), jnp.float32)}
    logits = np.asarray(pgd_logits_fn(space, epsilon, 10, 0.25 * epsilon)(state, batch))
    x = ((images / 255.0 - 0.5) / 0.25).reshape(8, 6)
    w = np.asarray(weights, np.float64)
    difference = w[:, labels].T - w[:, 1 - labels].T  # w_y − w_other per example [8, 6]
    expected = (x - epsilon * np.sign(difference)) @ w + np.asarray(bias)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    margin = logits[np.arange(8), labels] - logits[np.arange(8), 1 - labels]
    clean = np.einsum("nf,nf->n", x, difference) + (np.asarray(bias)[labels]
                                                     - np.asarray(bias)[1 - labels])
    np.testing.assert_allclose(margin, clean - epsilon * np.abs(difference).sum(1), atol=1e-4)


def test_pgd_run_step_by_step_from_the_host_equals_the_single_function_with_its_start():
    """robustness runs PGD's steps from the host (on every device of the mesh); the iterates
    are those of `pgd_logits_fn`'s fori_loop from the same random start."""
    from mmix_jax import parallel
    from mmix_jax.data.pipeline import ArrayDataset
    from mmix_jax.evaluation.robustness import _Runner
    from mmix_jax.models.mlp import MLP
    from mmix_jax.optim import paper_sgd, step_schedule
    from mmix_jax.state import create_train_state

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (24, 4, 4, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 24).astype(np.int32)
    start = rng.uniform(-1, 1, images.shape).astype(np.float32)
    state = create_train_state(MLP(num_classes=3, widths=(16,), activation="tanh"),
                               paper_sgd(step_schedule(0.1, [], 0.1)), jax.random.key(0),
                               jnp.zeros((1, 4, 4, 1)))
    space = InputSpace((0.5,), (0.25,))
    mesh = parallel.make_mesh()
    runner = _Runner(state, space, 24 // 1, mesh, None)
    stepped = runner.pgd(ArrayDataset(images, labels), 5, 0.1, 0.04, "pixel",
                         extras={"start": start})
    whole = pgd_logits_fn(space, 0.1, 5, 0.04, "pixel")(
        state, {"image": jnp.asarray(images), "label": jnp.asarray(labels),
                "start": jnp.asarray(start)})
    np.testing.assert_allclose(stepped, np.asarray(whole), rtol=1e-5, atol=1e-6)
