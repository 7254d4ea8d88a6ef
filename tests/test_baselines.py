"""Every regularization, replay and sleep strategy forgetbench names does what its method does: after one
tiny experience it keeps the state it should (importances, previous model, buffer, memories, ...), and on
a tiny stream where it must act its accuracy matrix is not naive's. (Every scenario each one declares is
run by tests/test_strategies.py; a strategy that cannot be made to act is not offered.)"""
import numpy as np
import pytest
import torch

from forgetbench.benchmarks.experiment import run
from forgetbench.strategies.ewc import MergedEWCPlugin
from forgetbench.strategies.si import SnapshotSIPlugin


def _plugin(strategy, kind):
    return next(p for p in strategy.plugins if isinstance(p, kind))


def _params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# (a) the state each method keeps after one experience

def test_si_importances_are_nonzero_and_its_snapshots_are_copies(trained):
    strategy, _ = trained("strategy=si")
    si = _plugin(strategy, SnapshotSIPlugin)
    importance = torch.cat([d.data for d in si.ewc_data[1].values()])
    assert (importance > 0).float().mean() > 0.5 and importance.max() > 1e-3  # no cap by default
    anchor = torch.cat([d.data for d in si.ewc_data[0].values()])
    before_last_step = torch.cat([d.data for d in si.syn_data["old_theta"].values()])
    assert torch.equal(anchor, _params(strategy.model))  # theta* = the weights at the end of the experience
    assert not torch.equal(before_last_step, _params(strategy.model))  # a view would equal the live weights
    with torch.no_grad():
        for p in strategy.model.parameters():
            p.add_(1.0)
    assert torch.equal(anchor, torch.cat([d.data for d in si.ewc_data[0].values()]))  # not moved with the model


def test_si_max_importance_caps_as_avalanche_does(trained):
    si = _plugin(trained("strategy=si", "strategy.max_importance=0.001")[0], SnapshotSIPlugin)
    importance = torch.cat([d.data for d in si.ewc_data[1].values()])
    assert importance.max() == pytest.approx(0.001) and (importance > 0).any()


def test_lwf_keeps_the_previous_model_and_its_classes(trained):
    strategy, classes = trained("strategy=lwf")
    lwf = next(p for p in strategy.plugins if type(p).__name__ == "LwFPlugin").lwf
    assert lwf.prev_model is not None and lwf.prev_model is not strategy.model
    assert torch.equal(_params(lwf.prev_model), _params(strategy.model))
    assert dict(lwf.prev_classes_by_task) == {0: classes}


def test_mas_keeps_nonzero_importances_and_the_parameters_they_anchor(trained):
    strategy, _ = trained("strategy=mas")
    mas = next(p for p in strategy.plugins if type(p).__name__ == "MASPlugin")
    importance = torch.cat([d.data.flatten() for d in mas.importance.values()])
    assert (importance > 0).float().mean() > 0.5
    anchor = torch.cat([d.data.flatten() for d in mas.params.values()])
    assert torch.equal(anchor, _params(strategy.model)) and anchor.data_ptr() != _params(strategy.model).data_ptr()


def test_agem_keeps_patterns_per_exp_samples_of_the_experience(trained):
    strategy, classes = trained("strategy=agem", "strategy.patterns_per_exp=20")
    agem = next(p for p in strategy.plugins if type(p).__name__ == "AGEMPlugin")
    assert [len(b) for b in agem.buffers] == [20]
    assert set(agem.buffers[0].targets) <= classes
    assert agem.sample_size == 256  # the paper's reference-gradient sample, not Avalanche's 64


def test_gdumb_fills_its_buffer_and_keeps_the_initial_model(trained):
    strategy, classes = trained("strategy=gdumb", "strategy.mem_size=20")
    gdumb = next(p for p in strategy.plugins if type(p).__name__ == "GDumbPlugin")
    assert len(gdumb.storage_policy.buffer) == 20
    assert set(gdumb.storage_policy.buffer.targets) == classes
    assert gdumb.init_model is not None and not torch.equal(_params(gdumb.init_model), _params(strategy.model))


def test_er_ace_buffers_the_experience(trained):
    strategy, classes = trained("strategy=er_ace", "strategy.mem_size=20")
    assert len(strategy.storage_policy.buffer) == 20
    assert set(strategy.storage_policy.buffer.targets) == classes


def test_icarl_keeps_exemplars_class_means_and_the_previous_model(trained):
    strategy, classes = trained("strategy=icarl", "strategy.memory_size=20")
    icarl = next(p for p in strategy.plugins if type(p).__name__ == "_ICaRLPlugin")
    assert {ys[0] for ys in icarl.y_memory} == classes
    assert sum(len(x) for x in icarl.x_memory) == 20  # 10 exemplars for each of the 2 classes seen
    means = {c: m for c, m in icarl.class_means.items() if m.abs().sum() > 0}
    assert set(means) == classes
    loss = next(p for p in strategy.plugins if type(p).__name__ == "ICaRLLossPlugin")
    assert loss.old_model is not None and sorted(loss.old_classes) == sorted(classes)


