"""The low-density measure of 2-D boundaries, and the moons' Bayes classifier it is read against."""

import numpy as np
import pytest

from mmix_jax.data.datasets import two_moons, two_moons_log_odds
from mmix_jax.evaluation.separation import boundary_points, nearest_distance, share_near_boundary

AXIS = np.linspace(-1.0, 1.0, 101, dtype=np.float32)  # spacing 0.02
GRID = np.stack(np.meshgrid(AXIS, AXIS), axis=-1).reshape(-1, 2)


def test_a_vertical_boundary_is_found_where_the_class_changes_and_measured_by_hand():
    """Class 1 right of x = 0.3: the boundary points lie on the vertical line midway between
    the grid columns 0.30 and 0.32 (x = 0.31), one per grid row; distances are |x − 0.31|."""
    classes = (GRID[:, 0] > 0.305).astype(np.int32)
    boundary = boundary_points(AXIS, classes)
    assert boundary.shape == (AXIS.size, 2)
    np.testing.assert_allclose(boundary[:, 0], 0.31, atol=1e-6)
    np.testing.assert_allclose(np.sort(boundary[:, 1]), AXIS, atol=1e-6)
    points = np.array([[0.26, 0.0], [0.39, 0.5], [0.51, -0.2], [-0.5, 0.9]], np.float32)
    np.testing.assert_allclose(nearest_distance(points, boundary), [0.05, 0.08, 0.2, 0.81],
                               atol=1e-5)
    assert share_near_boundary(points, AXIS, classes, radius=0.1) == 0.5
    assert share_near_boundary(points, AXIS, classes, radius=0.25) == 0.75


def test_a_circular_boundary_is_within_half_a_grid_step_of_the_circle():
    """Class 1 inside radius 0.5: every boundary point is within half the grid spacing of the
    circle, and a point at the centre is 0.5 from the boundary."""
    classes = (np.linalg.norm(GRID, axis=1) < 0.5).astype(np.int32)
    boundary = boundary_points(AXIS, classes)
    assert np.abs(np.linalg.norm(boundary, axis=1) - 0.5).max() <= 0.01 + 1e-6
    assert nearest_distance(np.zeros((1, 2), np.float32), boundary)[0] == pytest.approx(
        0.5, abs=0.01)


def test_a_single_class_has_no_boundary_and_no_point_near_it():
    classes = np.zeros(GRID.shape[0], np.int32)
    assert boundary_points(AXIS, classes).shape == (0, 2)
    assert share_near_boundary(GRID[:10], AXIS, classes) == 0.0


def test_the_moons_bayes_classifier_is_antisymmetric_and_picks_the_nearer_arc():
    """Class 1 is class 0 reflected through the origin, so the log-odds are odd. With little
    noise the likelier class is the one whose arc is nearer (distances computed here from the
    arcs' geometry), wherever the two distances differ clearly."""
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.6, 1.6, (400, 2))
    np.testing.assert_allclose(two_moons_log_odds(-points, noise=0.1),
                               -two_moons_log_odds(points, noise=0.1), atol=1e-9)
    angle = np.linspace(0.0, np.pi, 4001)
    upper = np.stack([np.cos(angle) - 0.5, np.sin(angle) - 0.25], axis=1)
    to_upper = np.linalg.norm(points[:, None] - upper[None], axis=-1).min(1)
    to_lower = np.linalg.norm(points[:, None] + upper[None], axis=-1).min(1)
    clear = np.abs(to_upper - to_lower) > 0.05
    assert clear.sum() > 300
    np.testing.assert_array_equal(two_moons_log_odds(points[clear], noise=0.03) > 0,
                                  to_lower[clear] < to_upper[clear])
    with pytest.raises(ValueError, match="noise must be > 0"):
        two_moons_log_odds(points, noise=0.0)


def test_the_moons_bayes_boundary_runs_in_the_gap():
    """The Bayes classifier of noise-0.1 moons is nearly always right, and its boundary passes
    within one noise σ of few points (the arcs are 0.5 apart, 2.5 σ either side of the gap),
    while a straight boundary through the middle passes near many more."""
    data = two_moons(2000, noise=0.1, seed=4)
    axis = np.linspace(-1.6, 1.6, 161, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    assert np.mean((two_moons_log_odds(data.images, noise=0.1) > 0) == data.labels) > 0.99
    bayes = share_near_boundary(data.images, axis, two_moons_log_odds(grid, noise=0.1) > 0)
    straight = share_near_boundary(data.images, axis, grid[:, 1] < 0)
    assert bayes < 0.03 and straight > 3 * bayes
