"""Error analysis: edit scripts, error classes, confusion tables and figures, on hand-made and real predictions."""

from __future__ import annotations

import pytest

from unimumer_lib.evaluation import analysis
from unimumer_lib.evaluation.analysis import BOTH, CORRECT, GAP, LENGTH, STRUCTURE, SYMBOL
from unimumer_lib.formats.predictions import Prediction, read_predictions

from test_metrics import RESULTS_FILE, published_numbers


def toks(text):
    return text.split()


def test_edit_ops_hand_made():
    assert analysis.edit_ops(toks("x ^ { 2 }"), toks("X ^ { 2 }")) == [("replace", "x", "X")]
    assert analysis.edit_ops(toks("a + b"), toks("a b")) == [("delete", "+", GAP)]
    assert analysis.edit_ops(toks("a"), toks("a ^ { 2 }")) == [("insert", GAP, t) for t in toks("^ { 2 }")]
    assert analysis.edit_ops(toks("a b"), toks("a b")) == []


@pytest.mark.parametrize("gt,pred,expected", [
    ("x ^ { 2 }", "x ^ { 2 }", CORRECT),
    ("x ^ { 2 }", "X ^ { z }", SYMBOL),
    ("x ^ { 2 }", "x _ { 2 }", STRUCTURE),
    ("x ^ { 2 }", "x 2", STRUCTURE),
    ("a + b", "a b", LENGTH),
    ("a b", "a b c d", LENGTH),
    ("x ^ { 2 }", "y _ { 2 }", BOTH),
    ("\\frac { a } { b }", "a / c", BOTH),
])
def test_classify(gt, pred, expected):
    assert analysis.classify(toks(gt), toks(pred)) == expected


def test_diff_mask():
    gt_bad, pred_bad = analysis.diff_mask(toks("a + b"), toks("a - b c"))
    assert gt_bad == [False, True, False]
    assert pred_bad == [False, True, False, True]


def hand_samples():
    preds = [Prediction("1", "x + 1", "X + 1"), Prediction("2", "x ^ { 2 }", "X ^ { 2 }"),
             Prediction("3", "1 - l", "l - l"), Prediction("4", "a", "a"), Prediction("5", "a b", "a")]
    return analysis.samples_frame(preds, dataset="toy")


def test_confusion_table_and_csv_round_trip(tmp_path):
    s = hand_samples()
    table = analysis.confusion_table(s)
    assert analysis.confusion_records(table) == [("x", "X", 2), ("1", "l", 1)]
    with_gaps = analysis.confusion_records(analysis.confusion_table(s, indels=True))
    assert ("b", GAP, 1) in with_gaps
    path = analysis.write_confusions(tmp_path / "c.csv", analysis.confusion_table(s, indels=True))
    assert path.read_text().splitlines()[0] == ",".join(analysis.CONFUSION_COLUMNS)
    assert analysis.read_confusions(path) == with_gaps
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="expected header"):
        analysis.read_confusions(bad)


def test_samples_with_and_matrix():
    s = hand_samples()
    assert analysis.samples_with(s, "x", "X")["img_id"].tolist() == ["1", "2"]
    assert analysis.samples_with(s, symbol="l")["img_id"].tolist() == ["3"]
    assert analysis.samples_with(s, gt_token="b")["img_id"].tolist() == ["5"]
    m = analysis.confusion_matrix(analysis.confusion_table(s))
    assert m.loc["x", "X"] == 2 and m.loc["1", "l"] == 1 and m.loc["X", "x"] == 0


def test_tables_hand_made():
    s = hand_samples()
    classes = analysis.error_class_table(s).set_index("error_class")["n"].to_dict()
    assert classes == {SYMBOL: 3, STRUCTURE: 0, LENGTH: 1, BOTH: 0}
    by_len = analysis.length_table(s, bins=(0, 1, 3, 100))
    assert by_len["bucket"].tolist() == ["1-1", "2-3", "4-100"]
    assert by_len["n"].tolist() == [1, 3, 1]
    assert by_len["exprate"].tolist() == [100.0, 0.0, 0.0]
    counts = analysis.symbol_error_table(s).set_index("token")
    assert counts.loc["x", "count"] == 2 and counts.loc["x", "errors"] == 2
    assert counts.loc["a", "errors"] == 0


@pytest.fixture(scope="module")
def reference_samples(reference_predictions):
    return analysis.samples_frame(reference_predictions)


def test_reference_analysis_is_consistent(reference_samples, reference_predictions):
    s = reference_samples
    printed = published_numbers(reference_predictions.parent / RESULTS_FILE)
    wrong = (~s["correct"]).sum()
    assert f"{100 * (1 - wrong / len(s)):.4f}" == printed["exprate"]
    # every unit edit is counted once: confusion counts (with gaps) add up to the total token distance
    assert analysis.confusion_table(s, indels=True)["count"].sum() == s["distance"].sum()
    assert analysis.error_class_table(s)["n"].sum() == wrong
    symbol_only = s[s["error_class"] == SYMBOL]
    assert (symbol_only["gt_len"] == symbol_only["pred_len"]).all()
    # the model's confusions are between look-alike glyphs: case pairs lead the ranking
    top = analysis.confusion_records(analysis.confusion_table(s).head(5))
    assert sum(a.lower() == b.lower() for a, b, _ in top) >= 3
    assert set(s["img_id"]) == {p.img_id for p in read_predictions(reference_predictions)}
    assert set(s["dataset"]) == {"CROHME 2014"}  # the main-table label of crohme_2014_pred.json, not its stem


def test_save_figures(reference_samples, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    paths = analysis.save_figures(reference_samples, tmp_path / "fig", prefix="ref_")
    assert set(paths) == {"top_confusions", "confusion_heatmap", "exprate_by_length", "error_classes"}
    for path in paths.values():
        assert path.name.startswith("ref_") and path.stat().st_size > 5000


def test_the_text_under_the_confusion_table_follows_its_numbers():
    """Issue 32 (item 3): notebook 05's text promised look-alike pairs on top while the run's top pairs were
    ``^ → _`` and ``- → {``; the sentence is now made from the table."""
    import pandas as pd

    from unimumer_lib.evaluation import analysis

    layout = pd.DataFrame([("^", "_", 12), ("-", "{", 9), ("x", "X", 3)], columns=list(analysis.CONFUSION_COLUMNS))
    text = analysis.describe_confusions(layout)
    assert "`^ → _` (12), `- → {` (9), `x → X` (3)" in text and "2 of them involve a layout token" in text
    assert "mostly layout" in text
    glyphs = pd.DataFrame([("x", "X", 5), ("1", "l", 4), ("(", "{", 1)], columns=list(analysis.CONFUSION_COLUMNS))
    assert "1 of them" in analysis.describe_confusions(glyphs) and "symbol for symbol" in \
        analysis.describe_confusions(glyphs)
    assert analysis.describe_confusions(layout.head(0)).startswith("No substitutions")
