"""Leaderboard tables: Markdown (for a README), CSV and LaTeX (booktabs).

Cells read ``mean ± half-width of the 95% CI``. The best mean of each metric column is bold,
compared within a (stream, scenario, split) block: numbers across streams, scenarios or evaluation
splits don't compete, and neither do the upper bounds (strategies registered with ``upper_bound``:
joint training, cumulative retraining), shown for reference. Each row shows the memory its strategy keeps at the
end of the stream: stored samples and bytes (``Memory`` in forgetbench/strategies/registry.py).
Every format also holds the commands that made it, the sentences given with ``--note`` (``remarks``),
the board's notes (:meth:`Leaderboard.notes`) and one entry per cited paper. A published number not
verified in the paper or the authors' files carries a ``†``, and a legend line says why (:func:`legend`).
"""
from __future__ import annotations

import math

import pandas as pd

from forgetbench.benchmarks.leaderboard import (GROUP, METRICS, SLEEP_COLUMNS, Leaderboard, shown_metrics,
                                               unverified_reason)

TITLES = {"stream": "Stream", "scenario": "Scenario", "eval_split": "Split", "sweep": "Sweep", "model": "Model",
          "strategy": "Strategy",
          "n": "n"}
DIGITS = {"time": 1, "wake_time": 1, "sleep_time": 1}  # decimals per metric; 3 otherwise
BLOCK = ["stream", "scenario", "eval_split", "sweep"]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def cell(mean, ci, digits: int = 3, pm: str = "±", missing: str = "–") -> str:
    """``0.198 ± 0.003``; the mean alone when the interval is undefined (n < 2); ``missing`` without a mean."""
    if _missing(mean):
        return missing
    return f"{mean:.{digits}f}" if _missing(ci) else f"{mean:.{digits}f} {pm} {ci:.{digits}f}"


def group_columns(table: pd.DataFrame, columns=GROUP) -> list[str]:
    """The group columns shown (of ``columns``, :data:`GROUP` by default): less ``sweep`` unless the board
    is by sweep (some row names one)."""
    return [c for c in columns if c != "sweep" or table["sweep"].astype(bool).any()]


