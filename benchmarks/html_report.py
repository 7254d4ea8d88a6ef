"""The leaderboard as one self-contained HTML page: the sortable table first (a few lines of inline JS),
its notes right under it, the published numbers' sources (and why some are not verified), the commands
and ``--note`` sentences in a collapsed section, the reproduction table (ours next to each published
number that matches; :mod:`~benchmarks.reproduction`), the paired comparisons when asked for, then per
(stream, scenario, split) accuracy-over-experiences curves and the mean accuracy matrix of every
strategy as a heatmap. Figures are matplotlib PNGs embedded as base64, so
the page opens without network; they are shown at their own aspect ratio.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib.figure import Figure

from forgetbench.benchmarks.leaderboard import GROUP, Leaderboard
from forgetbench.benchmarks.metrics import seen_accuracy
from forgetbench.benchmarks.plots import heatmap
from forgetbench.benchmarks.reproduction import (pair_notes, pairs_cells, pairs_legend, reproduction,
                                                  reproduction_cells, reproduction_legend)
from forgetbench.benchmarks.tables import BLOCK, cells, group_columns, legend, references, table_legend

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { cursor: pointer; background: #f3f3f3; user-select: none; }
pre { background: #f6f6f6; padding: 8px; white-space: pre-wrap; }
.notes { background: #fff6e0; border-left: 4px solid #e0a000; padding: 4px 12px; margin: 8px 0; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.figures img { border: 1px solid #eee; max-width: 100%; height: auto; }
ul.refs { list-style: none; padding-left: 0; }
ul.refs ul { list-style: none; padding-left: 1.5em; }
th.text, td.text { text-align: left; white-space: normal; }
"""


def left_aligned(columns: int) -> str:
    """CSS aligning the first ``columns`` columns (the group columns) left."""
    return f"th:nth-child(-n+{columns}), td:nth-child(-n+{columns}) {{ text-align: left; }}\n"


# Click a header to sort by it (numbers by their leading value, text otherwise); click again to reverse.
SORT_JS = """
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0];
  const key = (tr) => { const t = tr.cells[col].textContent.trim(); const v = parseFloat(t); return isNaN(v) ? t : v; };
  const dir = th.dataset.dir === "asc" ? -1 : 1;
  th.dataset.dir = dir === 1 ? "asc" : "desc";
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    return dir * (typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1); })
    .forEach((tr) => body.appendChild(tr));
}));
"""


DPI = 90  # a figure's point is DPI / 72 px on the page (images are shown at their size, or smaller)


