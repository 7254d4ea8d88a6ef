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
                 scenario: str = "class", status: str = "ok", epochs: int = 1, upper_bound: bool | None = None) -> Path:
    """A record as ``run`` writes it; ``upper_bound`` None leaves out ``strategy_info`` (records before it existed)."""
    run_dir = Path(sweep_dir) / f"{num}__{strategy}__s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_dir.name, "status": status, "stream": "split_mnist", "scenario": scenario,
              "strategy": strategy, "model": "mlp", "seed": seed, "finished_at": f"2026-01-01T00:00:{num:02d}",
              "config": config(strategy, seed, scenario, epochs)}
    if upper_bound is not None:
        record["strategy_info"] = {"upper_bound": upper_bound}
    if strategy in MEMORY:
        record["memory"] = MEMORY[strategy]
    if status == "ok":
        record.update(accuracy_matrix=matrix, metrics=summarize(matrix), timings={"total_seconds": seconds})
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
