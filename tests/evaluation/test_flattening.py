"""The flattening measures against hand-computed values."""

import numpy as np
import pytest

from mmix_jax.evaluation.flattening import flattening, flattening_table, spectrum_measures


def test_a_two_by_two_class_by_hand():
    # [[3, 0], [0, 4]] has singular values 4 and 3
    measures = flattening(np.array([[3.0, 0.0], [0.0, 4.0]]), np.array([0, 0]), 1)
    shares = np.array([4.0, 3.0]) / 7.0
    assert measures["mean_first"] == pytest.approx(4.0)
    assert measures["mean_rest_sum"] == pytest.approx(3.0)
    assert measures["mean_first_share"] == pytest.approx(4.0 / 7.0)
    assert measures["mean_effective_rank"] == pytest.approx(np.exp(-np.sum(shares * np.log(shares))))


def test_a_rank_one_class_has_effective_rank_one_and_an_isotropic_one_d():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=6)
    rank_one = rng.uniform(1, 2, size=(40, 1)) * direction  # every example on one line
    measures = spectrum_measures(np.linalg.svd(rank_one, compute_uv=False))
    assert measures["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    assert measures["first_share"] == pytest.approx(1.0, abs=1e-6)
    assert measures["rest_sum"] == pytest.approx(0.0, abs=1e-6)
    # 6 orthogonal examples of equal norm: every singular value the same
    isotropic = 2.5 * np.linalg.qr(rng.normal(size=(6, 6)))[0]
    measures = spectrum_measures(np.linalg.svd(isotropic, compute_uv=False))
    assert measures["effective_rank"] == pytest.approx(6.0)
    assert measures["first_share"] == pytest.approx(1.0 / 6.0)
    # scale-free: the same class ×10 has the same share and effective rank, ×10 the sum
    scaled = spectrum_measures(np.linalg.svd(10 * isotropic, compute_uv=False))
    assert scaled["effective_rank"] == pytest.approx(6.0)
    assert scaled["rest_sum"] == pytest.approx(10 * measures["rest_sum"])


def test_centring_removes_the_mean_direction():
    """A class at mean m plus zero-mean spread along one direction orthogonal to m: uncentred,
    σ_1 is about ‖m‖√n; centred, only the spread is left (rank 1, σ = ‖spread‖)."""
    mean = np.array([10.0, 0.0, 0.0])
    spread = np.outer(np.array([1.0, -1.0, 2.0, -2.0]), [0.0, 1.0, 0.0])  # zero mean, along y
    members = mean + spread
    labels = np.zeros(4, int)
    uncentred = flattening(members, labels, 1)
    centred = flattening(members, labels, 1, centred=True)
    assert uncentred["mean_first"] == pytest.approx(np.linalg.norm(mean) * 2.0)  # √4 = 2
    assert centred["mean_first"] == pytest.approx(np.linalg.norm(spread))
    assert centred["mean_rest_sum"] == pytest.approx(0.0, abs=1e-9)
    assert centred["mean_effective_rank"] == pytest.approx(1.0)


def test_a_fixed_number_per_class_is_drawn_by_seed_and_checked():
    rng = np.random.default_rng(1)
    representations, labels = rng.normal(size=(300, 5)), np.repeat([0, 1, 2], 100)
    table = flattening_table(representations, labels, 3, per_class=50, seed=4)
    assert set(table) == {"all", "all_centred", "n50", "n50_centred"}
    again = flattening_table(representations, labels, 3, per_class=50, seed=4)["n50"]
    other = flattening_table(representations, labels, 3, per_class=50, seed=5)["n50"]
    assert again["mean_first"] == table["n50"]["mean_first"] != other["mean_first"]
    # 50 of 100 Gaussian rows: the singular values shrink by about √2 against all 100
    assert table["n50"]["mean_first"] == pytest.approx(table["all"]["mean_first"] / np.sqrt(2),
                                                       rel=0.15)
    with pytest.raises(ValueError, match="class 0 has 100 examples, fewer than per_class = 200"):
        flattening(representations, labels, 3, per_class=200)
