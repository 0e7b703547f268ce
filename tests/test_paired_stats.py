"""The paired bootstrap against a case computable by hand, and verdicts where the answer is known."""
import numpy as np
import pytest

from paired_stats import bootstrap_means, complete_tags, last_third_slope, paired_bootstrap, verdict


def test_two_seeds_two_tags_by_hand():
    # diff[a, b] = 2a + b: a resample's mean is 2 * (share of seed 1) + (share of tag 1), each share 0, 1/2 or 1
    # with probability 1/4, 1/2, 1/4; so the means lie in {0, .5, ..., 3}, the extremes each with probability 1/16
    diff = np.array([[0., 1.], [2., 3.]])
    means = bootstrap_means(diff, n_resamples=20000, seed=1)
    assert set(np.round(means * 2).astype(int)) <= set(range(7))
    assert np.mean(means == 0) == pytest.approx(1 / 16, abs=0.006)
    assert np.mean(means == 3) == pytest.approx(1 / 16, abs=0.006)
    assert np.mean(means == 1.5) == pytest.approx(1 / 4, abs=0.01)  # only both shares 1/2: 1/2 * 1/2
    mean, low, high = paired_bootstrap(diff, n_resamples=20000, seed=1)
    assert (mean, low, high) == (1.5, 0.0, 3.0)


def test_constant_difference_has_a_zero_width_interval():
    mean, low, high = paired_bootstrap(np.full((5, 50), 0.02))
    assert mean == pytest.approx(0.02) and low == pytest.approx(0.02) and high == pytest.approx(0.02)


def test_known_verdicts():
    rng = np.random.default_rng(0)
    better = 0.05 + 0.02 * rng.standard_normal((5, 50))
    _, low, high = paired_bootstrap(better)
    assert low > 0 and verdict(low, high, +1) == 'reproduced' and verdict(low, high, -1) == 'opposite'
    noise = rng.standard_normal((5, 50))
    noise -= noise.mean()
    _, low, high = paired_bootstrap(noise)
    assert low < 0 < high and verdict(low, high, +1) == 'inconclusive'
    assert verdict(low, high, None) == 'no claim'


def test_same_seed_gives_the_same_interval_and_nan_tags_are_left_out():
    diff = np.random.default_rng(3).standard_normal((3, 10))
    diff[1, 4] = np.nan
    assert complete_tags(diff).shape == (3, 9)
    assert paired_bootstrap(diff, seed=7) == paired_bootstrap(diff, seed=7)
    assert paired_bootstrap(diff)[0] == pytest.approx(np.delete(diff, 4, axis=1).mean())


def test_last_third_slope():
    steps = np.arange(0, 301, 30)
    assert last_third_slope(steps, 0.1 + 0.002 * steps) == pytest.approx(2.0)
    assert last_third_slope(steps, np.minimum(steps, 150) / 1000) == pytest.approx(0.0, abs=1e-12)
    assert last_third_slope([10, 0], [0.2, 0.1]) == pytest.approx(10.0)  # two points: their slope
    assert last_third_slope([10], [0.1]) is None
