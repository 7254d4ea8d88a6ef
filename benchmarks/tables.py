"""Leaderboard tables: Markdown (for a README), CSV and LaTeX (booktabs).

Cells read ``mean ± half-width of the 95% CI``. The best mean of each metric column is bold,
compared within a (stream, scenario) block: numbers across streams or scenarios don't compete,
and neither do the upper bounds (strategies registered with ``upper_bound``: joint training,
cumulative retraining), shown for reference. Each row shows the memory its strategy keeps at the
end of the stream: stored samples and bytes (``Memory`` in forgetbench/strategies/registry.py).
"""
from __future__ import annotations

import math

import pandas as pd

from forgetbench.benchmarks.leaderboard import GROUP, METRICS, Leaderboard

TITLES = {"stream": "Stream", "scenario": "Scenario", "model": "Model", "strategy": "Strategy", "n": "n"}
DIGITS = {"time": 1}  # decimals per metric; 3 otherwise
BLOCK = ["stream", "scenario"]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def cell(mean, ci, digits: int = 3, pm: str = "±", missing: str = "–") -> str:
    """``0.198 ± 0.003``; the mean alone when the interval is undefined (n < 2); ``missing`` without a mean."""
    if _missing(mean):
        return missing
    return f"{mean:.{digits}f}" if _missing(ci) else f"{mean:.{digits}f} {pm} {ci:.{digits}f}"


def best(table: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame (rows x metrics): the row has the best mean of its (stream, scenario) block
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


def published_metrics(table: pd.DataFrame) -> list[str]:
    return [m for m in METRICS if f"published_{m}" in table and table[f"published_{m}"].notna().any()]


def cells(lb: Leaderboard, bold, pm: str = "±", missing: str = "–", escape=str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of display strings; ``bold(text)`` marks the best cells."""
    table = lb.table
    published = published_metrics(table)
    header = [TITLES[c] for c in (*GROUP, "n")] + ["Stored samples", "Memory (MB)"]
    for metric, (title, _) in METRICS.items():
        header.append(title)
        if metric in published:
            header.append(f"Published {title}")
    marks = best(table)
    rows = []
    for i, row in table.iterrows():
        out = [escape(str(row[c])) for c in GROUP] + [str(row["n"]), *memory_cells(row, missing)]
        for metric in METRICS:
            text = cell(row[f"{metric}_mean"], row[f"{metric}_ci"], DIGITS.get(metric, 3), pm, missing)
            out.append(bold(text) if marks.loc[i, metric] else text)
            if metric in published:
                value = row[f"published_{metric}"]
                refs = ",".join(str(r) for r in row["published_ref"])
                out.append("" if _missing(value) else f"{value:.3f} [{refs}]")
        rows.append(out)
    return header, rows


def references(lb: Leaderboard) -> list[str]:
    """``[k] citation. Protocol: ...`` for the sources of the published numbers shown."""
    return [f"[{k}] {r['citation']}. Protocol: {r['protocol']}"
            for k, r in enumerate(lb.references.to_dict("records"), start=1)]


def to_markdown(lb: Leaderboard, header_lines=()) -> str:
    header, rows = cells(lb, bold=lambda t: f"**{t}**")
    lines = ["```sh", *header_lines, "```", ""] if header_lines else []
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < len(GROUP) else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = references(lb)
    if notes:
        lines += ["", "Published numbers (shown where the protocol conditions match; see each protocol):", ""]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def to_csv(lb: Leaderboard, header_lines=()) -> str:
    """Machine-readable: every mean and CI half-width; ``#`` lines on top (``pd.read_csv(comment="#")``)."""
    table = lb.table.copy()
    if "published_ref" in table:
        table["published_ref"] = table["published_ref"].apply(lambda r: " ".join(map(str, r)))
    body = table.to_csv(index=False, float_format="%.6g")
    return "".join(f"# {line}\n" for line in header_lines) + body


def _latex_escape(text: str) -> str:
    for char, replacement in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                              ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}")):
        text = text.replace(char, replacement)
    return text


def to_latex(lb: Leaderboard, header_lines=()) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); header lines become ``%`` comments."""
    header, rows = cells(lb, bold=lambda t: rf"\textbf{{{t}}}", pm=r"$\pm$", missing="--",
                         escape=_latex_escape)
    lines = [f"% {line}" for line in header_lines]
    lines += [r"\begin{tabular}{" + "l" * len(GROUP) + "r" * (len(header) - len(GROUP)) + "}", r"\toprule",
              " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {_latex_escape(note)}" for note in references(lb)]
    return "\n".join(lines) + "\n"