@pytest.mark.parametrize("name", ["ewc", "online_ewc"])
def test_ewc_keeps_a_nonzero_fisher_anchored_at_the_learned_weights(name, trained):
    strategy, _ = trained(f"strategy={name}")
    ewc = _plugin(strategy, MergedEWCPlugin)
    fisher = torch.cat([a.flatten() for a in ewc.curvature.values()])
    assert (fisher > 0).float().mean() > 0.5
    anchor = torch.cat([m.flatten() for m in ewc.anchor.values()])
    assert torch.equal(anchor, _params(strategy.model)) and anchor.data_ptr() != _params(strategy.model).data_ptr()


def test_replay_fills_its_buffer_with_the_experience(trained):
    strategy, classes = trained("strategy=replay", "strategy.mem_size=20")
    buffer = next(p for p in strategy.plugins if type(p).__name__ == "_ReplayPlugin").storage_policy.buffer
    assert len(buffer) == 20 and set(buffer.targets) == classes


def test_sleep_cls_buffers_episodes_and_its_memories_follow_the_learner(trained):
    # CLS-ER's fixed rates: on the tiny stream's few steps the experience-length rule makes both memories
    # copies of the learner (tests/test_sleep_cls.py checks that rule)
    strategy, classes = trained("strategy=sleep_cls", "strategy.mem_size=20", "strategy.horizons_per_experience=null")
    sleep = strategy.cls_sleep
    assert len(sleep.buffer) == 20 and set(sleep.buffer.stored()[1].tolist()) == classes and sleep.consolidations > 0
    for memory in sleep.memories.values():  # EMAs of the learner: moved from the init, not equal to it
        assert not torch.equal(_params(memory), _params(strategy.model))


def test_sleep_src_sleep_changes_the_weights(trained, monkeypatch):
    from forgetbench.strategies.sleep_src import SpikingSleep

    seen = {}
    original = SpikingSleep.sleep

    def sleep(self, strategy):
        before = _params(strategy.model).clone()
        original(self, strategy)
        seen["changed"] = int((before != _params(strategy.model)).sum())

    monkeypatch.setattr(SpikingSleep, "sleep", sleep)
    trained("strategy=sleep_src", "strategy.iterations=200", "model.bias=false", "stream.normalize=false")
    assert seen["changed"] > 0  # STDP moved some weights


# (b) where the method must act, the accuracy matrix is not naive's (same seed)

def _matrix(tiny_cfg, out, *overrides) -> np.ndarray:
    record = run(tiny_cfg(*overrides), out)
    assert record["status"] == "ok"
    return np.array(record["accuracy_matrix"], dtype=float)


ACTING = [  # name, scenario, overrides: a buffer the tiny stream fills, or a strength that must matter in 3 steps
    ("ewc", "domain", ["strategy.ewc_lambda=1e6"]),
    ("online_ewc", "domain", ["strategy.ewc_lambda=1e6"]),
    ("replay", "class", ["strategy.mem_size=20"]),
    ("sleep_cls", "class", ["strategy.mem_size=20"]),
    ("sleep_src", "class", ["strategy.iterations=200", "model.bias=false", "stream.normalize=false"]),
    ("si", "class", ["strategy.si_lambda=1e5"]),
    ("lwf", "task", []),  # the paper's defaults: the old heads are distilled
    ("lwf_vdv", "class", []),
    ("mas", "domain", ["strategy.lambda_reg=1e4"]),
    ("agem", "class", ["strategy.patterns_per_exp=20"]),
    ("gdumb", "class", ["strategy.mem_size=20"]),
    ("der", "class", ["strategy.mem_size=20"]),
    ("derpp", "class", ["strategy.mem_size=20"]),
    ("er_ace", "class", ["strategy.mem_size=20"]),
    ("icarl", "class", ["strategy.memory_size=20"]),
]


@pytest.mark.parametrize("name,scenario,overrides", ACTING, ids=[case[0] for case in ACTING])
def test_the_method_changes_the_accuracy_matrix(name, scenario, overrides, mnist_root, tiny_cfg, tmp_path):
    shared = [o for o in overrides if not o.startswith("strategy.")]  # the same model and stream for naive
    naive = _matrix(tiny_cfg, tmp_path / "naive", "strategy=naive", f"scenario={scenario}", *shared)
    ours = _matrix(tiny_cfg, tmp_path / name, f"strategy={name}", f"scenario={scenario}", *overrides)
    if name != "icarl":  # (iCaRL evaluates by nearest class mean, not with the head)
        np.testing.assert_array_equal(ours[0], naive[0])  # same seed: the same untrained model ...
    assert not np.array_equal(ours[1:], naive[1:])  # ... and then the method acts


def test_avalanches_own_si_is_a_no_op_on_the_cpu(mnist_root, tiny_cfg, tmp_path):
    """Why si.py exists: at a strength where forgetbench's si acts, Avalanche 0.6's SynapticIntelligence
    reproduces naive bit for bit on the CPU (its weight snapshots are views). If this starts failing,
    Avalanche has fixed the bug and SnapshotSIPlugin's snapshot copies can go."""
    naive = _matrix(tiny_cfg, tmp_path / "naive", "strategy=naive")
    theirs = _matrix(tiny_cfg, tmp_path / "theirs", "strategy=avalanche", "strategy.cls=SynapticIntelligence",
                     "+strategy.si_lambda=1e5")
    np.testing.assert_array_equal(theirs, naive)
