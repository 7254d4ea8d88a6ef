"""Student-t quantiles and confidence intervals (scipy-free), and the paired difference of two strategies."""
import math

import pytest

from forgetbench.benchmarks.stats import betainc, mean_ci, paired_difference, t_cdf, t_ppf

# Two-sided 95% critical values t_{0.975, df} from standard tables.
T_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 9: 2.2622, 19: 2.0930, 30: 2.0423, 120: 1.9799}


@pytest.mark.parametrize("df, expected", sorted(T_975.items()))
def test_t_quantile_matches_tables(df, expected):
    assert t_ppf(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_ppf(0.025, df) == pytest.approx(-expected, abs=1e-4)


def test_t_cdf_closed_forms():
    # df = 1 is the Cauchy distribution; df = 2 has F(t) = 1/2 + t / (2 sqrt(t^2 + 2)).
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)), abs=1e-12)


def test_betainc_closed_form():
    # I_x(a, 1) = x^a and I_x(1, b) = 1 - (1 - x)^b
    assert betainc(2.5, 1.0, 0.3) == pytest.approx(0.3 ** 2.5, abs=1e-12)
    assert betainc(1.0, 3.0, 0.4) == pytest.approx(1 - 0.6 ** 3, abs=1e-12)


def test_mean_ci_by_hand():
    # values 0.5, 0.6, 0.7: mean 0.6, s = 0.1, half-width = t_{0.975,2} * 0.1 / sqrt(3) = 4.302653 * 0.057735
    mean, half, n = mean_ci([0.5, 0.6, 0.7])
    assert (mean, n) == (pytest.approx(0.6), 3)
    assert half == pytest.approx(0.248414, abs=1e-6)


def test_mean_ci_edge_cases():
    assert mean_ci([0.4, float("nan"), None]) == (0.4, pytest.approx(float("nan"), nan_ok=True), 1)
    mean, half, n = mean_ci([])
    assert n == 0 and math.isnan(mean) and math.isnan(half)


def test_paired_difference_by_hand_and_against_scipy():
    from scipy import stats

    a, b = [0.9, 0.8, 0.85], [0.5, 0.6, 0.55]
    # differences 0.4, 0.2, 0.3: mean 0.3, s_d = 0.1, se = 0.1 / sqrt(3), t = 0.3 / se = 5.196152 on 2 df;
    # half-width t_{0.975,2} * se = 4.302653 * 0.057735; p = 1 - t / sqrt(t^2 + 2) (the df = 2 CDF, closed form)
    mean, half, p, n = paired_difference(a, b)
    t = 0.3 / (0.1 / math.sqrt(3))
    assert (mean, n) == (pytest.approx(0.3), 3)
    assert half == pytest.approx(0.248414, abs=1e-6)
    assert p == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-9) == pytest.approx(0.035099, abs=1e-6)
    assert p == pytest.approx(stats.ttest_rel(a, b).pvalue, abs=1e-12)
    low, high = stats.t.interval(0.95, 2, loc=0.3, scale=stats.sem([0.4, 0.2, 0.3]))
    assert (mean - half, mean + half) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))


def test_paired_difference_edge_cases():
    # a pair with a missing value is dropped; one pair left: no interval, no p-value
    mean, half, p, n = paired_difference([0.9, float("nan"), 0.7], [0.5, 0.6, None])
    assert (mean, n) == (pytest.approx(0.4), 1) and math.isnan(half) and math.isnan(p)
    mean, half, p, n = paired_difference([], [])
    assert n == 0 and math.isnan(mean) and math.isnan(half) and math.isnan(p)
    assert paired_difference([0.75, 0.5], [0.5, 0.25])[1:3] == (0.0, 0.0)  # the same difference: p = 0 (as scipy)
    assert math.isnan(paired_difference([0.6, 0.7], [0.6, 0.7])[2])  # all zero: no test (as scipy)
    assert paired_difference([0.5, 0.6, 0.55], [0.9, 0.8, 0.85])[0] == pytest.approx(-0.3)  # a - b, signed