def best(table: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame (rows x metrics): the row has the best mean of its :data:`BLOCK`
    among the continual strategies (none when all their means are equal as displayed)."""
    out = pd.DataFrame(False, index=table.index, columns=list(METRICS))
    for _, block in table[~table["upper_bound"].astype(bool)].groupby(BLOCK):
        for metric, (_, higher_is_better) in METRICS.items():
            means = block[f"{metric}_mean"].dropna().round(DIGITS.get(metric, 3))  # ties as displayed
            if len(means) > 1 and means.nunique() > 1:
                target = means.max() if higher_is_better else means.min()
                out.loc[means.index[means == target], metric] = True
    return out


def memory_cells(row, missing: str = "–") -> list[str]:
    """Stored samples and megabytes (10^6 bytes) kept by the strategy; ``missing`` where not declared."""
    samples, size = row.get("memory_samples"), row.get("memory_bytes")
    return [missing if _missing(samples) else f"{int(samples)}", missing if _missing(size) else f"{size / 1e6:.2f}"]


DAGGER = "†"
UNVERIFIED_LEGEND = f"{DAGGER} not verified in the paper or the authors' files"


def published_cell(value, marker, verified: str, digits: int = 3, dagger: str = DAGGER) -> str:
    """``0.199 [1]``, or ``0.199† [1]`` for a number not verified in the paper or the authors' files."""
    return f"{value:.{digits}f}{'' if unverified_reason(verified) is None else dagger} [{marker}]"


def legend(numbers) -> list[str]:
    """One line per reason among the unverified numbers, given as (verified, marker) pairs:
    ``† not verified in the paper or the authors' files ([2], [3]): <why>``; none when all are verified."""
    reasons: dict[str, list[str]] = {}
    for verified, marker in numbers:
        why = unverified_reason(verified)
        if why is not None and marker not in reasons.setdefault(why, []):
            reasons[why].append(marker)
    return [f"{UNVERIFIED_LEGEND} ({', '.join(f'[{m}]' for m in markers)}): {why}" for why, markers in reasons.items()]


def table_legend(table: pd.DataFrame) -> list[str]:
    """:func:`legend` of the published numbers a leaderboard table shows."""
    numbers = []
    for metric in METRICS:
        if f"published_{metric}_verified" in table:
            shown = table[table[f"published_{metric}"].notna()]
            numbers += zip(shown[f"published_{metric}_verified"], shown[f"published_{metric}_ref"])
    return legend(numbers)


def published_metrics(table: pd.DataFrame) -> list[str]:
    return [m for m in METRICS if f"published_{m}" in table and table[f"published_{m}"].notna().any()]


def cells(lb: Leaderboard, bold, pm: str = "±", missing: str = "–", escape=str,
          dagger: str = DAGGER) -> tuple[list[str], list[list[str]]]:
    """Header and rows of display strings; ``bold(text)`` marks the best cells, ``dagger`` the published
    numbers not verified."""
    table = lb.table
    published = published_metrics(table)
    metrics = shown_metrics(table)
    group = group_columns(table)
    header = [TITLES[c] for c in (*group, "n")] + ["Stored samples", "Memory (MB)"]
    for metric in metrics:
        title = METRICS[metric][0]
        header.append(title)
        if metric in published:
            header.append(f"Published {title}")
    marks = best(table)
    rows = []
    for i, row in table.iterrows():
        out = [escape(str(row[c])) for c in group] + [str(row["n"]), *memory_cells(row, missing)]
        for metric in metrics:
            text = cell(row[f"{metric}_mean"], row[f"{metric}_ci"], DIGITS.get(metric, 3), pm, missing)
            out.append(bold(text) if marks.loc[i, metric] else text)
            if metric in published:
                value = row[f"published_{metric}"]
                out.append("" if _missing(value) else published_cell(value, row[f"published_{metric}_ref"],
                                                                     row[f"published_{metric}_verified"], 3, dagger))
        rows.append(out)
    return header, rows


REFERENCES_TITLE = "Published numbers (shown where the protocol conditions match; see each protocol):"


def references(lb: Leaderboard) -> list[tuple[str, list[str]]]:
    """One entry per cited paper: ``("[1] citation. Protocol: ...", [])``, or for a paper whose numbers
    come under several protocols ``("[2] citation", ["[2a] Protocol: ...", "[2b] Protocol: ..."])``."""
    entries = []
    for citation, sources in lb.references.groupby("citation", sort=False):
        marked = [f"[{m}] Protocol: {p}" for m, p in zip(sources["marker"], sources["protocol"])]
        if len(marked) == 1:
            entries.append((f"[{sources['marker'].iloc[0]}] {citation}. Protocol: {sources['protocol'].iloc[0]}", []))
        else:
            entries.append((f"[{sources['marker'].iloc[0][:-1]}] {citation}", marked))
    return entries


def note_lines(lb: Leaderboard) -> list[str]:
    """The notes, the references and the unverified numbers' legend as plain lines, for the formats that
    carry them as comments."""
    notes = lb.notes()
    lines = ["Notes:", *[f"- {note}" for note in notes]] if notes else []
    entries = references(lb)
    if entries:
        lines += [REFERENCES_TITLE, *[line for entry, protocols in entries
                                      for line in (entry, *[f"  {p}" for p in protocols])]]
    return lines + table_legend(lb.table)


def comments(prefix: str, lines) -> list[str]:
    """``prefix line`` per line (a text holding newlines gives several)."""
    return [f"{prefix} {part}".rstrip() for line in lines for part in (str(line).splitlines() or [""])]


def markdown_head(commands=(), remarks=()) -> list[str]:
    """The commands in a ``sh`` block, then the remarks as paragraphs (the top of every Markdown output)."""
    lines = ["```sh", *commands, "```", ""] if commands else []
    return lines + [line for remark in remarks for line in (remark, "")]


def markdown_table(header: list[str], rows: list[list[str]], right) -> list[str]:
    """A Markdown table; the columns named in ``right`` right-aligned, ``|`` in a cell escaped."""
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if h in right else "---" for h in header) + "|",
            *["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]]


def markdown_notes(lb: Leaderboard) -> list[str]:
    """The board's notes as a Markdown list under a "Notes:" line (nothing when there are none)."""
    notes = lb.notes()
    return ["", "Notes:", "", *[f"- {note}" for note in notes]] if notes else []


def markdown_references(lb: Leaderboard) -> list[str]:
    """One list entry per cited paper, its protocols nested under it."""
    return [line for entry, protocols in references(lb) for line in (f"- {entry}", *[f"  - {p}" for p in protocols])]


def to_markdown(lb: Leaderboard, commands=(), remarks=()) -> str:
    """The commands in a ``sh`` block, the remarks as paragraphs, the table, then the notes and references."""
    header, rows = cells(lb, bold=lambda t: f"**{t}**")
    right = header[len(group_columns(lb.table)):]
    lines = [*markdown_head(commands, remarks), *markdown_table(header, rows, right), *markdown_notes(lb)]
    entries = markdown_references(lb)
    if entries:
        lines += ["", REFERENCES_TITLE, "", *entries]
    lines += [f"- {line}" for line in table_legend(lb.table)]
    return "\n".join(lines) + "\n"


def to_csv(lb: Leaderboard, commands=(), remarks=()) -> str:
    """Machine-readable: every mean and CI half-width; the commands, remarks, notes and references as
    ``#`` lines on top (``pd.read_csv(path, comment="#")``)."""
    hidden = [f"{m}_{part}" for m in SLEEP_COLUMNS if m not in shown_metrics(lb.table) for part in ("mean", "ci")]
    hidden += [c for c in GROUP if c not in group_columns(lb.table)]
    body = lb.table.drop(columns=hidden, errors="ignore").to_csv(index=False, float_format="%.6g")
    return "".join(f"{line}\n" for line in comments("#", [*commands, *remarks, *note_lines(lb)])) + body


def _latex_escape(text: str) -> str:
    for char, replacement in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                              ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}")):
        text = text.replace(char, replacement)
    return text


def to_latex(lb: Leaderboard, commands=(), remarks=()) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); the commands and remarks as ``%`` lines
    above it, the notes and references below."""
    header, rows = cells(lb, bold=lambda t: rf"\textbf{{{t}}}", pm=r"$\pm$", missing="--",
                         escape=_latex_escape, dagger=r"\textdagger{}")
    lines = comments("%", [*commands, *remarks])
    left = len(group_columns(lb.table))
    lines += [r"\begin{tabular}{" + "l" * left + "r" * (len(header) - left) + "}", r"\toprule",
              " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", *comments("%", note_lines(lb))]
    return "\n".join(lines) + "\n"
