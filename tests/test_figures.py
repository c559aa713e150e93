"""Figures: each chart on its own axes with its own labels (checked before saving); saving closes the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from PIL import Image

from unimumer_lib.core import paths
from unimumer_lib.core.files import save_figure
from unimumer_lib.evaluation import figures
from unimumer_lib.data.explore import stats_frame, token_frequencies
from unimumer_lib.formats.records import Record


@pytest.fixture
def records(tmp_path):
    captions = {"a": ("train", r"\frac { x } { 2 }"), "b": ("train", "x ^ { 2 } + 1"), "c": ("test", r"\sqrt { y }"),
                "d": ("test", "a + b = c")}
    out = []
    for key, (split, caption) in captions.items():
        Image.new("L", (60, 20), 255).save(tmp_path / f"{key}.png")
        out.append(Record(key, caption, image_path=str(tmp_path / f"{key}.png"), split=split, source="s"))
    return out


def labels(fig):
    return [(ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) for ax in fig.axes]


def test_exploration_charts_carry_their_own_labels(records):
    stats = stats_frame(records)
    counts = pd.DataFrame({"split": ["train", "test"], "source": ["s", "s"], "expressions": [2, 2]})
    # drawn in notebook order: a chart must not inherit the previous one's axes, labels or legend
    length = figures.caption_length_figure(stats)
    symbols = len(token_frequencies(r.caption for r in records))
    freq = figures.symbol_frequency_figure(token_frequencies(r.caption for r in records))
    assert labels(length) == [("caption length (tokens)", "share", "Caption length per split")]
    assert [t.get_text() for t in length.axes[0].get_legend().get_texts()] == ["test", "train"]
    assert labels(freq) == [("symbol", "occurrences", f"{symbols} most frequent of {symbols} symbols")]
    assert freq.axes[0].get_legend() is None and freq is not length
    assert labels(figures.counts_figure(counts)) == [("split", "expressions", "Expressions per split and source")]
    structure = figures.structure_figure(stats)
    assert [lab[:2] for lab in labels(structure)] == [("layout tree depth", "share"),
                                                     ("structure", "share of captions containing it")]
    gallery = figures.gallery_figure(records[:2])
    assert [ax.get_title(loc="left") for ax in gallery.axes] == [r"train/a:  \frac { x } { 2 }",
                                                                  "train/b:  x ^ { 2 } + 1"]
    plt.close("all")


def test_save_figure_writes_and_closes(tmp_path):
    fig, ax = figures.new_axes()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / "line.png")
    assert fig.number not in plt.get_fignums()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 100
    assert sorted(p.name for p in path.parent.iterdir()) == ["line.png"]  # no temporary file left


def test_default_figures_folder_is_not_the_readme_one(monkeypatch, tmp_path):
    monkeypatch.delenv("UNIMUMER_FIGURES", raising=False)
    monkeypatch.setenv("UNIMUMER_RUNS", str(tmp_path))
    assert paths.figures_dir() == tmp_path / "figures" != paths.README_FIGURES
