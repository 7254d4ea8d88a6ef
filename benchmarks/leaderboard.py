"""Leaderboard: run records -> one row per (stream, scenario, split, model, strategy), mean ± 95% CI over
seeds, next to published numbers whose protocol matches (test-split rows only: papers report test numbers).

Reads every ``record.json`` under the given directories (sweep directories, or ``results/runs``).
A run counted twice (same resolved config, e.g. re-run with ``force=true``) counts once: its
latest finished record. Failed (or interrupted) runs are left out and reported. A record that
cannot be used (unreadable JSON, not a JSON object, another status, an ok record missing what the
table needs) is skipped with a warning naming the file and why. Those warnings, the failed runs and
the groups that mix settings are the board's :meth:`~Leaderboard.notes`, shown in every output.
Intransigence is recomputed against the joint-training runs read (same stream, scenario, model and
seed), so it does not depend on whether a run finished before its joint reference did.

Every published number whose conditions a test-split group satisfies is one row of
:attr:`Leaderboard.published` (with whether it was checked in the paper or the authors' files: its
``verified`` entry); the table shows one per metric (a verified one first), the reproduction table
(:mod:`~benchmarks.reproduction`) all of them.
"""
from __future__ import annotations

import json
import math
import string
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from forgetbench.benchmarks.metrics import intransigence
from forgetbench.benchmarks.records import flatten, reference_key, standing_records
from forgetbench.benchmarks.stats import mean_ci
from forgetbench.benchmarks.sweep import identity

GROUP = ["stream", "scenario", "eval_split", "sweep", "model", "strategy"]
# eval_split: "test", or "validation"; sweep: the input directory's name with ``by_sweep`` (one protocol per
# directory, so the same strategy under two protocols makes two rows), "" otherwise (hidden)
# metric -> (column title, higher is better)
METRICS = {
    "acc": ("ACC", True),
    "avg_inc_acc": ("Avg inc. ACC", True),
    "task_masked_acc": ("Task-masked ACC", True),  # class-IL runs scored with only each experience's classes
    "bwt": ("BWT", True),
    "fwt": ("FWT", True),
    "forgetting": ("Forgetting", False),
    "intransigence": ("Intransigence", False),
    "time": ("Time (s)", False),
    "wake_time": ("Wake (s)", False),  # training time outside sleep phases
    "sleep_time": ("Sleep (s)", False),  # time in sleep phases (strategies/sleep.py)
}
TIMES = ("time", "wake_time", "sleep_time")  # from the record's timings; the other metrics from its metrics
SLEEP_COLUMNS = ("wake_time", "sleep_time")  # shown only in a board where some run slept
PUBLISHED_KEY = ["stream", "scenario", "model", "strategy"]  # what a published number is matched on
REFERENCE_COLUMNS = [*PUBLISHED_KEY, "metric", "value", "reported", "conditions", "citation", "protocol", "verified"]
# verified: where the number was read: "paper", "authors_files" (the authors' repository or data), or
# "unverified: <why>" (e.g. a third-party transcription); files written before the column: NO_VERIFIED_COLUMN
VERIFIED = ("paper", "authors_files")
UNVERIFIED = "unverified"
NO_VERIFIED_COLUMN = "unverified: no verified column"
GAPS_FILE = "gaps.csv"  # in the reference folder: why our number differs from a published one (not a reference file)
GAP_COLUMNS = ["stream", "scenario", "strategy", "note"]  # and optionally "metric" (blank: every metric)
PUBLISHED_COLUMNS = [*GROUP, "metric", "value", "reported", "verified", "citation", "protocol", "marker"]
LEGACY_UPPER_BOUNDS = ("joint", "cumulative")  # records written before strategies declared upper_bound
LEGACY_OFFLINE = ("joint",)  # ... or offline
FAILED = ("failed", "interrupted")  # left out and reported (until a later run of the config finishes)


