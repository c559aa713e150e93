"""Reports: the `unimumer eval` output formats, per-dataset rows, the published data file and the main table."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from unimumer_lib.pipeline import cli
from unimumer_lib.evaluation import metrics, report
from unimumer_lib.formats.predictions import Prediction, write_predictions

from test_metrics import PUBLISHED_LINES, RESULTS_FILE, published_numbers

JSON_KEYS = ["file", "n", "exprate", "le1", "le2", "le3", "edit_score", "bleu4", "cer", "cer_char", "structure_rate"]


def run_cli(capsys, *argv):
    assert cli.main(["eval", *map(str, argv)]) == 0
    return capsys.readouterr().out


def test_eval_json_on_reference_equals_published(capsys, reference_predictions):
    rows = json.loads(run_cli(capsys, reference_predictions, "--format", "json"))
    assert len(rows) == 1 and list(rows[0]) == JSON_KEYS
    printed = published_numbers(reference_predictions.parent / RESULTS_FILE)
    for key in PUBLISHED_LINES:
        decimals = len(printed[key].split(".")[1])
        assert f"{rows[0][key]:.{decimals}f}" == printed[key], key
    assert rows[0]["file"] == str(reference_predictions)


@pytest.mark.parametrize("fmt,needle", [("table", "83.87"), ("md", "| 83.87 |"), ("latex", "\\begin{tabular}"),
                                        ("csv", "83.8742")])
def test_eval_text_formats(capsys, reference_predictions, fmt, needle):
    assert needle in run_cli(capsys, reference_predictions, "--format", fmt)


def test_eval_two_files_and_out(tmp_path, capsys):
    a = write_predictions(tmp_path / "a.json", [Prediction("1", "x", "x"), Prediction("2", "y", "z")])
    b = write_predictions(tmp_path / "b.json", [Prediction("1", "x + 1", "x + 1")])
    out = tmp_path / "r.csv"
    assert run_cli(capsys, a, b, "--format", "csv", "--out", out) == ""
    df = pd.read_csv(out)
    assert df["file"].tolist() == [str(a), str(b)]
    assert df["exprate"].tolist() == [50.0, 100.0]
    assert df["n"].tolist() == [2, 1]


def test_eval_reports_bad_file_as_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"img_id": "a", "gt": "x", "pred": 1, "image_path": ""}]')
    assert cli.main(["eval", str(bad)]) == 2
    assert "record 0 (img_id 'a'): 'pred' must be a string" in capsys.readouterr().err


def test_normalize_flag_uses_latex_normalize(tmp_path, monkeypatch):
    from unimumer_lib.latex import tokens as latex

    monkeypatch.setattr(latex, "normalize", lambda s: s.replace("\\le", "\\leq").replace("\\leqq", "\\leq"))
    path = write_predictions(tmp_path / "a.json", [Prediction("1", "x \\leq 1", "x \\le 1")])
    assert report.evaluate_files([path])[0]["exprate"] == 0.0
    assert report.evaluate_files([path], normalize="crohme")[0]["exprate"] == 100.0


def test_by_dataset_rows(tmp_path):
    preds = [Prediction("1", "x", "x", extra={"dataset": "A"}), Prediction("2", "y", "z", extra={"dataset": "B"}),
             Prediction("3", "y", "y", extra={"dataset": "B"})]
    path = write_predictions(tmp_path / "p.json", preds)
    rows = report.evaluate_files([path], by_dataset=True)
    assert [r["file"] for r in rows] == [str(path), f"{path}#A", f"{path}#B"]
    assert [r["n"] for r in rows] == [3, 1, 2]
    assert [r["exprate"] for r in rows] == pytest.approx([200 / 3, 100.0, 50.0])


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown format"):
        report.format_results([], "xml")


def test_published_file_has_sources_and_the_issue_numbers():
    pub = report.published()
    assert list(pub.columns) == ["model", "dataset", "metric", "value", "source"]
    assert pub["source"].str.len().min() > 0
    assert set(pub["metric"]) <= set(metrics.RESULT_KEYS)
    assert set(pub["dataset"]) <= set(report.DATASETS)
    cell = pub.set_index(["model", "dataset", "metric"])["value"]
    assert cell[("Uni-MuMER-3B", "CROHME 2016", "le2")] == 92.07
    assert cell[("CoMER", "HME100K", "exprate")] == 68.12
    assert cell[("PosFormer", "CROHME 2019", "exprate")] == 64.88
    assert not pub.duplicated(["model", "dataset", "metric"]).any()


def test_main_table_places_ours_beside_published(reference_predictions):
    table = report.main_table({"CROHME 2014": reference_predictions}, model="ours")
    assert list(table.columns.get_level_values(0).unique()) == list(report.DATASETS)
    assert table.loc["ours", ("CROHME 2014", "ExpRate")] == pytest.approx(83.8742, abs=5e-5)
    assert pd.isna(table.loc["ours", ("CROHME 2016", "ExpRate")])
    assert table.loc["TAMER", ("CROHME 2019", "ExpRate")] == 61.97
    md = report.main_table_text(table)
    assert md.splitlines()[0].startswith("| Model | CROHME 2014 ExpRate")
    assert "\\multicolumn{3}{c}{CROHME 2014}" in report.main_table_text(table, "latex")
    alone = report.main_table({"CROHME 2014": {"exprate": 1.0, "le1": 2.0, "le2": 3.0}}, include_published=False)
    assert alone.index.tolist() == ["ours"] and alone.shape == (1, 3)


def test_write_results_equals_the_published_file_line_for_line(tmp_path, capsys, reference_predictions):
    copy = tmp_path / reference_predictions.name
    copy.write_bytes(reference_predictions.read_bytes())
    run_cli(capsys, copy, "--write-results")
    ours = (tmp_path / RESULTS_FILE).read_text(encoding="utf-8")
    assert ours == (reference_predictions.parent / RESULTS_FILE).read_text(encoding="utf-8")  # byte for byte


def test_write_results_never_replaces_an_existing_results_file(tmp_path, capsys, reference_predictions):
    # Beside an official prediction file the results file is the authors' own: refused, untouched.
    assert cli.main(["eval", str(reference_predictions), "--write-results"]) == 2
    assert "already there" in capsys.readouterr().err
    copy = tmp_path / reference_predictions.name
    copy.write_bytes(reference_predictions.read_bytes())
    mine = tmp_path / RESULTS_FILE
    mine.write_text("my notes\n", encoding="utf-8")
    assert cli.main(["eval", str(copy), "--write-results"]) == 2 and mine.read_text() == "my notes\n"
    run_cli(capsys, copy, "--results-dir", tmp_path / "out")  # another folder: written
    assert (tmp_path / "out" / RESULTS_FILE).read_text().startswith("\n" + "=" * 60)
    run_cli(capsys, copy, "--write-results", "--force")
    assert mine.read_text() == (reference_predictions.parent / RESULTS_FILE).read_text()


def made_up(n):
    """n records: 2/5 exact, 1/5 with one substitution, 1/5 with two, 1/5 with four (single-character tokens, so
    the published token-edit CER equals the character-edit CER of the official script's current version)."""
    rows = []
    for i in range(n):
        gt = ["x", "^", "{", str(i % 10), "}", "+", "y", "=", str(i % 7)]
        pred = list(gt)
        kind = i % 5
        if kind >= 2:
            pred[0] = "z"
        if kind >= 3:
            pred[6] = "w"
        if kind == 4:
            pred[5], pred[7] = "-", "<"
        rows.append({"img_id": f"m{i:05d}", "gt": " ".join(gt), "pred": " ".join(pred), "image_path": ""})
    return rows


# What the official scripts/eval_metrics_calculator.py printed for these files (run from a scratch copy):
# thousands separators in the counts, 100.0000 right-aligned in 8 columns.
OFFICIAL_TEXT = {
    1200: '\n============================================================\n                    EVALUATION RESULTS\n============================================================\n\nDataset Statistics:\n  Total Samples: 1,200\n\nCore Metrics:\n  Mean Edit Score:        84.4444%\n  BLEU-4 Score:           74.7160%\n  Character Error Rate:    0.0824\n\nError Threshold Analysis:\n  Exact Match Rate:       40.0000% (0 errors)\n  Error ≤ 1:              60.0000%\n  Error ≤ 2:              80.0000%\n  Error ≤ 3:              80.0000%\n\nDetailed Error Distribution:\n  Errors ≤ 0:    480 samples ( 40.00%)\n  Errors ≤ 1:    720 samples ( 60.00%)\n  Errors ≤ 2:    960 samples ( 80.00%)\n  Errors ≤ 3:    960 samples ( 80.00%)\n\n============================================================\n',
    12000: '\n============================================================\n                    EVALUATION RESULTS\n============================================================\n\nDataset Statistics:\n  Total Samples: 12,000\n\nCore Metrics:\n  Mean Edit Score:        84.4444%\n  BLEU-4 Score:           74.7160%\n  Character Error Rate:    0.0824\n\nError Threshold Analysis:\n  Exact Match Rate:       40.0000% (0 errors)\n  Error ≤ 1:              60.0000%\n  Error ≤ 2:              80.0000%\n  Error ≤ 3:              80.0000%\n\nDetailed Error Distribution:\n  Errors ≤ 0:  4,800 samples ( 40.00%)\n  Errors ≤ 1:  7,200 samples ( 60.00%)\n  Errors ≤ 2:  9,600 samples ( 80.00%)\n  Errors ≤ 3:  9,600 samples ( 80.00%)\n\n============================================================\n',
    "exact": '\n============================================================\n                    EVALUATION RESULTS\n============================================================\n\nDataset Statistics:\n  Total Samples: 5\n\nCore Metrics:\n  Mean Edit Score:       100.0000%\n  BLEU-4 Score:           48.2416%\n  Character Error Rate:    0.0000\n\nError Threshold Analysis:\n  Exact Match Rate:      100.0000% (0 errors)\n  Error ≤ 1:             100.0000%\n  Error ≤ 2:             100.0000%\n  Error ≤ 3:             100.0000%\n\nDetailed Error Distribution:\n  Errors ≤ 0:      5 samples (100.00%)\n  Errors ≤ 1:      5 samples (100.00%)\n  Errors ≤ 2:      5 samples (100.00%)\n  Errors ≤ 3:      5 samples (100.00%)\n\n============================================================\n',
}


@pytest.mark.parametrize("size", [1200, 12000, "exact"])
def test_results_file_equals_the_official_script_at_every_size(tmp_path, capsys, size):
    rows = made_up(size) if size != "exact" else [{"img_id": f"e{i}", "gt": "a + b", "pred": "a + b"} for i in range(5)]
    path = tmp_path / "made_up_pred.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    run_cli(capsys, path, "--write-results")
    assert (tmp_path / "made_up_results.txt").read_text(encoding="utf-8") == OFFICIAL_TEXT[size]


def test_table_names_published_cer_and_character_cer(capsys, reference_predictions):
    text = run_cli(capsys, reference_predictions)
    header, row = text.splitlines()[:2]
    assert header.split()[-4:] == ["CER", "CER_char", "Structure", "rate"]
    assert row.split()[-3:-1] == [published_numbers(reference_predictions.parent / RESULTS_FILE)["cer"], "2.33"]
    assert "token edits / reference characters" in text


def test_by_dataset_flag_and_optional_image_path(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"img_id": "1", "gt": "x", "pred": "x", "dataset": "A"},
                                {"img_id": "2", "gt": "y", "pred": "z", "dataset": "B"}]), encoding="utf-8")
    rows = json.loads(run_cli(capsys, path, "--by-dataset", "--format", "json"))
    assert [(r["file"], r["exprate"]) for r in rows] == [(str(path), 50.0), (f"{path}#A", 100.0), (f"{path}#B", 0.0)]
    run_cli(capsys, path, "--by-dataset", "--results-dir", tmp_path / "res")
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["p_results.txt"]


