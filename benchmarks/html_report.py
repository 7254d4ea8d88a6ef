"""The leaderboard as one self-contained HTML page: a sortable table (a few lines of inline JS),
the mean accuracy matrix of every strategy as a heatmap, and accuracy-over-experiences curves.
Figures are matplotlib PNGs embedded as base64, so the page opens without network.
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
from forgetbench.benchmarks.tables import BLOCK, cells, references

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { cursor: pointer; background: #f3f3f3; user-select: none; }
th:nth-child(-n+4), td:nth-child(-n+4) { text-align: left; }
pre { background: #f6f6f6; padding: 8px; white-space: pre-wrap; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
.figures img { border: 1px solid #eee; }
ul.refs { list-style: none; padding-left: 0; }
"""

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


def png(fig: Figure) -> str:
    """An ``<img>`` holding the figure as a base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def curves(matrices: dict, title: str) -> Figure:
    fig = Figure(figsize=(4.6, 3.2))
    ax = fig.add_subplot()
    for key, matrix in matrices.items():
        y = seen_accuracy(matrix)
        ax.plot(np.arange(1, len(y) + 1), y, marker="o", label=f"{key[3]} ({key[2]})")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("experiences trained")
    ax.set_ylabel("mean accuracy on seen experiences")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def table_html(lb: Leaderboard) -> str:
    header, rows = cells(lb, bold=lambda t: f"<b>{t}</b>", escape=html.escape)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def to_html(lb: Leaderboard, header_lines=(), title: str = "forgetbench leaderboard") -> str:
    matrices = lb.matrices()
    sections = []
    for block in sorted({tuple(key[GROUP.index(c)] for c in BLOCK) for key in matrices}):
        in_block = {k: m for k, m in matrices.items() if tuple(k[GROUP.index(c)] for c in BLOCK) == block}
        name = " / ".join(block)
        maps = "".join(png(heatmap(m, f"{k[3]} ({k[2]})")) for k, m in in_block.items())
        sections.append(f"<h3>{html.escape(name)}</h3><div class='figures'>{png(curves(in_block, name))}{maps}</div>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in references(lb))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<pre>{html.escape(chr(10).join(header_lines))}</pre>
<p>Mean ± half-width of the 95% Student-t confidence interval over seeds; best mean per (stream, scenario) in bold (upper bounds such as joint training excluded).
Click a column header to sort.</p>
{table_html(lb)}
{f"<h2>Published numbers</h2><ul class='refs'>{notes}</ul>" if notes else ""}
<h2>Accuracy over experiences and mean accuracy matrices</h2>
{"".join(sections)}
<script>{SORT_JS}</script>
</body></html>
"""