@dataclass
class Leaderboard:
    table: pd.DataFrame  # GROUP, n, upper_bound, offline, memory_samples, memory_bytes, <metric>_mean, <metric>_ci,
    #                      published_<metric>, published_<metric>_ref (a marker of ``references``)
    runs: pd.DataFrame  # one row per counted run
    references: pd.DataFrame  # citation, protocol and marker (1, or 2a, 2b, ...) of the published numbers shown
    failed: list[str] = field(default_factory=list)  # paths of failed or interrupted runs, left out
    warnings: list[str] = field(default_factory=list)  # groups that mix settings, then records skipped
    commands: list[str] = field(default_factory=list)  # what made the runs (:func:`run_commands`)
    confidence: float = 0.95
    # every published number that matches a test-split group (:data:`PUBLISHED_COLUMNS`, :func:`match_references`)
    published: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PUBLISHED_COLUMNS))
    gap_notes: dict = field(default_factory=dict)  # why ours differs from a published number (:func:`load_gap_notes`)

    def notes(self) -> list[str]:
        """What a reader of the numbers must know, one line each, in every output and on the terminal."""
        failed = [f"left out {len(self.failed)} failed run(s): {', '.join(self.failed)}"] if self.failed else []
        return [*self.warnings, *failed]

    def matrices(self) -> dict[tuple, np.ndarray]:
        """Mean accuracy matrix ((T+1) x T, NaN where no run has the row) per group."""
        out = {}
        for key, group in self.runs.groupby(GROUP, sort=True):
            stacked = np.array([np.asarray(m, dtype=float) for m in group["accuracy_matrix"]])
            with warnings.catch_warnings():  # rows no run has (joint training) stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                out[key] = np.nanmean(stacked, axis=0)
        return out


class NoRunsError(FileNotFoundError):
    """No usable finished run under the directories; ``warnings`` says which records were skipped and why."""

    def __init__(self, message: str, warnings: list[str]):
        super().__init__(message)
        self.warnings = warnings


# what an ok record must hold for the table: key -> what its value must be
REQUIRED = {**{k: str for k in PUBLISHED_KEY}, "seed": int, "accuracy_matrix": list, "metrics": dict, "timings": dict,
            "config": dict}
_KIND = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def read_run_record(path: Path) -> tuple[dict | None, str | None]:
    """``(record, None)``, or ``(None, why)`` when ``path`` is not a JSON object."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        return None, f"unreadable ({error.strerror or error})"
    try:
        record = json.loads(text)
    except ValueError as error:  # JSONDecodeError, e.g. a record cut short by a killed run
        return None, f"unreadable JSON ({error})" if text.strip() else "empty file"
    if not isinstance(record, dict):
        return None, f"not a JSON object (a JSON {type(record).__name__})"
    return record, None


def unusable(record: dict) -> str | None:
    """Why a record with status ok cannot be counted (keys missing or of the wrong type), or None."""
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return f"status ok but missing {', '.join(missing)}"
    wrong = [f"{k} is not {_KIND[t]}" for k, t in REQUIRED.items()
             if not isinstance(record[k], t) or (t is int and isinstance(record[k], bool))]
    if wrong:
        return f"status ok but {'; '.join(wrong)}"
    try:
        matrix = np.asarray(record["accuracy_matrix"], dtype=float)
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] + 1:
        return "status ok but accuracy_matrix is not a (T+1) x T matrix of numbers"
    if not isinstance(record["timings"].get("total_seconds"), (int, float)):
        return "status ok but timings has no total_seconds"
    return None


def record_paths(dirs) -> dict[Path, Path]:
    """Every ``record.json`` under ``dirs``, sorted, with the directory it was found under (the first
    given, if under several); a directory that does not exist is an error, not an empty one."""
    for d in dirs:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"{d}: {'not a directory' if Path(d).exists() else 'no such directory'}")
    found = {}
    for d in dirs:
        for path in Path(d).rglob("record.json"):
            found.setdefault(path, Path(d))
    return dict(sorted(found.items()))


def load_runs(dirs, by_sweep: bool = False) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Finished runs under ``dirs`` (one row each, newest record per config), the paths of the failed
    runs whose config has no finished run, and one warning per record skipped (``<path>: why``).
    ``by_sweep``: each run's ``sweep`` is the name of the directory it was found under."""
    rows, failed, skipped, candidates = [], [], [], []
    found = record_paths(dirs)
    for path in found:
        record, why = read_run_record(path)
        status = record.get("status") if record is not None else None
        if record is not None and status not in FAILED:
            why = unusable(record) if status == "ok" else (
                "no status" if status is None else f"status {status!r}: not a finished run")
        if why:
            skipped.append(f"skipped {path}: {why}")
        else:
            candidates.append((path, record))
    sweep_of = (lambda path: found[path].resolve().name) if by_sweep else None
    for path, record in sorted(standing_records(candidates, sweep_of)):  # a failed one: its config never finished
        if record["status"] in FAILED:
            failed.append(str(path.parent))
            continue
        row = {k: record[k] for k in (*PUBLISHED_KEY, "seed")}
        row["eval_split"] = record.get("eval_split") or "test"  # records from before validation splits: test
        row["sweep"] = sweep_of(path) if by_sweep else ""
        row.update({m: record["metrics"].get(m) for m in METRICS if m not in TIMES})
        memory, info = record.get("memory") or {}, record.get("strategy_info") or {}
        row.update(memory_samples=memory.get("samples"), memory_bytes=memory.get("bytes"),
                   upper_bound=info.get("upper_bound", record["strategy"] in LEGACY_UPPER_BOUNDS),
                   offline=info.get("offline", record["strategy"] in LEGACY_OFFLINE))
        timings = record["timings"]
        slept = timings.get("sleep_seconds")
        row.update(time=timings["total_seconds"], sleep_time=math.nan if slept is None else slept,
                   wake_time=timings.get("train_seconds", math.nan) - (slept or 0.0),
                   accuracy_matrix=record["accuracy_matrix"],
                   config=record["config"],
                   command=record.get("command") or "", sweep_command=record.get("sweep_command") or "",
                   started_at=record.get("started_at") or record.get("finished_at") or "",
                   finished_at=record.get("finished_at", ""), path=str(path.parent))
        rows.append(row)
    columns = [*GROUP, "seed", *METRICS, "memory_samples", "memory_bytes", "upper_bound", "offline", "accuracy_matrix",
               "config", "command", "sweep_command", "started_at", "finished_at", "path"]
    runs = pd.DataFrame(rows, columns=columns)
    return with_intransigence(runs.sort_values([*GROUP, "seed"]).reset_index(drop=True)), failed, skipped


