"""metrics.trend: effect versus compute, its crossing of the claim's threshold, and the verdict."""
import numpy as np
import pytest

from memlab.metrics.trend import AGREES, FAILS, HOLDS, effect_trend


def test_an_exact_log_linear_trend_is_recovered_with_its_crossing():
    x = np.array([10, 20, 40, 80])
    y = 0.05 + 0.1 * np.log2(x / 10)   # +0.1 per doubling from 0.05 at 10 epochs
    t = effect_trend(x, y, np.full(4, 0.01), threshold=0.45, passed_at_max=False)
    assert t.slope == pytest.approx(0.1) and t.intercept == pytest.approx(0.05 - 0.1 * np.log2(10))
    assert t.crossing == pytest.approx(10 * 2 ** 4)   # 0.05 + 0.1 * 4 = 0.45 at 160 epochs
    assert t.verdict == AGREES and t.slope_p < 1e-6
    assert "2.0x the largest point" in t.describe()
    fit, lo, hi = t.fitted([160])
    assert fit[0] == pytest.approx(0.45) and lo[0] < 0.45 < hi[0]


def test_a_claim_that_passes_at_the_largest_point_holds():
    t = effect_trend([1, 2, 4], [0.1, 0.2, 0.3], [0.05, 0.05, 0.05], threshold=0.25, passed_at_max=True)
    assert t.verdict == HOLDS and t.crossing == pytest.approx(2 ** 1.5)   # 0.1 + 0.1 log2 x = 0.25


def test_a_flat_noisy_or_reversed_trend_fails():
    flat = effect_trend([5, 10, 20], [0.02, -0.01, 0.01], [0.05, 0.05, 0.05], threshold=0.3, passed_at_max=False)
    assert flat.verdict == FAILS and flat.slope_p > 0.05
    down = effect_trend([5, 10, 20], [0.3, 0.2, 0.1], [0.01] * 3, threshold=0.5, passed_at_max=False)
    assert down.verdict == FAILS and down.crossing is None and "points away" in down.describe()
    # nearly flat upwards: 0.01 per doubling from 0 at 5 epochs needs 2^30 x 5 epochs for 0.3
    slow = effect_trend([5, 10, 20], [0.0, 0.01, 0.02], [0.05] * 3, threshold=0.3, passed_at_max=False)
    assert slow.crossing == pytest.approx(5 * 2 ** 30) and "only beyond 1000x the largest point" in slow.describe()
    # already past the threshold everywhere (0.1 to 0.3 against 0): the crossing lies before the first point
    past = effect_trend([1, 2, 4], [0.1, 0.2, 0.3], [0.05] * 3, threshold=0.0, passed_at_max=False)
    assert past.crossing == pytest.approx(0.5) and "past 0 over the whole range" in past.describe()


def test_direction_minus_one_wants_the_statistic_below_the_threshold():
    t = effect_trend([1, 2, 4], [0.0, -0.1, -0.2], [0.01] * 3, threshold=-0.4, direction=-1, passed_at_max=False)
    assert t.verdict == AGREES and t.crossing == pytest.approx(16)


def test_bad_input_is_refused_before_fitting():
    with pytest.raises(ValueError, match="at least 3"):
        effect_trend([1, 2], [0, 1], [1, 1], threshold=0, passed_at_max=False)
    with pytest.raises(ValueError, match="distinct"):
        effect_trend([1, 1, 2], [0, 1, 2], [1, 1, 1], threshold=0, passed_at_max=False)
    with pytest.raises(ValueError, match="se > 0"):
        effect_trend([1, 2, 3], [0, 1, 2], [1, 0, 1], threshold=0, passed_at_max=False)
