"""Metrics on hand-computed accuracy matrices."""
import math

import numpy as np
import pytest

from forgetbench.benchmarks import metrics

# T = 3. Row 0 untrained; row i after training experiences 0..i-1.
R = np.array([
    [0.10, 0.20, 0.30],
    [0.90, 0.40, 0.25],
    [0.70, 0.80, 0.35],
    [0.50, 0.60, 0.90],
])


def test_average_accuracy():
    assert metrics.average_accuracy(R) == pytest.approx((0.5 + 0.6 + 0.9) / 3)


def test_average_incremental_accuracy_averages_accuracy_on_what_was_seen_so_far():
    # after e0: 0.9; after e1: (0.7+0.8)/2 = 0.75; after e2: (0.5+0.6+0.9)/3 = 2/3
    np.testing.assert_allclose(metrics.seen_accuracy(R), [0.9, 0.75, 2 / 3])
    assert metrics.average_incremental_accuracy(R) == pytest.approx((0.9 + 0.75 + 2 / 3) / 3)
    assert metrics.summarize(R)["avg_inc_acc"] == pytest.approx((0.9 + 0.75 + 2 / 3) / 3)


def test_backward_transfer():
    # (R[3,0]-R[1,0] + R[3,1]-R[2,1]) / 2 = (-0.4 - 0.2) / 2
    assert metrics.backward_transfer(R) == pytest.approx(-0.3)


def test_forward_transfer():
    # (R[1,1]-R[0,1] + R[2,2]-R[0,2]) / 2 = (0.2 + 0.05) / 2
    assert metrics.forward_transfer(R) == pytest.approx(0.125)


def test_forgetting_uses_the_best_accuracy_after_learning():
    # exp 0: max(0.9, 0.7) - 0.5 = 0.4 ; exp 1: max(0.8) - 0.6 = 0.2
    np.testing.assert_allclose(metrics.forgetting_per_experience(R), [0.4, 0.2])
    assert metrics.average_forgetting(R) == pytest.approx(0.3)


def test_forgetting_differs_from_bwt_when_accuracy_peaks_later():
    R2 = np.array([[0, 0], [0.5, 0], [0.8, 0.9]], dtype=float)
    R3 = np.array([[0, 0, 0], [0.5, 0, 0], [0.9, 0.7, 0], [0.6, 0.7, 0.8]], dtype=float)
    assert metrics.average_forgetting(R3) == pytest.approx(((0.9 - 0.6) + 0.0) / 2)
    assert metrics.backward_transfer(R3) == pytest.approx(((0.6 - 0.5) + 0.0) / 2)
    assert metrics.average_forgetting(R2) == pytest.approx(-0.3)  # improved later: negative forgetting


def test_learning_accuracy_and_intransigence():
    np.testing.assert_allclose(metrics.learning_accuracy(R), [0.9, 0.8, 0.9])
    reference = [0.95, 0.9, 0.92]
    assert metrics.intransigence(R, reference) == pytest.approx((0.05 + 0.1 + 0.02) / 3)
    assert math.isnan(metrics.intransigence(R, None))
    with pytest.raises(ValueError, match="one accuracy per experience"):
        metrics.intransigence(R, [0.9])


def test_single_experience_has_no_transfer_or_forgetting():
    R1 = np.array([[0.1], [0.95]])
    s = metrics.summarize(R1)
    assert s["acc"] == pytest.approx(0.95)
    assert s["learning_acc"] == pytest.approx(0.95)
    assert all(math.isnan(s[k]) for k in ("bwt", "fwt", "forgetting", "intransigence"))


def test_joint_matrix_with_missing_rows_reports_nan_not_guesses():
    J = np.full((4, 3), np.nan)
    J[0] = [0.1, 0.1, 0.1]
    J[3] = [0.9, 0.8, 0.7]
    s = metrics.summarize(J)
    assert s["acc"] == pytest.approx(0.8)
    assert all(math.isnan(s[k]) for k in ("bwt", "fwt", "forgetting", "learning_acc", "avg_inc_acc"))


def test_task_il_matrix():
    # multi-head: little forgetting, chance level 0.5 in row 0
    TIL = np.array([[0.5, 0.5], [0.99, 0.6], [0.97, 0.98]])
    s = metrics.summarize(TIL)
    assert s["acc"] == pytest.approx(0.975)
    assert s["bwt"] == pytest.approx(-0.02)
    assert s["fwt"] == pytest.approx(0.1)
    assert s["forgetting"] == pytest.approx(0.02)


def test_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(T\+1\) x T"):
        metrics.average_accuracy(np.zeros((3, 3)))