def with_intransigence(runs: pd.DataFrame) -> pd.DataFrame:
    """Intransigence of every run against the joint run among ``runs`` with the same
    :func:`~benchmarks.records.reference_key`; the record's own value stays where there is none."""
    joint = {reference_key(c): m[-1] for s, c, m in zip(runs["strategy"], runs["config"], runs["accuracy_matrix"])
             if s == "joint"}
    references = [joint.get(reference_key(c)) for c in runs["config"]]
    computed = [intransigence(m, ref) if ref is not None else value
                for m, ref, value in zip(runs["accuracy_matrix"], references, runs["intransigence"])]
    return runs.assign(intransigence=computed)


def mixed_settings(runs: pd.DataFrame) -> list[str]:
    """One warning per group whose runs differ in more than the seed (e.g. epochs or buffer size)."""
    messages = []
    for key, group in runs.groupby(GROUP, sort=True):
        flat = pd.DataFrame([flatten(identity(c)) for c in group["config"]]).astype(str)
        differing = [c for c in flat.columns if flat[c].nunique() > 1 and c.split(".")[-1] != "seed"]
        if differing:
            name = dict(zip(GROUP, key))
            where = "/".join([*(name[k] for k in PUBLISHED_KEY), *([name["sweep"]] if name["sweep"] else [])])
            messages.append(f"{where} ({name['eval_split']}): runs differ in "
                            f"{', '.join(differing)}; their mean mixes settings")
    return messages


def verified_entry(text: str) -> str | None:
    """A ``verified`` cell as stored: ``paper``, ``authors_files`` or ``unverified: <why>`` (a blank cell:
    ``unverified: verified left blank``); None when it is none of these."""
    text = text.strip()
    if text in VERIFIED:
        return text
    if not text:
        return f"{UNVERIFIED}: verified left blank"
    head, colon, why = text.partition(":")
    if head.strip() == UNVERIFIED:
        return f"{UNVERIFIED}: {why.strip() or 'no reason given'}"
    return None


def unverified_reason(verified: str) -> str | None:
    """Why a published number is not verified (the text after ``unverified:``), or None when it is."""
    return None if verified in VERIFIED else verified.partition(":")[2].strip()