def test_normalize_never_invents_tokens(tmp_path, capsys):
    broken = r"\frac { 1 } { \sqrt { x }"  # a CROHME 2023-style ground truth with a brace missing
    path = write_predictions(tmp_path / "a.json", [Prediction("1", broken, r"\frac { 1 } { \sqrt { x } }"),
                                                   Prediction("2", r"x \le 1", r"x \leq 1")])
    row = report.evaluate_files([path], normalize="crohme")[0]
    assert report.normalize_texts([broken]) == ([broken], 1)
    assert row["unbalanced"] == 1 and row["exprate"] == 50.0
    assert cli.main(["eval", str(path), "--normalize"]) == 0
    assert "1 gt/pred texts with unbalanced braces" in capsys.readouterr().err


def test_structure_classes_and_exprate_by_structure():
    from unimumer_lib.evaluation.by_structure import structure_classes, structure_table

    assert structure_classes(r"\frac { x ^ { 2 } } { \sqrt { y } }") == ["fraction", "root", "script", "depth 2"]
    assert structure_classes("x + 1") == ["depth 0"]
    assert structure_classes(r"\begin {matrix} a \\ b \end {matrix}") == ["matrix", "depth 0"]
    assert structure_classes("{ { { a } } } _ 1") == ["script", "depth ≥3"]
    preds = [Prediction("a", r"\frac { 1 } { 2 }", r"\frac { 1 } { 2 }"), Prediction("b", r"\frac { 1 } { x }", "1"),
             Prediction("c", "x ^ { 2 }", "x ^ { 2 }")]
    table = structure_table(preds).set_index("structure")
    assert table.loc["fraction"].tolist() == [2, 50.0]
    assert table.loc["script"].tolist() == [1, 100.0]
    assert table.loc["depth 1"].tolist() == [3, pytest.approx(200 / 3)]
    assert table.loc["root", "n"] == 0 and pd.isna(table.loc["root", "exprate"])


