"""Task-masked accuracy: task-IL read off a class-IL run (Buzzega et al. 2020; Mammoth's mask_classes).

For test experience j only the outputs of experience j's classes compete; it comes from the same
forward pass as the accuracy, and is recorded as ``task_masked_accuracy_matrix`` and ``metrics.task_masked_acc``.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from forgetbench.benchmarks.experiment import _build, run
from forgetbench.benchmarks.metrics import average_accuracy
from forgetbench.benchmarks.protocol import MatrixRecorder, experience_classes

from tests.conftest import TINY, compose_cfg


def evaluate(recorder, exp: int, batches):
    """One evaluated experience, ``batches`` of (logits, labels), as the strategy's eval loop feeds the recorder."""
    strategy = SimpleNamespace(experience=SimpleNamespace(current_experience=exp))
    recorder.before_eval_exp(strategy)
    for logits, labels in batches:
        strategy.mb_output, strategy.mb_y = torch.tensor(logits), torch.tensor(labels)
        strategy.loss = torch.nn.functional.cross_entropy(strategy.mb_output, strategy.mb_y)
        recorder.after_eval_iteration(strategy)
    recorder.after_eval_exp(strategy)


def test_hand_case_masked_and_unmasked_accuracy():
    """4 outputs, experiences {0, 1} and {2, 3}; the logits decide every prediction."""
    recorder = MatrixRecorder(2, progress=False, task_classes=[[0, 1], [2, 3]])
    evaluate(recorder, 0, [
        ([[1.0, 0.0, 5.0, 0.0],    # y 0: argmax 2 (wrong); among {0, 1}: 0 (right)
          [0.0, 2.0, 0.0, 3.0]],   # y 1: argmax 3 (wrong); masked: 1 (right)
         [0, 1]),
        ([[3.0, 1.0, 0.0, 0.0],    # y 1: argmax 0 (wrong); masked: 0 (wrong)
          [0.0, 1.0, 0.0, 0.0]],   # y 1: right either way
         [1, 1]),
    ])
    evaluate(recorder, 1, [
        ([[9.0, 0.0, 1.0, 2.0],    # y 3: argmax 0 (wrong); among {2, 3}: 3 (right)
          [0.0, 0.0, 4.0, 1.0]],   # y 2: right either way
         [3, 2]),
    ])
    assert {j: acc for j, (acc, _) in recorder.results.items()} == {0: 0.25, 1: 0.5}
    assert recorder.masked_results == {0: 0.75, 1: 1.0}


def test_classes_need_not_be_contiguous_or_ordered():
    """A shuffled class order (stream.class_order=null): experience 0 holds classes 7 and 2."""
    recorder = MatrixRecorder(1, progress=False, task_classes=[[7, 2]])
    logits = torch.zeros(3, 10)
    logits[0, [2, 5]] = torch.tensor([1.0, 9.0])  # y 2: masked right, unmasked 5
    logits[1, [7, 2, 0]] = torch.tensor([2.0, 1.0, 8.0])  # y 7: masked right, unmasked 0
    logits[2, [7, 2]] = torch.tensor([3.0, 4.0])  # y 7: wrong either way
    evaluate(recorder, 0, [(logits.tolist(), [2, 7, 7])])
    assert recorder.results[0][0] == 0.0 and recorder.masked_results[0] == pytest.approx(2 / 3)


def test_off_by_default_and_unknown_classes_are_an_error():
    recorder = MatrixRecorder(1, progress=False)
    evaluate(recorder, 0, [([[1.0, 0.0]], [0])])
    assert not recorder.task_masked and recorder.masked_results == {}
    with pytest.raises(ValueError, match="classes of experience 1 are not known"):
        evaluate(MatrixRecorder(2, progress=False, task_classes=[[0, 1]]), 1, [([[1.0, 0.0]], [0])])


def test_class_il_run_records_the_masked_matrix_from_the_same_forward_pass(mnist_root, tmp_path, monkeypatch):
    """End to end on real MNIST (tiny): the masked matrix is in the record, its ACC in the metrics, it is
    never below the unmasked accuracy, the evaluation makes no extra forward pass, and the final row equals
    a direct computation from the trained model's outputs."""
    from forgetbench.benchmarks import experiment

    forwards = {"eval": 0}
    strategies = []
    build = experiment.build_strategy

    def counting_build(*args, **kwargs):
        strategy = build(*args, **kwargs)
        strategy.model.register_forward_hook(lambda m, i, o: forwards.__setitem__(
            "eval", forwards["eval"] + (not m.training)))
        strategies.append(strategy)
        return strategy

    monkeypatch.setattr(experiment, "build_strategy", counting_build)
    cfg = compose_cfg([*TINY, "strategy=naive", "results_dir=" + str(tmp_path), "eval_batch_size=7"])
    record = run(cfg, tmp_path / "run")
    T = 5
    masked = np.asarray(record["task_masked_accuracy_matrix"], dtype=float)
    acc = np.asarray(record["accuracy_matrix"], dtype=float)
    assert masked.shape == acc.shape == (T + 1, T)
    assert record["metrics"]["task_masked_acc"] == pytest.approx(average_accuracy(masked))
    assert (masked >= acc - 1e-12).all()  # a right argmax over all outputs is right over the task's too
    assert masked[-1].mean() > acc[-1].mean()  # naive in class-IL: the old tasks are forgotten, not unmasked
    n_eval = 24  # TINY: max_test_per_exp=24, eval batches of 7: 4 per experience, T experiences, T + 1 rows
    assert forwards["eval"] == (T + 1) * T * math.ceil(n_eval / 7)

    stream = _build(cfg.stream)
    model = strategies[0].model.eval()
    classes = record["stream_info"]["class_order"]
    with torch.no_grad():
        for j in range(T):
            x, y, _ = stream.table.gather(stream.test_ids[j])
            logits = model(x)
            mask = torch.zeros(10, dtype=torch.bool)
            mask[classes[2 * j:2 * j + 2]] = True
            expected = (logits.masked_fill(~mask, -math.inf).argmax(1) == y).float().mean().item()
            assert masked[-1, j] == pytest.approx(expected)
            assert acc[-1, j] == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_experience_classes_come_from_the_benchmark(mnist_root):
    cfg = compose_cfg([*TINY, "stream.class_order=[3,8,0,1,2,4,5,6,7,9]"])
    stream = _build(cfg.stream)
    assert experience_classes(stream.benchmark()) == [[3, 8], [0, 1], [2, 4], [5, 6], [7, 9]]


@pytest.mark.parametrize("scenario", ["task", "domain"])
def test_task_and_domain_runs_have_no_masked_matrix(mnist_root, tmp_path, scenario):
    record = run(compose_cfg([*TINY, f"scenario={scenario}", "results_dir=" + str(tmp_path)]), tmp_path / "run")
    assert "task_masked_accuracy_matrix" not in record
    assert math.isnan(record["metrics"]["task_masked_acc"])


def test_joint_has_rows_zero_and_t_only(mnist_root, tmp_path):
    record = run(compose_cfg([*TINY, "strategy=joint", "results_dir=" + str(tmp_path)]), tmp_path / "run")
    masked = np.asarray(record["task_masked_accuracy_matrix"], dtype=float)
    assert not np.isnan(masked[[0, -1]]).any() and np.isnan(masked[1:-1]).all()