def load_references(folder: Path | str) -> pd.DataFrame:
    """Published numbers: every ``*.csv`` in ``folder`` (but :data:`GAPS_FILE`) with :data:`REFERENCE_COLUMNS`;
    a file without ``verified`` (written before it) counts as :data:`NO_VERIFIED_COLUMN`."""
    frames = []
    for path in sorted(Path(folder).glob("*.csv")):
        if path.name == GAPS_FILE:
            continue
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = set(REFERENCE_COLUMNS) - set(frame.columns) - {"verified"}
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {REFERENCE_COLUMNS}")
        if "verified" not in frame:
            frame["verified"] = NO_VERIFIED_COLUMN
        entries = [verified_entry(v) for v in frame["verified"]]
        wrong = [f"line {i + 2}: {v!r}" for i, (v, e) in enumerate(zip(frame["verified"], entries)) if e is None]
        if wrong:
            raise ValueError(f"{path}: verified must be paper, authors_files or 'unverified: <why>' "
                             f"({'; '.join(wrong)})")
        frames.append(frame.assign(verified=entries))
    refs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REFERENCE_COLUMNS)
    refs["value"] = pd.to_numeric(refs["value"])
    return refs[REFERENCE_COLUMNS]


def load_gap_notes(path: Path | str) -> dict[tuple[str, str, str, str], str]:
    """What differs from the paper / what was tried, per published number our number misses:
    ``{(stream, scenario, strategy, metric): note}`` from a CSV with :data:`GAP_COLUMNS` and optionally
    ``metric`` (blank or absent: every metric, key metric ``""``). A key given twice is an error."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(GAP_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; expected {GAP_COLUMNS} and optionally metric")
    notes = {}
    for i, row in frame.iterrows():
        key = (row["stream"].strip(), row["scenario"].strip(), row["strategy"].strip(), row.get("metric", "").strip())
        if key in notes:
            raise ValueError(f"{path}: line {i + 2}: {'/'.join(k for k in key if k)} given twice")
        notes[key] = row["note"].strip()
    return notes


def gap_note(notes: dict, stream: str, scenario: str, strategy: str, metric: str) -> str | None:
    """The note for this metric, else the one for every metric of (stream, scenario, strategy), else None."""
    return notes.get((stream, scenario, strategy, metric)) or notes.get((stream, scenario, strategy, ""))


def _lookup(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def protocol_matches(conditions: str, configs) -> bool:
    """True when every ``key=value`` in ``conditions`` (a dotted config key, a JSON value; space-separated)
    holds in every config, e.g. ``stream.n_experiences=5 model.hidden_sizes=[400,400]``."""
    for condition in conditions.split():
        key, _, expected = condition.partition("=")
        if any(_lookup(config, key) != json.loads(expected) for config in configs):
            return False
    return True


def match_references(runs: pd.DataFrame, references: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every published number whose conditions all runs of a test-split group satisfy (papers report
    test-set numbers: never next to validation numbers), one row each (:data:`PUBLISHED_COLUMNS`), in
    group order then file order; and the sources of those numbers (:func:`cite`), whose markers the rows carry."""
    rows = []
    for key, group in runs.groupby(GROUP, sort=True):
        name = dict(zip(GROUP, key))
        if references is None or name["eval_split"] != "test":
            continue
        candidates = references[(references[PUBLISHED_KEY] == pd.Series({k: name[k] for k in PUBLISHED_KEY}))
                                .all(axis=1)]
        for _, ref in candidates.iterrows():
            if protocol_matches(ref["conditions"], group["config"]):
                rows.append({**name, **{c: ref[c] for c in PUBLISHED_COLUMNS if c in ref}})
    published = pd.DataFrame(rows, columns=PUBLISHED_COLUMNS)
    sources = cite(list(dict.fromkeys(zip(published["citation"], published["protocol"]))))  # in order of first use
    markers = dict(zip(zip(sources["citation"], sources["protocol"]), sources["marker"]))
    published["marker"] = [markers[source] for source in zip(published["citation"], published["protocol"])]
    return published, sources


def aggregate(runs: pd.DataFrame, references: pd.DataFrame | None = None, confidence: float = 0.95):
    """One row per group: n, mean and CI half-width per metric, and per metric one of the published
    numbers that match (:func:`match_references`; a verified one first, then the first in file order):
    ``published_<metric>``, its marker ``published_<metric>_ref`` and ``published_<metric>_verified``.
    Returns the table, every match and the sources (:func:`cite`)."""
    published, sources = match_references(runs, references)
    first = published.assign(unverified=~published["verified"].isin(VERIFIED)).sort_values(
        "unverified", kind="stable").drop_duplicates([*GROUP, "metric"]).set_index([*GROUP, "metric"])
    rows = []
    for key, group in runs.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, key), n=len(group), upper_bound=bool(group["upper_bound"].any()),
                   offline=bool(group["offline"].all()),
                   memory_samples=group["memory_samples"].max(), memory_bytes=group["memory_bytes"].max())
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_ci"], _ = mean_ci(group[metric], confidence)
        for metric in published["metric"].unique():
            if (*key, metric) in first.index:
                ref = first.loc[(*key, metric)]
                row.update({f"published_{metric}": ref["value"], f"published_{metric}_ref": ref["marker"],
                            f"published_{metric}_verified": ref["verified"]})
        rows.append(row)
    return pd.DataFrame(rows), published, sources


def shown_metrics(table: pd.DataFrame) -> list[str]:
    """The metric columns a board shows: all, less wake and sleep time unless some run slept."""
    slept = "sleep_time_mean" in table and table["sleep_time_mean"].notna().any()
    return [m for m in METRICS if slept or m not in SLEEP_COLUMNS]


def cite(sources: list[tuple[str, str]]) -> pd.DataFrame:
    """Markers for (citation, protocol) pairs: one number per citation, in order of first use, and a
    letter per protocol when a citation has several (1, 2a, 2b): every number of a paper points at its one entry."""
    protocols: dict[str, list[str]] = {}
    for citation, protocol in sources:
        protocols.setdefault(citation, []).append(protocol)
    rows = [(citation, protocol, f"{number}{string.ascii_lowercase[i] if len(listed) > 1 else ''}")
            for number, (citation, listed) in enumerate(protocols.items(), start=1)
            for i, protocol in enumerate(listed)]
    return pd.DataFrame(rows, columns=["citation", "protocol", "marker"])


def multirun_command(sweep_dir: Path) -> str | None:
    """The sweep's command line rebuilt from Hydra's ``multirun.yaml`` in ``sweep_dir`` (None without one):
    the fallback for records written before they kept their commands."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    overrides = OmegaConf.load(path).hydra.overrides
    return " ".join(["forgetbench -m", *[o for o in overrides.hydra if o != "hydra.mode=MULTIRUN"], *overrides.task])


def run_commands(runs: pd.DataFrame) -> list[str]:
    """Every command that made ``runs``, once each, in the order the runs started: a run's sweep command
    line, else its own command; for older records, its sweep directory's ``multirun.yaml``."""
    commands, fallback = {}, {}  # (a dict keeps the order); fallback: sweep dir -> its multirun.yaml's
    for _, run in runs.sort_values("started_at", kind="stable").iterrows():
        line = run["sweep_command"] or run["command"]
        if not line:
            folder = Path(run["path"]).parent
            if folder not in fallback:
                fallback[folder] = multirun_command(folder)
            line = fallback[folder]
        if line:
            commands.setdefault(line)
    return list(commands)


def build(dirs, reference_dir: Path | str | None = None, confidence: float = 0.95,
          gaps: Path | str | None = None, by_sweep: bool = False) -> Leaderboard:
    """The leaderboard of the run records under ``dirs``, with the published numbers in ``reference_dir``
    and the notes on gaps in ``gaps`` (default: :data:`GAPS_FILE` in ``reference_dir``, when there is one).
    Raises FileNotFoundError for a directory that does not exist, and :class:`NoRunsError` (with the
    skipped records' warnings) when none is usable. ``by_sweep``: one row per input directory and
    strategy (a "Sweep" column), for directories that each hold one protocol."""
    runs, failed, skipped = load_runs(dirs, by_sweep)
    if runs.empty:
        raise NoRunsError(f"no finished run records (record.json, status ok) under {[str(d) for d in dirs]}"
                          + (f"; {len(skipped)} skipped" if skipped else ""), skipped)
    has_references = bool(reference_dir) and Path(reference_dir).is_dir()
    references = load_references(reference_dir) if has_references else None
    if gaps is None and has_references and (Path(reference_dir) / GAPS_FILE).is_file():
        gaps = Path(reference_dir) / GAPS_FILE
    table, published, sources = aggregate(runs, references, confidence)
    return Leaderboard(table, runs, sources, failed, mixed_settings(runs) + skipped, run_commands(runs), confidence,
                       published, load_gap_notes(gaps) if gaps is not None else {})
