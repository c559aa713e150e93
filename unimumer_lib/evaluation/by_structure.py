"""ExpRate by the structure of the ground truth (fractions, radicals, scripts, matrices, ... and nesting depth):
the table and its figures, per system.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..formats.predictions import Prediction, read_predictions
from .report import prediction_path, score_predictions

if TYPE_CHECKING:
    import pandas as pd


# Structure classes of a ground-truth caption (ExpRate by structure): which LaTeX tokens put it in the class.
STRUCTURE_CLASSES = {"fraction": ("\\frac",), "root": ("\\sqrt",), "script": ("^", "_"),
                     "matrix": ("\\begin", "\\\\")}
DEPTH_BUCKETS = ((0, "depth 0"), (1, "depth 1"), (2, "depth 2"), (3, "depth ≥3"))


def structure_classes(caption: str) -> list[str]:
    """Structure classes of a caption: fraction / root / script / matrix when it has them, and its depth bucket."""
    from ..data.explore import brace_depth

    tokens = caption.split()
    classes = [name for name, marks in STRUCTURE_CLASSES.items() if any(t in marks for t in tokens)]
    depth = brace_depth(tokens)
    return classes + [next(label for bound, label in reversed(DEPTH_BUCKETS) if depth >= bound)]


def structure_table(preds: list[Prediction]) -> pd.DataFrame:
    """ExpRate by structure class of the ground truth (a prediction counts in every class it has):
    columns structure, n, exprate (percent)."""
    import pandas as pd

    rows = []
    order = list(STRUCTURE_CLASSES) + [label for _, label in DEPTH_BUCKETS]
    for name in order:
        subset = [p for p in preds if name in structure_classes(p.gt)]
        rate = score_predictions(subset)["exprate"] if subset else float("nan")
        rows.append({"structure": name, "n": len(subset), "exprate": rate})
    return pd.DataFrame(rows, columns=["structure", "n", "exprate"])


def plot_structure(table: pd.DataFrame, title: str = "ExpRate by structure"):
    """Bar chart of ``structure_table`` with the sample count on each bar; returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(table.structure, table.exprate.fillna(0))
    for x, (rate, n) in enumerate(zip(table.exprate.fillna(0), table.n)):
        ax.annotate(f"n={n}", (x, rate), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    ax.set(ylabel="ExpRate (%)", ylim=(0, 105), title=title)
    fig.tight_layout()
    return fig


def structure_figures(root: Path | str, arm: str, tests: Mapping[str, str], name: str,
                      figures_dir: Path | str) -> dict[str, pd.DataFrame]:
    """ExpRate by structure of ``arm``'s predictions on each test (``tests``: {split: label}): the tables, and
    their bar charts saved as ``figures_dir/<arm>/<split>/exprate_by_structure.png`` (shown inline in a
    notebook)."""
    from ..core.files import save_figure

    tables = {}
    for test, label in tests.items():
        tables[test] = structure_table(read_predictions(prediction_path(root, arm, test)))
        fig = plot_structure(tables[test], title=f"{label}: ExpRate by structure ({name})")
        save_figure(fig, Path(figures_dir) / arm / test / "exprate_by_structure.png")
    return tables
