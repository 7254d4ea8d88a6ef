"""Figures shared by the sinks and reports (matplotlib's object API: no pyplot, no global backend)."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

FONT = 9  # points: 11 px in the HTML report (html_report.DPI = 90)


def heatmap(matrix, title: str, offline: bool = False) -> Figure:
    """Accuracy matrix with a colour bar: row = trained up to (init, e0, ...), column = test experience;
    cells labelled up to 10 experiences. ``offline`` (e.g. joint training: trained once on every
    experience, so its matrix has only the first and last rows) shows its one row, after all experiences."""
    matrix = np.asarray(matrix, dtype=float)
    T = matrix.shape[1]
    rows, labels = (matrix[-1:], ["all"]) if offline else (matrix, ["init"] + [f"e{i}" for i in range(T)])
    fig = Figure(figsize=(0.5 * T + 2.2, 2.2 if offline else 0.5 * T + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(rows), vmin=0, vmax=1, cmap="viridis",
                      aspect="auto" if offline else "equal")
    if T <= 10:
        for (i, j), v in np.ndenumerate(rows):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=FONT,
                        color="white" if v < 0.6 else "black")
    ax.set_xticks(range(T), [f"e{j}" for j in range(T)], fontsize=FONT)
    ax.set_yticks(range(len(rows)), labels, fontsize=FONT)
    ax.set_xlabel("test experience", fontsize=FONT)
    ax.set_ylabel("trained on" if offline else "trained up to", fontsize=FONT)
    ax.set_title(f"{title}\noffline: trained once on all experiences" if offline else title, fontsize=FONT)
    bar = fig.colorbar(image, ax=ax, ticks=[0, 0.5, 1], fraction=0.05, pad=0.04)
    bar.set_label("accuracy", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT)
    return fig
