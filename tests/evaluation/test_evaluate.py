"""Evaluation metrics against hand-computed values: NLL, ECE, FGSM, class spectra."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mmix_jax import parallel
from mmix_jax.data.datasets import ArrayDataset
from mmix_jax.evaluation.evaluate import (
    EvalSettings,
    InputSpace,
    class_spectra,
    classification_metrics,
    expected_calibration_error,
    full_evaluation,
    per_example_step,
)
from mmix_jax.state import create_train_state


def test_nll_and_accuracy_by_hand():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.25, 0.25, 0.5]])
    labels = np.array([0, 2, 2])
    metrics = classification_metrics(np.log(probabilities) + 3.0, labels)  # shift: same softmax
    assert metrics["nll"] == pytest.approx(-(np.log(0.7) + np.log(0.2) + np.log(0.5)) / 3)
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["error_percent"] == pytest.approx(100 / 3)


def test_ece_by_hand():
    # Confidences 0.9, 0.9 (one right, one wrong) → bin (13/15, 14/15]: |0.5 − 0.9| = 0.4;
    # 0.6 right → bin (8/15, 9/15]: |1 − 0.6| = 0.4; 0.55 wrong → bin (8/15, 9/15] too.
    # Bin (8/15, 9/15] holds 0.6 (right) and 0.55 (wrong): |0.5 − 0.575| = 0.075.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 1])
    expected = 2 / 4 * 0.4 + 2 / 4 * 0.075
    assert expected_calibration_error(probabilities, labels, 15) == pytest.approx(expected)
    # A perfectly calibrated set: confidence 0.75 with 3 of 4 right.
    calibrated = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(calibrated, np.array([0, 0, 0, 1]), 15) == pytest.approx(0)


def test_ece_bin_edges_are_right_closed():
    # 2/3 = 10/15 exactly is the top of bin (9/15, 10/15]; 0.7 is in the next bin.
    probabilities = np.array([[2 / 3, 1 / 3], [0.7, 0.3]])
    labels = np.array([0, 1])
    # Separate bins: 1/2·|1 − 2/3| + 1/2·|0 − 0.7|; one bin would give |0.5 − 0.6833|.
    assert expected_calibration_error(probabilities, labels, 15) == pytest.approx(
        0.5 * (1 / 3) + 0.5 * 0.7)


class Linear(nn.Module):
    """logits = x @ W, no bias, for hand-computable gradients."""

    @nn.compact
    def __call__(self, x, *, train, mix_layer=None, perm=None, lam=None):
        del train, mix_layer, perm, lam
        kernel = self.param("kernel", nn.initializers.zeros, (x.reshape(x.shape[0], -1).shape[1], 2))
        return x.reshape(x.shape[0], -1).astype(jnp.float32) @ kernel


def linear_state(kernel, example):
    state = create_train_state(Linear(), optax.sgd(0.1), jax.random.key(0), example)
    return state.replace(params={"kernel": jnp.asarray(kernel, jnp.float32)})


def test_fgsm_by_hand_on_a_linear_model():
    # logits = (x0, x1). For label 0, ∇_x NLL = p1·(w1 − w0) = p1·(−1, +1): the attack moves
    # x by ε·(−1, +1). (0.6, 0.5) → (0.4, 0.7): flipped; (0.9, 0.1) → (0.7, 0.3): still right.
    kernel = [[1.0, 0.0], [0.0, 1.0]]
    images = np.array([[0.6, 0.5], [0.9, 0.1], [0.2, 0.9]], np.float32)
    labels = np.array([0, 0, 1], np.int32)  # the third: label 1, moved by (+1, −1)·ε
    state = linear_state(kernel, jnp.asarray(images))
    mesh = parallel.make_mesh(jax.devices()[:1])
    per_example_step.cache_clear()  # other tests in this process may have built it for theirs
    results = full_evaluation(state, ArrayDataset(images, labels), InputSpace(),
                              EvalSettings(fgsm_epsilon=0.2), 3, mesh, 2)
    # Clean: all three right. Attacked: (0.4, 0.7) wrong, (0.7, 0.3) right, (0.4, 0.7) right.
    assert results["accuracy"] == 1.0
    assert results["fgsm_accuracy"] == pytest.approx(2 / 3)
    results = full_evaluation(state, ArrayDataset(images, labels), InputSpace(),
                              EvalSettings(fgsm_epsilon=0.45), 3, mesh, 2)
    # ε = 0.45: (0.15, 0.95) wrong, (0.45, 0.55) wrong, (0.65, 0.45) wrong.
    assert results["fgsm_accuracy"] == 0.0
    # The clean-logits function was built once and reused by the second evaluation.
    assert per_example_step(mesh, "logits", InputSpace()) is per_example_step(
        mesh, "logits", InputSpace())
    assert per_example_step(mesh, "logits", InputSpace())._cache_size() == 1


def test_fgsm_in_pixel_space_goes_through_normalisation_and_clips():
    # uint8 pixels (255, 0) with mean 0.5, std 0.25: model input ((1−.5)/.25, (0−.5)/.25) =
    # (2, −2), label 0 right. The attack pushes pixel 0 down and pixel 1 up by ε = 0.3 (in
    # [0, 1] units): (0.7, 0.3) → inputs (0.8, −0.8), still right; with ε = 0.6: (0.4, 0.6) →
    # (−0.4, 0.4), wrong. Pushing 255 up or 0 down would be clipped: label 1 image (255, 0)
    # moves to (1, 0) clipped, i.e. unchanged, and stays wrong for label 1.
    kernel = [[1.0, 0.0], [0.0, 1.0]]
    images = np.array([[[[255]], [[0]]]], np.uint8).reshape(1, 2, 1, 1)
    space = InputSpace(mean=(0.5,), std=(0.25,))
    state = linear_state(kernel, jnp.zeros((1, 2, 1, 1), jnp.float32))
    mesh = parallel.make_mesh(jax.devices()[:1])
    right = ArrayDataset(images, np.array([0], np.int32))
    pixel = dict(fgsm_space="pixel")
    assert full_evaluation(state, right, space, EvalSettings(fgsm_epsilon=0.3, **pixel), 1, mesh,
                           2)["fgsm_accuracy"] == 1.0
    results = full_evaluation(state, right, space, EvalSettings(fgsm_epsilon=0.6, **pixel), 1,
                              mesh, 2)
    assert results["fgsm_accuracy"] == 0.0
    assert (results["fgsm_epsilon"], results["fgsm_space"]) == (0.6, "pixel")
    from mmix_jax.evaluation.evaluate import fgsm_logits_fn
    wrong = {"image": jnp.asarray(images), "label": jnp.array([1], jnp.int32)}
    logits = fgsm_logits_fn(space, 0.3, "pixel")(state, wrong)
    np.testing.assert_allclose(np.asarray(logits), [[2.0, -2.0]], atol=1e-6)  # clipped: no move


def test_fgsm_in_normalized_space_is_a_plain_unclipped_step_on_the_model_input():
    # The authors' attack: the same image, model input (2, −2). Label 0: the step moves the
    # input by ε·(−1, +1): ε = 1 → (1, −1) right; ε = 2.5 → (−0.5, 0.5) wrong. So ε = 0.3 in
    # pixel units (0.3 / std = 1.2 here) is 4× stronger than ε = 0.3 in normalised units.
    # Label 1: moved by ε·(+1, −1) past the pixel range, never clipped: (3, −3) at ε = 1.
    kernel = [[1.0, 0.0], [0.0, 1.0]]
    images = np.array([255, 0], np.uint8).reshape(1, 2, 1, 1)
    space = InputSpace(mean=(0.5,), std=(0.25,))
    state = linear_state(kernel, jnp.zeros((1, 2, 1, 1), jnp.float32))
    mesh = parallel.make_mesh(jax.devices()[:1])
    right = ArrayDataset(images, np.array([0], np.int32))
    for epsilon, accuracy in ((1.0, 1.0), (2.5, 0.0)):
        results = full_evaluation(state, right, space, EvalSettings(fgsm_epsilon=epsilon), 1,
                                  mesh, 2)
        assert results["fgsm_accuracy"] == accuracy
        assert results["fgsm_space"] == "normalized"
    from mmix_jax.evaluation.evaluate import fgsm_logits_fn
    wrong = {"image": jnp.asarray(images), "label": jnp.array([1], jnp.int32)}
    logits = fgsm_logits_fn(space, 1.0, "normalized")(state, wrong)
    np.testing.assert_allclose(np.asarray(logits), [[3.0, -3.0]], atol=1e-6)
    with pytest.raises(ValueError, match="FGSM space 'input'"):
        fgsm_logits_fn(space, 1.0, "input")


def test_spectrum_of_representations_with_known_rank():
    rng = np.random.default_rng(0)
    # Class 0: rank 1, u vᵀ with |u| = 3, |v| = 2 → singular values (6, 0, ...).
    u = rng.standard_normal(20)
    u *= 3 / np.linalg.norm(u)
    v = rng.standard_normal(8)
    v *= 2 / np.linalg.norm(v)
    class0 = np.outer(u, v)
    # Class 1: rank 2 with orthonormal factors: singular values (5, 1.5, 0, ...).
    q_left, _ = np.linalg.qr(rng.standard_normal((30, 2)))
    q_right, _ = np.linalg.qr(rng.standard_normal((8, 2)))
    class1 = q_left @ np.diag([5.0, 1.5]) @ q_right.T
    representations = np.concatenate([class0, class1]).reshape(50, 2, 4)  # flattened inside
    labels = np.array([0] * 20 + [1] * 30)
    spectra = class_spectra(representations, labels, num_classes=2)
    assert spectra["first"] == pytest.approx([6.0, 5.0])
    assert spectra["rest_sum"] == pytest.approx([0.0, 1.5], abs=1e-9)
    assert spectra["mean_first"] == pytest.approx(5.5)
    assert spectra["mean_rest_sum"] == pytest.approx(0.75)


def test_spectrum_reads_the_bottleneck_of_an_mlp():
    from mmix_jax.models import get_model
    model = get_model("mlp", num_classes=3, widths=(16, 16), bottleneck=2, bottleneck_position=1)
    images = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    labels = np.arange(12, dtype=np.int32) % 3
    state = create_train_state(model, optax.sgd(0.1), jax.random.key(0), jnp.asarray(images))
    mesh = parallel.make_mesh(jax.devices()[:1])
    results = full_evaluation(state, ArrayDataset(images, labels), InputSpace(),
                              EvalSettings(spectrum_point=model.bottleneck_point), 4, mesh, 3)
    # 2 features at the bottleneck: every class matrix [4, 2] has exactly 2 singular values.
    assert [len(v) for v in results["spectrum"]["singular_values"]] == [2, 2, 2]


def test_fgsm_lowers_the_accuracy_of_a_trained_erm_model(tmp_path):
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "configs"))
    import default  # noqa: E402

    from mmix_jax.data.datasets import load_dataset
    from mmix_jax.harness.configuration import run_spec
    from mmix_jax.harness.train import train_and_evaluate

    config = default.get_config("erm")
    config.variants = {}
    config.num_epochs, config.optimizer.milestones = 30, (20, 25)
    config.checkpoint.every_epochs = 30
    spec = run_spec(config)
    splits = load_dataset(spec.data, spec.seed)
    state = train_and_evaluate(spec, tmp_path, splits).state
    mesh = parallel.make_mesh()
    results = full_evaluation(state, splits.test, InputSpace(), EvalSettings(fgsm_epsilon=0.1),
                              1000, mesh, 2)
    assert results["accuracy"] > 0.95
    assert results["fgsm_accuracy"] < results["accuracy"] - 0.1