def pandas_text(rows, fmt):
    """What pandas prints for result rows (the tables' former backend): the oracle of the plain formatter."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=report._columns(rows))
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.4f")
    df["cer"] = df["cer"].map("{:.4f}".format)
    shown = df.rename(columns=report.HEADERS)
    if fmt == "table":
        return shown.to_string(index=False, float_format=lambda v: f"{v:.2f}") + "\n" + report.CER_NOTE
    return report.markdown(shown, "{:.2f}") + "\n\n" + report.CER_NOTE


@pytest.mark.parametrize("fmt", ["table", "csv", "md"])
def test_tables_without_pandas_print_what_pandas_printed(fmt, reference_predictions, tmp_path):
    rows = report.evaluate_files([reference_predictions])
    grouped = [{"img_id": f"s{i}", "gt": "x ^ { 2 }", "pred": "x ^ { 2 }" if i % 3 else "x ^ { 2",
                "dataset": "A,|b" if i % 2 else "c"} for i in range(9)]
    (tmp_path / "g_pred.json").write_text(json.dumps(grouped))
    rows += report.evaluate_files([tmp_path / "g_pred.json"], normalize="crohme", by_dataset=True)  # + unbalanced
    for some in (rows[:1], rows, rows[1:]):
        ours, theirs = report.format_results(some, fmt), pandas_text(some, fmt)
        if fmt == "table":  # the same cells in the same order; column padding is ours (one space apart)
            ours, theirs = ours.split(), theirs.split()
        assert ours == theirs


def test_two_prediction_files_of_one_name_never_share_a_results_file(tmp_path, capsys):
    """Issue 34 (item 7): runs/vanilla/test_pred.json and runs/all/test_pred.json with --results-dir res printed
    "wrote res/test_results.txt" twice and one arm's results were lost."""
    import json

    from unimumer_lib.pipeline import cli

    for arm in ("vanilla", "all"):
        (tmp_path / "runs" / arm).mkdir(parents=True)
        (tmp_path / "runs" / arm / "test_pred.json").write_text(json.dumps([{"img_id": "a", "gt": "x", "pred": "x"}]))
    files = [str(tmp_path / "runs" / arm / "test_pred.json") for arm in ("vanilla", "all")]
    assert cli.main(["eval", *files, "--results-dir", str(tmp_path / "res")]) == 2
    assert "would both be written there" in capsys.readouterr().err and not (tmp_path / "res").exists()
    assert cli.main(["eval", *files, "--write-results"]) == 0  # beside each file: two files
    assert all((tmp_path / "runs" / arm / "test_results.txt").exists() for arm in ("vanilla", "all"))


