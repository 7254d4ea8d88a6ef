"""``forgetbench-leaderboard``: aggregate run records into Markdown, CSV, LaTeX and HTML leaderboards.

    forgetbench-leaderboard results/runs/mnist_grid    # writes results/runs/mnist_grid/leaderboard.{md,csv,tex,html}
    forgetbench-leaderboard results/runs/a results/runs/b --out /tmp/boards/ --formats md,html
    forgetbench-leaderboard results/runs/mnist_grid --out results/leaderboard   # the published table
    forgetbench-leaderboard results/runs/vandeven2019_* results/runs/buzzega2020_* --by-sweep --out results/papers/ \
        --reproduction results/reproduction.md --pairs   # + results/reproduction.{md,csv}, papers/leaderboard_pairs.{md,csv}

Each file holds the commands that made the runs (from their records) and this one, the ``--note``
sentences, and the notes printed on stderr: groups whose runs mix settings, failed runs left out,
records skipped (unreadable, not a JSON object, an ok record missing keys). A directory that does
not exist is an error (exit status 2). ``--reproduction PATH.md`` also writes the reproduction table
(ours next to each matching published number: gap, inside our CI, verified, what differs) to
``PATH.md`` and ``PATH.csv``; ``--pairs`` the paired-by-seed comparisons of ACC to ``<out>_pairs.{md,csv}``
(and as a section of the HTML page).
"""
import argparse
import os
import shlex
import sys
from pathlib import Path

STEM = "leaderboard"  # the file name, without suffix, in an output folder


def output_stem(out: str | None, dirs: list[Path], parser: argparse.ArgumentParser) -> Path:
    """Where the files go, without suffix: ``--out dir/`` (or an existing folder) -> ``dir/leaderboard``,
    ``--out path/name`` -> itself; no ``--out`` -> beside the one input directory."""
    if out is None:
        if len(set(dirs)) > 1:
            parser.error("several directories: say where the leaderboard goes with --out "
                         "(a folder: --out boards/, or a path without suffix: --out results/leaderboard)")
        return dirs[0] / STEM
    return Path(out) / STEM if out.endswith(("/", os.sep)) or Path(out).is_dir() else Path(out)


def quote(word: str) -> str:
    """A shell word as a person would type it: ``shlex.quote``, except that text with an apostrophe (and
    nothing the shell expands between double quotes) goes in double quotes: ``"paper's"``."""
    if "'" in word and not set(word) & set('"\\$`!'):
        return f'"{word}"'
    return shlex.quote(word)


def without_notes(argv: list[str]) -> list[str]:
    """``argv`` less its ``--note`` sentences, which the outputs show as prose."""
    kept, skip = [], False
    for word in argv:
        if not skip and word != "--note" and not word.startswith("--note="):
            kept.append(word)
        skip = word == "--note" and not skip
    return kept


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="forgetbench-leaderboard", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)  # --note is recognised only in full (see without_notes)
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep directories (searched recursively for record.json)")
    parser.add_argument("--out", help=f"a folder ending in / (writes {STEM}.*), or a path without suffix; "
                                      f"default: {STEM}.* in the one directory given")
    parser.add_argument("--formats", default="md,csv,tex,html", help="comma-separated subset of md,csv,tex,html")
    parser.add_argument("--references", type=Path, default=Path("results/reference"),
                        help="folder of published-number CSVs (skipped when missing)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--reproduction", metavar="PATH.md",
                        help="also write the reproduction table (ours vs each matching published number) to "
                             "PATH.md and PATH.csv")
    parser.add_argument("--gaps", type=Path, help="CSV of what differs from each paper where our number misses "
                                                  "(stream,scenario,strategy[,metric],note); default: gaps.csv in "
                                                  "the references folder, when there is one")
    parser.add_argument("--by-sweep", action="store_true",
                        help="one row per input directory and strategy, named in a Sweep column (for directories "
                             "that each hold one protocol, e.g. a paper's preset)")
    parser.add_argument("--pairs", action="store_true",
                        help="also write the paired-by-seed comparisons of ACC to <out>_pairs.md and .csv")
    parser.add_argument("--note", action="append", default=[],
                        help="a sentence shown with the commands, as prose (repeatable)")
    args = parser.parse_args(argv)
    missing = [f"{d}: {'not a directory' if d.exists() else 'no such directory'}" for d in args.dirs if not d.is_dir()]
    if missing:
        parser.error("; ".join(missing))
    if args.gaps is not None and not args.gaps.is_file():
        parser.error(f"--gaps {args.gaps}: no such file")
    stem = output_stem(args.out, args.dirs, parser)

    from forgetbench.benchmarks import html_report, leaderboard, records, reproduction, tables

    writers = {"md": tables.to_markdown, "csv": tables.to_csv, "tex": tables.to_latex, "html": html_report.to_html}
    formats = args.formats.split(",")
    unknown = set(formats) - set(writers)
    if unknown:
        parser.error(f"unknown format(s) {sorted(unknown)}; choose from {list(writers)}")
    try:
        board = leaderboard.build(args.dirs, args.references, args.confidence, args.gaps, args.by_sweep)
    except leaderboard.NoRunsError as error:
        for message in error.warnings:
            print(f"warning: {message}", file=sys.stderr)
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    except ValueError as error:  # a reference or gaps file that cannot be read as one
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    commands = [*board.commands, " ".join(map(quote, [parser.prog, *without_notes(argv)]))]
    pairs = reproduction.paired_comparisons(board.runs, "acc", board.confidence) if args.pairs else None
    writers["html"] = lambda *given: html_report.to_html(*given, pairs=pairs)  # with the pairs' section, if any
    outputs = {stem.with_name(f"{stem.name}.{fmt}"): (lambda w=writers[fmt]: w(board, commands, args.note))
               for fmt in formats}
    if args.reproduction:
        path = Path(args.reproduction)
        path = path if path.suffix == ".md" else path.with_name(f"{path.name}.md")
        outputs[path] = lambda: reproduction.reproduction_markdown(board, commands, args.note)
        outputs[path.with_suffix(".csv")] = lambda: reproduction.reproduction_csv(board, commands, args.note)
    if pairs is not None:
        outputs[stem.with_name(f"{stem.name}_pairs.md")] = lambda: reproduction.pairs_markdown(board, pairs, commands,
                                                                                             args.note)
        outputs[stem.with_name(f"{stem.name}_pairs.csv")] = lambda: reproduction.pairs_csv(board, pairs, commands,
                                                                                         args.note)
    for path, render in outputs.items():
        records.atomic_write_text(path, render())
        print(f"wrote {path}", file=sys.stderr)
    for note in board.notes():
        print(f"warning: {note}", file=sys.stderr)
    print(tables.to_markdown(board))


if __name__ == "__main__":
    main()
