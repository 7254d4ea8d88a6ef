"""Divergence: a run whose training blows up is recorded as failed, naming experience and step.

Real runs provoke it (SGD lr=1e4: the training loss turns NaN; Adam lr=1e6: every loss stays
finite but eval losses reach 1e19+); unit tests on a fake strategy pin the flag logic: the first
bad step is the one reported, and a training step never converts a tensor to a host value.
"""
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from forgetbench.benchmarks.experiment import run
from forgetbench.benchmarks.protocol import DivergenceError, MatrixRecorder, StepLosses, loss_bound
from tests.conftest import DATA, REPO, TINY


def record_of(out) -> dict:
    return json.loads((out / "record.json").read_text())


# --- real runs ---------------------------------------------------------------------------------

def test_sgd_huge_lr_fails_naming_experience_and_step(mnist_root, tiny_cfg, tmp_path):
    # 96 samples / batch 16: 6 steps per experience; the loss is 2.3, 2e12, 1e36, then NaN
    cfg = tiny_cfg("optimizer=sgd", "optimizer.lr=1e4", "stream.max_train_per_exp=96")
    with pytest.raises(DivergenceError) as caught:
        run(cfg, tmp_path / "run")
    assert (caught.value.experience, caught.value.step, caught.value.step_in_experience) == (0, 4, 4)
    record = record_of(tmp_path / "run")
    assert record["status"] == "failed"
    assert record["error"].startswith("DivergenceError: training diverged in experience 0 at training step 4 ")
    assert "the training loss is nan" in record["error"] and "lower optimizer.lr (it is 10000)" in record["error"]


def test_adam_huge_lr_fails_on_its_finite_but_absurd_losses(mnist_root, tiny_cfg, tmp_path):
    # Adam's step is ~lr whatever the gradient: losses stay finite (1e19-1e23), never NaN
    with pytest.raises(DivergenceError) as caught:
        run(tiny_cfg("optimizer.lr=1e6"), tmp_path / "run")
    assert caught.value.experience == 0 and caught.value.step == 2  # where the training loss first passed the bound
    error = record_of(tmp_path / "run")["error"]
    assert record_of(tmp_path / "run")["status"] == "failed"
    assert "after training experience 0" in error and "mean evaluation loss on experience 0 is" in error
    assert "above 2.3e+04" in error and "first exceeded 2.3e+04 at training step 2" in error
    assert "lower optimizer.lr (it is 1e+06)" in error


def test_normal_run_stays_ok(mnist_root, tiny_cfg, tmp_path):
    record = run(tiny_cfg(), tmp_path / "run")
    assert record["status"] == "ok" and record_of(tmp_path / "run")["status"] == "ok"
    loss = np.asarray(record["loss_matrix"], dtype=float)
    assert np.isfinite(loss).all() and loss.max() < loss_bound(10)


