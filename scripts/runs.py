"""``forgetbench-runs``: rebuild ``runs.csv`` of sweep directories from their run records.

    forgetbench-runs results/runs/mnist_grid
    forgetbench-runs results/runs/*/

``runs.csv`` is a view of the ``record.json`` files one level below it: one row per config (its
newest ``ok`` record, else its newest record). Sweeps rebuild it after every run and when they
start; this command rebuilds it by hand (e.g. after moving a record back from the fallback folder).
"""
import argparse
import sys
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="forgetbench-runs", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep directories (holding <run>/record.json)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    from forgetbench.benchmarks.records import rebuild_runs_csv

    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        parser.exit(2, f"forgetbench-runs: not a directory: {', '.join(missing)}\n")
    for folder in args.dirs:
        path, rows = rebuild_runs_csv(folder)
        print(f"wrote {path} ({rows} run(s))" if rows or path.exists() else f"{folder}: no run records")


if __name__ == "__main__":
    main()