def test_the_main_table_keeps_rows_without_a_common_test_set_apart(tmp_path, reference_predictions):
    """Issue 32 item 5: a synthetic run shares no column with the published rows: two tables, each with its own
    columns; a CROHME 2014 run is one table read across."""
    shown = report.write_main_table({"synthetic": {"exprate": 12.3, "le1": 20.0, "le2": 30.0}}, "ours", tmp_path)
    assert len(shown) == 2
    ours = (tmp_path / "main_table.md").read_text()
    assert ours.splitlines()[0] == "| Model | synthetic ExpRate | synthetic ≤1 | synthetic ≤2 |"
    assert "CoMER" not in ours and "CoMER" in shown[1] and "synthetic" not in shown[1]
    shown = report.write_main_table({"CROHME 2014": reference_predictions}, "ours", tmp_path)
    assert len(shown) == 1 and "CoMER" in shown[0] and "| ours | 83.87" in shown[0]


def test_for_display_writes_the_missing_side_of_an_insertion_as_the_empty_set():
    """Issue 32 item 5: an insertion's empty ground-truth token is a visible ∅, not a blank cell; p in scientific
    notation."""
    frame = pd.DataFrame([{"gt_token": "", "pred_token": "x", "A": 3, "B": 1, "McNemar p": 1.03e-15},
                          {"gt_token": "y", "pred_token": "", "A": 0, "B": 2, "McNemar p": 0.5}])
    html = report.for_display(frame).to_html()
    assert html.count("∅") == 2 and "1.0e-15" in html and "0.500" in html
