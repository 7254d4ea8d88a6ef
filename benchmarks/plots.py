"""Figures shared by the sinks and reports (matplotlib's object API: no pyplot, no global backend)."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def heatmap(matrix: np.ndarray, title: str) -> Figure:
    """Accuracy matrix: row = trained up to (init, e0, ...), column = test experience."""
    T = matrix.shape[1]
    fig = Figure(figsize=(0.45 * T + 1.6, 0.42 * (T + 1) + 1.0))
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(matrix), vmin=0, vmax=1, cmap="viridis")
    if T <= 10:
        for (i, j), v in np.ndenumerate(matrix):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(T), [f"e{j}" for j in range(T)], fontsize=7)
    ax.set_yticks(range(T + 1), ["init"] + [f"e{i}" for i in range(T)], fontsize=7)
    ax.set_xlabel("test experience", fontsize=8)
    ax.set_ylabel("trained up to", fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig
