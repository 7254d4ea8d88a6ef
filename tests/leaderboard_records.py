"""Hand-made run records for leaderboard tests (no training)."""
import json
from pathlib import Path

from forgetbench.benchmarks.metrics import summarize


def config(strategy: str, seed: int, scenario: str = "class", epochs: int = 1) -> dict:
    """The parts of a resolved config the leaderboard reads."""
    return {"seed": seed, "scenario": scenario, "epochs": epochs, "results_dir": "results/runs",
            "stream": {"name": "split_mnist", "n_experiences": 2, "seed": seed},
            "model": {"name": "mlp", "hidden_sizes": [400, 400]}, "strategy": {"name": strategy}}


MEMORY = {"replay": {"samples": 100, "bytes": 100 * (784 + 8), "stores": "100 samples (mem_size)"},
          "naive": {"samples": 0, "bytes": 0, "stores": "none"}}


def write_record(sweep_dir: Path, num: int, strategy: str, seed: int, matrix, seconds: float,
                 scenario: str = "class", status: str = "ok", epochs: int = 1, upper_bound: bool | None = None,
                 offline: bool = False, **fields) -> Path:
    """A record as ``run`` writes it; ``upper_bound`` None leaves out ``strategy_info`` (records before it
    existed); ``fields`` are added as they are (``eval_split``, ``command``, ``sweep_command``, ...)."""
    run_dir = Path(sweep_dir) / f"{num}__{strategy}__s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_dir.name, "status": status, "stream": "split_mnist", "scenario": scenario,
              "strategy": strategy, "model": "mlp", "seed": seed, "finished_at": f"2026-01-01T00:00:{num:02d}",
              "config": config(strategy, seed, scenario, epochs)}
    if upper_bound is not None:
        record["strategy_info"] = {"upper_bound": upper_bound, "offline": offline}
    if strategy in MEMORY:
        record["memory"] = MEMORY[strategy]
    if status == "ok":
        record.update(accuracy_matrix=matrix, metrics=summarize(matrix), timings={"total_seconds": seconds})
    record.update(fields)
    (run_dir / "record.json").write_text(json.dumps(record))
    return run_dir


# Final-row accuracies (ACC = mean of the last row): naive 0.50, 0.60, 0.70 -> mean 0.6;
# replay 0.90, 0.80 -> mean 0.85.
NAIVE = [
    [[0.1, 0.1], [1.0, 0.0], [0.0, 1.0]],
    [[0.1, 0.1], [1.0, 0.0], [0.2, 1.0]],
    [[0.1, 0.1], [1.0, 0.0], [0.4, 1.0]],
]
REPLAY = [
    [[0.1, 0.1], [1.0, 0.0], [0.8, 1.0]],
    [[0.1, 0.1], [1.0, 0.0], [0.6, 1.0]],
]


def make_sweep(sweep_dir: Path) -> Path:
    """3 naive + 2 replay runs, a failed run, and a naive run re-done with force=true (counts once)."""
    for seed, matrix in enumerate(NAIVE):
        write_record(sweep_dir, seed, "naive", seed, matrix, seconds=10.0 + seed)
    for seed, matrix in enumerate(REPLAY):
        write_record(sweep_dir, 3 + seed, "replay", seed, matrix, seconds=20.0)
    write_record(sweep_dir, 5, "replay", 2, None, 0.0, status="failed")
    write_record(sweep_dir, 6, "naive", 0, NAIVE[0], seconds=13.0)  # newer record of naive seed 0
    return sweep_dir


def write_raw(sweep_dir: Path, name: str, text: str) -> Path:
    """A ``record.json`` holding ``text`` as is (cut short, not an object, ...); returns its path."""
    path = Path(sweep_dir) / name / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_without(sweep_dir: Path, num: int, *keys: str, **changes) -> Path:
    """A finished naive run's record without ``keys`` and with ``changes``; returns its path."""
    path = write_record(sweep_dir, num, "naive", num, [[0.1, 0.1], [1.0, 0.0], [0.5, 1.0]], 1.0) / "record.json"
    record = json.loads(path.read_text())
    for key in keys:
        del record[key]
    record.update(changes)
    path.write_text(json.dumps(record))
    return path


def add_broken_records(sweep_dir: Path) -> dict[str, str]:
    """Records the leaderboard must skip, each next to the reason it gives: {path: why}."""
    cut = json.dumps({"run_id": "cut", "status": "ok", "metrics": {"acc": 0.5}})
    return {
        str(write_raw(sweep_dir, "20__cut_short", cut[:30])): "unreadable JSON (Unterminated string starting at: "
                                                                "line 1 column 29 (char 28))",
        str(write_raw(sweep_dir, "21__empty", "")): "empty file",
        str(write_raw(sweep_dir, "22__list", "[1, 2]")): "not a JSON object (a JSON list)",
        str(write_without(sweep_dir, 23, "metrics")): "status ok but missing metrics",
        str(write_without(sweep_dir, 24, "accuracy_matrix", "timings", "config")):
            "status ok but missing accuracy_matrix, timings, config",
        str(write_without(sweep_dir, 25, metrics=[0.5])): "status ok but metrics is not an object",
        str(write_without(sweep_dir, 26, timings={})): "status ok but timings has no total_seconds",
        str(write_without(sweep_dir, 27, accuracy_matrix=[[0.5, 1.0]])):
            "status ok but accuracy_matrix is not a (T+1) x T matrix of numbers",
        str(write_without(sweep_dir, 28, "status")): "no status",
        str(write_without(sweep_dir, 29, status="running")): "status 'running': not a finished run",
    }
