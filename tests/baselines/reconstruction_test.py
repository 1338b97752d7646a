"""eb_tf.baselines.reconstruction: ThiNet's greedy removal and least-squares rescaling."""
import itertools

import numpy as np
import pytest

from eb_tf.baselines import reconstruction


def _brute_force(x, count):
    """The removal set of `count` channels with the smallest error, by enumeration."""
    subsets = itertools.combinations(range(x.shape[1]), count)
    return min(subsets, key=lambda r: reconstruction.reconstruction_error(x, r))


def test_error_is_the_squared_sum_of_the_removed_contributions():
    x = np.array([[1.0, -1.0, 2.0], [0.5, 0.5, 0.0]])
    assert reconstruction.reconstruction_error(x, []) == 0.0
    assert reconstruction.reconstruction_error(x, [0, 1]) == pytest.approx(0.0 + 1.0)
    assert reconstruction.reconstruction_error(x, [2]) == pytest.approx(4.0)


@pytest.mark.parametrize("seed", range(5))
def test_greedy_removal_of_one_channel_is_the_brute_force_optimum(seed):
    x = np.random.default_rng(seed).normal(size=(50, 7))
    assert reconstruction.greedy_removal(x, 1) == list(_brute_force(x, 1))


@pytest.mark.parametrize("count", range(6))
def test_greedy_removal_is_optimal_for_uncorrelated_contributions(count):
    """Orthogonal columns: E(R) = sum of |X_c|^2, so the greedy choice is optimal."""
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(40, 6)))[0]
    x = q * np.array([3.0, 0.5, 2.0, 0.1, 1.0, 4.0])
    assert sorted(reconstruction.greedy_removal(x, count)) == sorted(_brute_force(x, count))


def test_greedy_removal_finds_a_cancelling_channel():
    """Channel 2 cancels channel 0: after removing 0 (smallest alone), 2 costs nothing."""
    x = np.array([[1.0, 2.0, -1.0, 3.0], [1.0, -2.0, -1.0, 3.0]])
    assert reconstruction.greedy_removal(x, 2) == [0, 2]
    assert reconstruction.reconstruction_error(x, [0, 2]) == 0.0
    assert tuple(sorted(reconstruction.greedy_removal(x, 2))) == _brute_force(x, 2)


def test_least_squares_scales_reduce_the_error_and_recover_a_dependent_channel():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(100, 3))
    # channel 3 is 2 x channel 0: removing it is undone exactly by scaling channel 0 by 3
    x = np.concatenate([base, 2 * base[:, :1]], axis=1)
    keep = np.array([True, True, True, False])
    scales = reconstruction.least_squares_scales(x, keep)
    np.testing.assert_allclose(scales, [3.0, 1.0, 1.0, 1.0], rtol=1e-5)
    noisy = x + 0.3 * rng.normal(size=x.shape)
    scales = reconstruction.least_squares_scales(noisy, keep).astype(np.float64)
    y = noisy.sum(axis=1)
    assert np.sum((y - noisy[:, keep] @ scales[keep]) ** 2) < \
        reconstruction.reconstruction_error(noisy, [3])


def test_least_squares_leaves_all_zero_channels_at_one():
    x = np.array([[1.0, 0.0, 1.0], [2.0, 0.0, 0.0]])
    assert reconstruction.least_squares_scales(x, [True, True, False])[1] == 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: reconstruction.greedy_removal(np.ones((2, 3)), 3),
     r"count=3 must be an int in \[0, 3\)"),
    (lambda: reconstruction.greedy_removal(np.ones((2, 3)), -1), r"count=-1 must be"),
    (lambda: reconstruction.greedy_removal(np.ones(3), 1), r"must be a finite 2-D array"),
    (lambda: reconstruction.greedy_removal([[np.nan, 1.0]], 1), r"must be a finite 2-D array"),
    (lambda: reconstruction.least_squares_scales(np.ones((2, 3)), [False] * 3),
     r"keeping at least one"),
    (lambda: reconstruction.least_squares_scales(np.ones((2, 3)), [True]), r"of the 3 channels"),
])
def test_bad_input_names_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()