def test_a_diverged_run_does_not_stop_the_sweep(mnist_root, tmp_path):
    env = {**os.environ, "FORGETBENCH_DATA": str(DATA), "WANDB_MODE": "offline"}
    args = ["-m", "optimizer=sgd", "optimizer.lr=1e4,0.01", *TINY, "stream.max_train_per_exp=96",
            f"results_dir={tmp_path}", "sweep_name=grid"]
    result = subprocess.run([sys.executable, "-m", "forgetbench.cli", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    diverged, ok = (json.loads(p.read_text()) for p in sorted((tmp_path / "grid").glob("*/record.json")))
    assert diverged["config"]["optimizer"]["lr"] == 1e4 and diverged["status"] == "failed"
    assert "DivergenceError: training diverged in experience 0 at training step 4" in diverged["error"]
    assert ok["config"]["optimizer"]["lr"] == 0.01 and ok["status"] == "ok"
    assert "[run 1/2]" in result.stderr and "FAILED with training diverged in experience 0" in result.stderr
    assert result.returncode == 1 and "failed: " in result.stderr  # the sweep went on, then reports the failure


# --- the flag logic, on a fake strategy ---------------------------------------------------------

class FakeStrategy(SimpleNamespace):
    """What MatrixRecorder reads of a strategy during training."""

    def __init__(self, device="cpu", outputs=10):
        model = torch.nn.Linear(3, outputs).to(device)
        super().__init__(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), device=device,
                         experience=SimpleNamespace(current_experience=0), dataloader=[None] * 4, train_epochs=1,
                         mb_output=torch.zeros(2, outputs, device=device), loss=None)


def train_experience(recorder, strategy, exp: int, losses, device="cpu"):
    """One experience of steps with the given losses; returns the error raised, if any."""
    strategy.experience.current_experience = exp
    recorder.before_training_exp(strategy)
    try:
        for value in losses:
            strategy.loss = torch.tensor(value, device=device, requires_grad=True) * 1.0  # as a real loss: non-leaf
            recorder.after_training_iteration(strategy)
        recorder.after_training_exp(strategy)
    except DivergenceError as error:
        return error
    return None


@pytest.fixture
def host_reads(monkeypatch):
    """Counts every conversion of a tensor to a host value (each one is a sync on a GPU)."""
    calls = []
    for name in ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def test_first_bad_step_is_reported_without_a_host_read_per_step(host_reads):
    recorder, strategy = MatrixRecorder(3, progress=False, loss_every=10**9), FakeStrategy()
    strategy.experience.current_experience = 0
    recorder.before_training_exp(strategy)
    for value in (2.3, 1.9, 1.7, 1.5):
        strategy.loss = torch.tensor(value, requires_grad=True) * 1.0
        recorder.after_training_iteration(strategy)
    assert host_reads == []  # no sync in a training step
    recorder.after_training_exp(strategy)
    assert host_reads == ["tolist"]  # one read per experience (the flags and the parameters at once)

    error = train_experience(recorder, strategy, 1, [1.2, 1e30, math.nan, 5.0, math.inf, math.nan])
    assert host_reads.count("tolist") == 2
    assert (error.experience, error.step, error.step_in_experience) == (1, 7, 3)  # 4 steps in e0, then the 3rd
    assert "experience 1 at training step 7 (step 3 of this experience): the training loss is nan" in str(error)
    assert "it first exceeded 2.3e+04 at step 2: 1e+30" in str(error)
    assert "lower optimizer.lr (it is 0.5)" in str(error)


def test_steps_beyond_one_buffer_chunk(monkeypatch):
    monkeypatch.setattr(StepLosses, "CHUNK", 3)  # the buffer grows a chunk at a time
    recorder, strategy = MatrixRecorder(2, progress=False), FakeStrategy()
    assert train_experience(recorder, strategy, 0, [2.0] * 7) is None
    error = train_experience(recorder, strategy, 1, [2.0] * 7 + [math.nan, 1.0])
    assert (error.step, error.step_in_experience) == (15, 8)


def test_inf_alone_is_divergence():
    error = train_experience(MatrixRecorder(1, progress=False), FakeStrategy(), 0, [2.0, -math.inf, 1.0])
    assert error.step == 2 and "the training loss is -inf" in str(error)


def test_the_periodic_loss_report_stops_early_but_names_the_first_bad_step():
    reported = []
    recorder = MatrixRecorder(1, progress=False, loss_every=5, on_train_loss=lambda s, v: reported.append(v))
    error = train_experience(recorder, FakeStrategy(), 0, [2.0, 1.0, math.nan, 1.0, math.nan, 1.0, 1.0])
    assert error.step == 3 and reported == []  # raised at step 5, where the loss was read; NaN never logged


def test_non_finite_parameters_after_finite_losses_are_divergence():
    recorder, strategy = MatrixRecorder(1, progress=False), FakeStrategy()
    with torch.no_grad():
        strategy.model.bias[1] = math.nan
    error = train_experience(recorder, strategy, 0, [2.0, 1.5])
    assert error.step == 2 and "parameters bias hold NaN or inf" in str(error)


def test_a_large_but_finite_training_loss_alone_is_not_divergence():
    """Regularizers (EWC's lambda x penalty) scale the training loss: only evaluation is bounded."""
    recorder = MatrixRecorder(1, progress=False)
    assert train_experience(recorder, FakeStrategy(), 0, [2.0, 1e6, 3.0]) is None


def evaluate(recorder, strategy, mean_loss: float, exp: int = 0):
    strategy.experience.current_experience = exp
    strategy.mb_y = torch.tensor([0, 1])
    strategy.mb_output = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    strategy.loss = torch.tensor(mean_loss)
    recorder.before_eval_exp(strategy)
    recorder.after_eval_iteration(strategy)
    recorder.after_eval_exp(strategy)


@pytest.mark.parametrize("loss", [math.nan, math.inf, 2e4])
def test_evaluation_loss_must_be_finite_and_within_the_bound(loss):
    assert loss_bound(2) == pytest.approx(1e4 * math.log(2))  # 6931: 2e4 is beyond it
    recorder, strategy = MatrixRecorder(1, progress=False), FakeStrategy(outputs=2)
    assert train_experience(recorder, strategy, 0, [0.7, 0.6]) is None
    evaluate(recorder, strategy, 50.0)  # confidently wrong is fine
    assert recorder.results[0] == (1.0, 50.0)
    with pytest.raises(DivergenceError, match="after training experience 0 .* mean evaluation loss on experience 0 is"):
        evaluate(recorder, strategy, loss)


def test_an_untrained_model_with_a_non_finite_loss_is_reported_as_such():
    with pytest.raises(DivergenceError, match="untrained model's mean evaluation loss on experience 0 is nan"):
        evaluate(MatrixRecorder(1, progress=False), FakeStrategy(outputs=2), math.nan)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_cuda_sync_in_a_training_step():
    recorder, strategy = MatrixRecorder(1, progress=False, loss_every=10**9), FakeStrategy("cuda")
    strategy.experience.current_experience = 0
    recorder.before_training_exp(strategy)
    losses = [torch.tensor(v, device="cuda") for v in (2.0, math.nan, 1.0)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for loss in losses:
            strategy.loss = loss
            recorder.after_training_iteration(strategy)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with pytest.raises(DivergenceError, match="at training step 2"):
        recorder.after_training_exp(strategy)
