"""Mean and Student-t confidence interval over seeds; paired differences between two strategies.

The t quantile is the inverse of the t CDF, found by bisection; the CDF comes from the
regularized incomplete beta function, evaluated by its continued fraction (Numerical Recipes
in C, 2nd ed., section 6.4), accurate to ~1e-12 for the degrees of freedom used here. Every interval
(a leaderboard cell, a reproduction row, a paired difference) comes from :func:`mean_ci`; only the
paired t-test's p-value comes from scipy (``scipy.stats.ttest_rel``).
"""
from __future__ import annotations

import math
import warnings


def _beta_continued_fraction(a: float, b: float, x: float, eps: float = 1e-15, max_terms: int = 500) -> float:
    """Continued fraction of I_x(a, b), modified Lentz's method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_terms + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast here; else use symmetry
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(p: float, df: float, tol: float = 1e-12) -> float:
    """The p-quantile of Student's t (inverse CDF), by bisection."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_ppf(1.0 - p, df, tol)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width of the two-sided Student-t interval, n) over the non-NaN values.

    The half-width is t_{(1+confidence)/2, n-1} * s / sqrt(n), s the sample standard deviation;
    NaN when n < 2 (and the mean is NaN when n = 0).
    """
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, math.nan, n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, t_ppf((1.0 + confidence) / 2.0, n - 1) * sd / math.sqrt(n), n


def _number(value) -> float:
    """``value`` as a float; NaN for None or NaN."""
    return math.nan if value is None else float(value)


def paired_difference(a, b, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """(mean of a_i - b_i, half-width of its two-sided Student-t interval, two-sided paired t-test p-value,
    n pairs) over the pairs where both values exist (the i-th of ``a`` and of ``b``: the same seed).

    The interval is :func:`mean_ci` of the differences, t_{(1+confidence)/2, n-1} * s_d / sqrt(n); the
    p-value is ``scipy.stats.ttest_rel(a, b).pvalue`` (t = mean / (s_d / sqrt(n)), n - 1 degrees of freedom).
    Half-width and p are NaN when n < 2; when every difference is the same, the half-width is 0 and p is
    0 (a nonzero difference) or NaN (all zero), as scipy gives them.
    """
    pairs = [(x, y) for x, y in zip(map(_number, a), map(_number, b)) if not (math.isnan(x) or math.isnan(y))]
    mean, half, n = mean_ci([x - y for x, y in pairs], confidence)
    if n < 2:
        return mean, math.nan, math.nan, n
    from scipy.stats import ttest_rel  # imported when a p-value is asked for: scipy is slow to import

    with warnings.catch_warnings():  # identical differences: scipy warns, then divides by zero
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_rel([x for x, _ in pairs], [y for _, y in pairs]).pvalue)
    return mean, half, p, n
