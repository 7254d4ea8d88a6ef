"""The van de Ven & Tolias 2019 presets, conf/experiment/vandeven2019_*.yaml: each sweeps the paper's methods
over seeds 0-4 under its protocol's budget, with their code's hyperparameters for that protocol and scenario,
and every run of its sweep works (tiny). The Permuted-MNIST ones are too long for a CPU (README), so this is
what shows they are ready for a GPU."""
from __future__ import annotations

import pytest

from forgetbench.benchmarks.experiment import run
from tests.conftest import compose_cfg, preset_sweep

# Their param_values.py (GMvandeVen/continual-learning, preprints branch, a02db26, lines 9-41), transcribed
# independently of the presets: (protocol, scenario) -> EWC lambda, online EWC lambda, gamma, SI c.
THEIRS = {
    ("split", "task"): (1e7, 1e8, 0.8, 50.0), ("split", "domain"): (1e6, 1e8, 0.7, 500.0),
    ("split", "class"): (1e8, 1e9, 0.8, 0.5),
    ("permuted", "task"): (500.0, 500.0, 0.8, 5.0), ("permuted", "domain"): (500.0, 1000.0, 0.9, 5.0),
    ("permuted", "class"): (1.0, 5.0, 1.0, 0.1),
}
BUDGET = {"split": (2000, 0.001, [400, 400], 5), "permuted": (5000, 0.0001, [1000, 1000], 10)}  # iters, lr, MLP, tasks
PRESETS = [f"vandeven2019_{protocol}_mnist_{scenario}" for protocol, scenario in THEIRS]
METHODS = {"naive", "cumulative", "ewc", "online_ewc", "si", "lwf", "lwf_vdv"}


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_sweeps_the_papers_methods_with_their_hyperparameters(preset):
    protocol, scenario = preset.split("_")[1], preset.split("_")[-1]
    ewc_lambda, online_lambda, gamma, si_c = THEIRS[(protocol, scenario)]
    iterations, lr, hidden, tasks = BUDGET[protocol]
    configs = {c["strategy"]["name"]: (c, seeds) for c, seeds in preset_sweep(preset)}
    assert set(configs) >= METHODS
    for config, seeds in configs.values():
        assert seeds == [0, 1, 2, 3, 4]
        assert (config["scenario"], config["iterations"], config["epochs"], config["batch_size"]) == (scenario, iterations, None, 128)
        assert (config["optimizer"]["lr"], config["model"]["hidden_sizes"], config["stream"]["n_experiences"]) == (lr, hidden, tasks)
        assert config["reset_optimizer"] is False
    assert configs["ewc"][0]["strategy"]["ewc_lambda"] == ewc_lambda  # the preset's, not the per-stream default
    assert (configs["online_ewc"][0]["strategy"]["ewc_lambda"], configs["online_ewc"][0]["strategy"]["decay_factor"]) \
        == (online_lambda, gamma)
    assert configs["si"][0]["strategy"]["si_lambda"] == pytest.approx(2 * si_c)  # si_lambda = 2c (preset header)
    assert configs["lwf"][0]["strategy"]["alpha"] == [4 * t for t in range(tasks)]


@pytest.mark.parametrize("preset", [p for p in PRESETS if "permuted" in p])
def test_every_run_of_a_permuted_preset_works_tiny(preset, mnist_root, tmp_path):
    for strategy in sorted(METHODS):
        cfg = compose_cfg([f"experiment={preset}", f"strategy={strategy}", "seed=0", "iterations=3",
                           "stream.max_train_per_exp=64", "stream.max_test_per_exp=32", "progress=false",
                           "device=cpu", "threads=1", f"results_dir={tmp_path}"], mnist_root)
        record = run(cfg, tmp_path / strategy)
        assert record["status"] == "ok", (strategy, record.get("error"))
        assert len(record["accuracy_matrix"]) == 11 and record["config"]["iterations"] == 3
