"""Continual-learning metrics: pure functions of the accuracy matrix.

``R`` has shape (T+1) x T. Row 0 is the untrained model; row i (1..T) is the model after
training on experiences 0..i-1; column j is the test split of experience j. So ``R[j+1, j]``
is the accuracy on experience j just after learning it and ``R[T, j]`` at the end. Rows the
protocol did not produce (e.g. joint training has only rows 0 and T) are NaN, and every
metric that needs them is NaN: never guessed.
"""
from __future__ import annotations

import numpy as np


def _matrix(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] + 1:
        raise ValueError(f"accuracy matrix must be (T+1) x T, got shape {R.shape}")
    return R


def _mean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size and not np.isnan(values).any() else float("nan")


def average_accuracy(R) -> float:
    """ACC = 1/T sum_j R[T, j]: mean final accuracy over all experiences."""
    R = _matrix(R)
    return _mean(R[-1])


def learning_accuracy(R) -> np.ndarray:
    """LA_j = R[j+1, j]: accuracy on experience j right after learning it."""
    R = _matrix(R)
    T = R.shape[1]
    return np.array([R[j + 1, j] for j in range(T)])


def seen_accuracy(R) -> np.ndarray:
    """A_i = 1/i sum_{j<i} R[i, j] for i = 1..T: mean accuracy on the experiences seen so far, after
    each one (NaN where the row is missing)."""
    R = _matrix(R)
    return np.array([R[i, :i].mean() for i in range(1, R.shape[0])])


def average_incremental_accuracy(R) -> float:
    """Average incremental accuracy = 1/T sum_i A_i (Rebuffi et al. 2017, iCaRL): the mean over the
    whole stream of the accuracy on what has been seen so far (:func:`seen_accuracy`)."""
    return _mean(seen_accuracy(R))


def backward_transfer(R) -> float:
    """BWT = 1/(T-1) sum_{j<T-1} (R[T, j] - R[j+1, j]) (Lopez-Paz & Ranzato 2017); negative = forgetting."""
    R = _matrix(R)
    T = R.shape[1]
    return _mean([R[T, j] - R[j + 1, j] for j in range(T - 1)])


def forward_transfer(R) -> float:
    """FWT = 1/(T-1) sum_{j>0} (R[j, j] - R[0, j]): accuracy on j before learning it, vs untrained."""
    R = _matrix(R)
    T = R.shape[1]
    return _mean([R[j, j] - R[0, j] for j in range(1, T)])


def forgetting_per_experience(R) -> np.ndarray:
    """f_j = max_{l in j..T-1} R[l+1, j] - R[T, j] for j < T-1 (Chaudhry et al. 2018).

    The best accuracy experience j ever had after it was learned, minus its final accuracy.
    """
    R = _matrix(R)
    T = R.shape[1]
    out = []
    for j in range(T - 1):
        past = R[j + 1 : T, j]
        out.append(np.nan if np.isnan(past).any() else past.max() - R[T, j])
    return np.array(out, dtype=float)


def average_forgetting(R) -> float:
    """Mean of :func:`forgetting_per_experience` over the first T-1 experiences."""
    return _mean(forgetting_per_experience(R))


def intransigence(R, reference) -> float:
    """I = 1/T sum_j (ref_j - R[j+1, j]) (Chaudhry et al. 2018): how much less the learner
    reaches on each experience than a jointly trained reference (``reference[j]``) does."""
    R = _matrix(R)
    if reference is None:
        return float("nan")
    reference = np.asarray(reference, dtype=float)
    if reference.shape != (R.shape[1],):
        raise ValueError(f"reference must have one accuracy per experience ({R.shape[1]}), got {reference.shape}")
    return _mean(reference - learning_accuracy(R))


def summarize(R, reference=None) -> dict:
    """Every metric, as plain Python numbers (NaN where undefined)."""
    return {
        "acc": average_accuracy(R),
        "avg_inc_acc": average_incremental_accuracy(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R),
        "forgetting": average_forgetting(R),
        "learning_acc": _mean(learning_accuracy(R)),
        "intransigence": intransigence(R, reference),
        "forgetting_per_exp": [float(v) for v in forgetting_per_experience(R)],
        "learning_acc_per_exp": [float(v) for v in learning_accuracy(R)],
    }
