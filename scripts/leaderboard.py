"""``forgetbench-leaderboard``: aggregate run records into Markdown, CSV, LaTeX and HTML leaderboards.

    forgetbench-leaderboard results/runs/mnist_grid                  # writes results/leaderboard.{md,csv,tex,html}
    forgetbench-leaderboard results/runs/a results/runs/b --out /tmp/board --formats md,html

Each file starts with the commands that made it: the sweeps' (from their multirun.yaml) and this one.
A record that cannot be used (unreadable, not a JSON object, an ok record missing keys) is skipped
with a warning on stderr naming it; a directory that does not exist is an error (exit status 2).
"""
import argparse
import shlex
import sys
from pathlib import Path


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="forgetbench-leaderboard", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep directories (searched recursively for record.json)")
    parser.add_argument("--out", type=Path, default=Path("results/leaderboard"), help="output path without suffix")
    parser.add_argument("--formats", default="md,csv,tex,html", help="comma-separated subset of md,csv,tex,html")
    parser.add_argument("--references", type=Path, default=Path("results/reference"),
                        help="folder of published-number CSVs (skipped when missing)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--note", action="append", default=[], help="a line to add under the commands (repeatable)")
    args = parser.parse_args(argv)
    missing = [f"{d}: {'not a directory' if d.exists() else 'no such directory'}" for d in args.dirs if not d.is_dir()]
    if missing:
        parser.error("; ".join(missing))

    from forgetbench.benchmarks import html_report, leaderboard, records, tables

    writers = {"md": tables.to_markdown, "csv": tables.to_csv, "tex": tables.to_latex, "html": html_report.to_html}
    formats = args.formats.split(",")
    unknown = set(formats) - set(writers)
    if unknown:
        parser.error(f"unknown format(s) {sorted(unknown)}; choose from {list(writers)}")
    try:
        board = leaderboard.build(args.dirs, args.references, args.confidence)
    except leaderboard.NoRunsError as error:
        for message in error.warnings:
            print(f"warning: {message}", file=sys.stderr)
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    header = [*leaderboard.sweep_commands(args.dirs), shlex.join(["forgetbench-leaderboard", *argv]), *args.note]
    for fmt in formats:
        path = args.out.with_name(f"{args.out.name}.{fmt}")
        records.atomic_write_text(path, writers[fmt](board, header))
        print(f"wrote {path}", file=sys.stderr)
    for message in board.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if board.failed:
        print(f"left out {len(board.failed)} failed run(s): {', '.join(board.failed)}", file=sys.stderr)
    print(tables.to_markdown(board))


if __name__ == "__main__":
    main()
