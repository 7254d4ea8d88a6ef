"""The Buzzega et al. 2020 (DER) presets, conf/experiment/buzzega2020_*.yaml: every published number of
results/reference/buzzega2020_der.csv is matched by the runs of exactly one preset's sweep (so it appears
beside ours), every run has its published number, and each preset runs (tiny, on generated data)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import pandas as pd
import pytest
from omegaconf import OmegaConf

from forgetbench.benchmarks.experiment import run, validate
from forgetbench.benchmarks.leaderboard import PUBLISHED_KEY, protocol_matches

from tests.conftest import REPO, compose_cfg, make_tiny_cifar, make_tiny_mnist, preset_sweep

REFERENCE = REPO / "results" / "reference" / "buzzega2020_der.csv"
PRESETS = sorted(p.name[:-5] for p in (resources.files("forgetbench.conf") / "experiment").iterdir()
                 if p.name.startswith("buzzega2020_") and p.name.endswith(".yaml"))
LR = {  # Mammoth's utils/best_args.py (d20f640): (preset, strategy) -> lr
    **{("buzzega2020_seq_cifar10", s): 0.1 for s in ("naive", "joint")},
    **{(f"buzzega2020_seq_cifar10_buf{b}_er", "replay"): 0.1 for b in (200, 500)},
    **{(f"buzzega2020_seq_cifar10_buf{b}", s): 0.03 for b in (200, 500) for s in ("der", "derpp")},
    **{("buzzega2020_seq_mnist", s): 0.03 for s in ("naive", "joint")},
    ("buzzega2020_seq_mnist_buf200_er", "replay"): 0.01, ("buzzega2020_seq_mnist_buf500_er", "replay"): 0.1,
    **{(f"buzzega2020_seq_mnist_buf{b}", s): 0.03 for b in (200, 500) for s in ("der", "derpp")},
    **{("buzzega2020_perm_mnist", s): 0.2 for s in ("naive", "joint")},
    ("buzzega2020_perm_mnist_buf200", "replay"): 0.2, ("buzzega2020_perm_mnist_buf200", "der"): 0.2,
    ("buzzega2020_perm_mnist_buf200_derpp", "derpp"): 0.1,
    **{("buzzega2020_perm_mnist_buf500", s): 0.2 for s in ("replay", "der", "derpp")},
}


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    """One row per (preset, config) of every preset's sweep."""
    rows = [{"preset": p, "sweep_name": c["sweep_name"], "stream": c["stream"]["name"], "scenario": c["scenario"],
             "model": c["model"]["name"], "strategy": c["strategy"]["name"], "seeds": seeds, "config": c}
            for p in PRESETS for c, seeds in preset_sweep(p)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def references() -> pd.DataFrame:
    return pd.read_csv(REFERENCE, dtype=str, keep_default_na=False)


def groups(runs: pd.DataFrame):
    """The leaderboard's groups: runs in one sweep directory with the same stream, scenario, model, strategy."""
    return runs.groupby(["sweep_name", *PUBLISHED_KEY], sort=True)


def reported_as(row) -> str:
    """Class-IL, Domain-IL or Task-IL. The paper's Task-IL is the task-masked accuracy of the class-IL run
    (metrics.task_masked_acc): a row says so with metric task_masked_acc (scenario class), or, as the file
    was first written, with scenario task."""
    return "task-il" if row["scenario"] == "task" or row["metric"] == "task_masked_acc" else row["scenario"]


def matching(runs, row) -> list[tuple]:
    """The groups whose every run satisfies the row's conditions (a Task-IL row: among the class-IL runs)."""
    scenario = "class" if reported_as(row) == "task-il" else row["scenario"]
    want = (row["stream"], scenario, row["model"], row["strategy"])
    return [key for key, group in groups(runs)
            if key[1:] == want and protocol_matches(row["conditions"], list(group["config"]))]


def test_the_presets_exist():
    assert "buzzega2020_seq_cifar10" in PRESETS and "buzzega2020_seq_mnist" in PRESETS
    assert "buzzega2020_perm_mnist" in PRESETS and len(PRESETS) == 14


def test_every_published_number_is_matched_by_one_sweep_group(runs, references):
    assert len(references) == 40
    for _, row in references.iterrows():
        found = matching(runs, row)
        assert len(found) == 1, (row["stream"], row["scenario"], row["strategy"], row["conditions"], found)


def test_every_preset_run_has_its_published_numbers(runs, references):
    for key, group in groups(runs):
        rows = [r for _, r in references.iterrows() if key in matching(runs, r)]
        assert sorted(map(reported_as, rows)) == (["class", "task-il"] if key[2] == "class" else ["domain"]), key
        assert [seeds for seeds in group["seeds"]] == [list(range(10))]  # one setting, the paper's 10 runs


def test_a_sweep_directory_holds_one_setting_per_strategy(runs):
    """The leaderboard averages a strategy's runs in one directory: no two presets may put the same strategy
    with different settings into one directory (buffers 200 and 500 go to two)."""
    for key, group in groups(runs):
        assert len(group) == 1, (key, list(group["preset"]))


def test_learning_rates_and_buffers_are_the_papers(runs):
    seen = {}
    for _, r in runs.iterrows():
        seen[(r["preset"], r["strategy"])] = r["config"]["optimizer"]["lr"]
    assert seen == LR
    for _, r in runs.iterrows():
        c = r["config"]
        assert c["optimizer"]["name"] == "sgd" and c["optimizer"]["momentum"] == 0.0
        if "_buf" in r["preset"]:
            assert str(c["strategy"]["mem_size"]) in r["preset"] and c["sweep_name"].endswith(
                r["preset"].split("_buf")[1][:3])
        augment = c["stream"].get("augment")
        assert augment == ("crop_flip" if c["stream"]["name"] == "split_cifar10" else None)
        assert c["stream"].get("normalize", True) == (c["stream"]["name"] == "split_cifar10")  # MNIST: raw [0, 1]


def test_every_config_passes_the_schema(runs):
    for _, r in runs.drop_duplicates(["preset", "strategy"]).iterrows():
        validate(OmegaConf.create(r["config"]))


def test_each_header_gives_its_command_and_the_numbers_it_should_reproduce(runs, references):
    folder = resources.files("forgetbench.conf") / "experiment"
    texts = {p: (folder / f"{p}.yaml").read_text() for p in PRESETS}
    for preset, text in texts.items():
        header = text.split("defaults:")[0]
        assert f"forgetbench -m experiment={preset} " in header, preset
        assert "Buzzega et al. 2020" in header
    for _, row in references.iterrows():
        [(sweep_name, *_)] = matching(runs, row)
        strategy = row["strategy"]
        presets = set(runs[(runs["sweep_name"] == sweep_name) & (runs["strategy"] == strategy)]["preset"])
        assert any(row["reported"] in texts[p] for p in presets), (row["reported"], presets)


# --- tiny runs on generated data --------------------------------------------------------------------

@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    make_tiny_cifar(root, 10, per_batch=40, n_test=40)
    make_tiny_mnist(root, "MNIST", n_train=200, n_test=60)
    return root


TINY_RUN = ["stream.max_train_per_exp=20", "stream.max_test_per_exp=10", "epochs=1", "progress=false",
            "device=cpu", "threads=1"]


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_runs_tiny(preset, generated, tmp_path):
    strategies = sorted({s for (p, s) in LR if p == preset})
    for strategy in strategies:
        tiny = [*TINY_RUN, "model.nf=4"] if "cifar" in preset else TINY_RUN
        cfg = compose_cfg([f"experiment={preset}", f"strategy={strategy}", "seed=0", *tiny,
                           f"results_dir={tmp_path}"], generated)
        record = run(cfg, tmp_path / strategy)
        assert record["status"] == "ok"
        assert record["config"]["optimizer"]["lr"] == LR[(preset, strategy)]
        assert "per_strategy" not in record["config"]
        masked = record.get("task_masked_accuracy_matrix")
        assert (masked is not None) == (record["scenario"] == "class")
        if "cifar" in preset:
            assert record["stream_info"]["augment"] == "crop_flip"


def test_a_cifar_preset_sweeps_from_the_command_line(generated, tmp_path):
    """What a user types, on generated CIFAR: both strategies of the buffer-200 preset, their own knobs."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    args = ["-m", "experiment=buzzega2020_seq_cifar10_buf200", "seed=0", f"data.root={generated}", *TINY_RUN,
            "model.nf=4", f"results_dir={tmp_path}"]
    result = subprocess.run([sys.executable, "-m", "forgetbench.cli", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "buzzega2020_seq_cifar10_buf200").glob("*/record.json"))]
    strategy = {r["strategy"]: r["config"]["strategy"] for r in records}
    assert strategy == {"der": {"name": "der", "mem_size": 200, "batch_size_mem": 32, "alpha": 0.3},
                        "derpp": {"name": "derpp", "mem_size": 200, "batch_size_mem": 32, "alpha": 0.1, "beta": 0.5}}
    for r in records:
        assert r["config"]["stream"]["augment"] == "crop_flip" and r["config"]["model"]["nf"] == 4
        assert r["command"].startswith("forgetbench experiment=buzzega2020_seq_cifar10_buf200") or \
            "experiment=buzzega2020_seq_cifar10_buf200" in r["command"]
        assert r["metrics"]["task_masked_acc"] is not None


def test_permuted_mnist_keeps_raw_pixels(generated):
    """Mammoth's perm-mnist feeds ToTensor() pixels: stream.normalize=false (normalized pixels made DER
    diverge at the paper's lr 0.2 in experience 1)."""
    from forgetbench.benchmarks.experiment import _build

    raw = _build(compose_cfg(["experiment=buzzega2020_perm_mnist", *TINY_RUN], generated).stream)
    normalized = _build(compose_cfg(["stream=permuted_mnist", *TINY_RUN], generated).stream)
    assert raw.table.images.min() == 0 and raw.table.images.max() == 1 and raw.table.background == 0
    assert normalized.table.images.min() < 0
    x, _, _ = raw.table.gather(raw.train_ids[1])
    assert x.min() >= 0 and x.max() <= 1