def png(fig: Figure) -> str:
    """An ``<img>`` holding the figure as a base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def name(key: tuple) -> str:
    group = dict(zip(GROUP, key))
    return f"{group['strategy']} ({group['model']}{', ' + group['sweep'] if group['sweep'] else ''})"


def curves(matrices: dict, offline, title: str) -> Figure:
    """Mean accuracy on the experiences seen so far, after each; an offline strategy's, which exists only
    after all experiences, as a dashed line."""
    fig = Figure(figsize=(4.6, 3.2))
    ax = fig.add_subplot()
    for key, matrix in matrices.items():
        y = seen_accuracy(matrix)
        if offline[key]:
            ax.axhline(y[-1], linestyle="--", color="grey", label=f"{name(key)}, offline: after all")
        else:
            ax.plot(np.arange(1, len(y) + 1), y, marker="o", label=name(key))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("experiences trained")
    ax.set_ylabel("mean accuracy on seen experiences")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def sortable(header: list[str], rows: list[list[str]], text=()) -> str:
    """A table sortable by clicking a header; ``rows`` hold HTML already escaped; the columns titled in
    ``text`` are left-aligned (besides the first ones, the group's)."""
    kind = [' class="text"' if h in text else "" for h in header]
    head = "".join(f"<th{k}>{html.escape(h)}</th>" for h, k in zip(header, kind))
    body = "".join("<tr>" + "".join(f"<td{k}>{c}</td>" for c, k in zip(row, kind)) + "</tr>" for row in rows)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def table_html(lb: Leaderboard) -> str:
    return sortable(*cells(lb, bold=lambda t: f"<b>{t}</b>", escape=html.escape))


REPRODUCTION_TEXT = {"Verified", "What differs / what was tried"}  # left-aligned text columns


def reproduction_html(lb: Leaderboard) -> str:
    """The reproduction table with its legend and the reasons some numbers are not verified; empty when
    no published number matches."""
    rows = reproduction(lb)
    if rows.empty:
        return ""
    unverified = legend(zip(rows["verified"], rows["marker"]))
    return (f"<h2>Reproduction: ours next to the published numbers</h2>"
            f"<p>{html.escape(reproduction_legend(lb.confidence, bool(unverified)))}</p>"
            f"{sortable(*reproduction_cells(rows, escape=html.escape), text=REPRODUCTION_TEXT)}"
            + (f"<ul class='refs'>{items(unverified)}</ul>" if unverified else ""))


def pairs_html(lb: Leaderboard, pairs) -> str:
    """The paired comparisons with their legend and the pairs not compared; empty without ``pairs``."""
    if pairs is None:
        return ""
    header, rows = pairs_cells(pairs, escape=html.escape)
    metric = pairs["metric"].iloc[0] if len(pairs) else "acc"
    skipped = pair_notes(pairs)
    return (f"<h2>Paired comparisons</h2><p>{html.escape(pairs_legend(metric, lb.confidence))}</p>"
            + (sortable(header, rows, text={"B", "Protocol", "Verdict"}) if rows
               else "<p>No two strategies share seeds and a protocol.</p>")
            + (f"<div class='notes'><b>Pairs not compared, or compared on fewer seeds</b><ul>{items(skipped)}</ul>"
               "</div>" if skipped else ""))


def items(lines) -> str:
    return "".join(f"<li>{html.escape(line)}</li>" for line in lines)


def figures(lb: Leaderboard) -> str:
    """Per (stream, scenario, split): the curves, then each strategy's heatmap."""
    matrices, offline = lb.matrices(), lb.table.set_index(GROUP)["offline"]
    sections = []
    for block in sorted({tuple(key[GROUP.index(c)] for c in BLOCK) for key in matrices}):
        in_block = {k: m for k, m in matrices.items() if tuple(k[GROUP.index(c)] for c in BLOCK) == block}
        title = " / ".join(part for part in block if part)
        maps = "".join(png(heatmap(m, name(k), offline=offline[k])) for k, m in in_block.items())
        sections.append(f"<h3>{html.escape(title)}</h3>"
                        f"<div class='figures'>{png(curves(in_block, offline, title))}{maps}</div>")
    return "".join(sections)


def to_html(lb: Leaderboard, commands=(), remarks=(), title: str = "forgetbench leaderboard", pairs=None) -> str:
    """The page; ``pairs`` (:func:`~benchmarks.reproduction.paired_comparisons`) adds their section."""
    notes = lb.notes()
    sources = "".join(f"<li>{html.escape(entry)}<ul>{items(protocols)}</ul></li>" if protocols
                      else f"<li>{html.escape(entry)}</li>" for entry, protocols in references(lb))
    sources += items(table_legend(lb.table))
    style = STYLE + left_aligned(len(group_columns(lb.table)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{style}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{table_html(lb)}
{f"<div class='notes'><b>Notes</b><ul>{items(notes)}</ul></div>" if notes else ""}
<p>Mean ± half-width of the {lb.confidence * 100:g}% Student-t confidence interval over seeds; best mean per (stream,
scenario, split) in bold (upper bounds such as joint training excluded). Click a column header to sort.</p>
{f"<h2>Published numbers</h2><ul class='refs'>{sources}</ul>" if sources else ""}
<details><summary>The commands that made this table{" and notes on it" if remarks else ""}</summary>
<pre>{html.escape(chr(10).join(commands))}</pre>
{"".join(f"<p>{html.escape(remark)}</p>" for remark in remarks)}
</details>
{reproduction_html(lb)}
{pairs_html(lb, pairs)}
<h2>Accuracy over experiences and mean accuracy matrices</h2>
{figures(lb)}
<script>{SORT_JS}</script>
</body></html>
"""
