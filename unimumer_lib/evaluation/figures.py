"""Figures: the data-exploration and training charts; ``files.save_figure`` saves each, shows it in a notebook and
closes it.

Every chart here draws on a figure of its own (``new_axes``), so no chart inherits the axes, labels or legend
of the one before; ``save_figure`` closes the figure after saving, so none leaks into the next cell.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..formats.records import Record



def new_axes(nrows: int = 1, ncols: int = 1, **kwargs):
    """A new figure and its axes (``plt.subplots``), never the current axes of an earlier chart."""
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, **kwargs)


# ---- data exploration (notebook 01) ------------------------------------------------------------------------

def counts_figure(counts: pd.DataFrame):
    """Stacked bars: prepared expressions per split, by source (``explore.counts_frame``)."""
    fig, ax = new_axes(figsize=(7, 4))
    table = counts.pivot_table(index="split", columns="source", values="expressions", fill_value=0)
    table.plot.bar(stacked=True, ax=ax)
    ax.set(xlabel="split", ylabel="expressions", title="Expressions per split and source")
    fig.tight_layout()
    return fig


def caption_length_figure(stats: pd.DataFrame):
    """Caption length distribution per split (``explore.stats_frame``)."""
    fig, ax = new_axes(figsize=(7, 4))
    bins = range(0, int(stats.length.max()) + 2, 2)
    for split, group in stats.groupby("split"):
        ax.hist(group.length, bins=bins, histtype="step", density=True, label=split)
    ax.set(xlabel="caption length (tokens)", ylabel="share", title="Caption length per split")
    ax.legend(title="split")
    fig.tight_layout()
    return fig


def symbol_frequency_figure(counts: dict[str, int] | pd.Series, top: int = 40):
    """Bars of the ``top`` most frequent symbols (``explore.token_frequencies``)."""
    series = pd.Series(dict(counts)).sort_values(ascending=False, kind="stable")
    fig, ax = new_axes(figsize=(11, 4))
    series.head(top).plot.bar(ax=ax)
    ax.set(xlabel="symbol", ylabel="occurrences",
           title=f"{min(top, len(series))} most frequent of {len(series)} symbols")
    fig.tight_layout()
    return fig


def structure_figure(stats: pd.DataFrame, columns: Sequence[str] = ("frac", "sqrt", "sup", "sub", "sum_int_lim")):
    """Left: layout-tree depth per split; right: share of captions holding each structure."""
    fig, (left, right) = new_axes(1, 2, figsize=(11, 4))
    stats.groupby("split").tree_depth.value_counts(normalize=True).unstack(0).sort_index().plot.bar(ax=left)
    left.set(xlabel="layout tree depth", ylabel="share", title="Layout tree depth")
    share = stats.groupby("split")[list(columns)].apply(lambda g: (g > 0).mean())
    share.T.plot.bar(ax=right)
    right.set(xlabel="structure", ylabel="share of captions containing it", title="Structures")
    fig.tight_layout()
    return fig


def gallery_figure(records: Sequence[Record]):
    """One row per record: its image, titled split/id and caption."""
    from PIL import Image

    fig, axes = new_axes(len(records), 1, figsize=(9, 1.3 * max(len(records), 1)), squeeze=False)
    for ax, r in zip(axes[:, 0], records):
        with Image.open(r.image_path) as im:
            ax.imshow(im.convert("L"), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{r.split}/{r.id}:  {r.caption}".replace("$", r"\$"), fontsize=8, family="monospace",
                     loc="left")
        ax.axis("off")
    fig.tight_layout()
    return fig


# ---- task synthesis (notebook 02) --------------------------------------------------------------------------

def task_length_figure(lengths: pd.DataFrame):
    """Box plot of the answer length (characters) per task (``tasks.target_lengths``), outliers left out."""
    fig, ax = new_axes(figsize=(8, 4))
    lengths.boxplot(column="chars", by="task", ax=ax, showfliers=False)
    ax.set_ylabel("target length (characters)")
    ax.set_title("")
    fig.suptitle("")
    return fig
