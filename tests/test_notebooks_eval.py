"""Notebooks 04 (evaluation half) and 05 (error analysis) run headless on the reference predictions."""

from __future__ import annotations

import json

import nbformat

from unimumer_lib.evaluation import analysis
from unimumer_lib.pipeline.reproduce import run_notebook

from test_metrics import RESULTS_FILE, published_numbers

def execute(name, tmp_path, **parameters):
    return nbformat.read(run_notebook(name, tmp_path, parameters), as_version=4)


def stream_text(book):
    return "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)


def test_evaluation_notebook(tmp_path, reference_predictions):
    execute("04_inference_evaluation.ipynb", tmp_path, out_dir=str(tmp_path / "out"))
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    printed = published_numbers(reference_predictions.parent / RESULTS_FILE)
    assert f"{rows[0]['exprate']:.4f}" == printed["exprate"]
    assert f"{rows[0]['bleu4']:.4f}" == printed["bleu4"]
    main = (tmp_path / "out" / "main_table.md").read_text()
    assert "| ours | 83.87 | 89.86 | 93.61 |" in main and "| CoMER | 59.33 |" in main


def test_error_analysis_notebook(tmp_path, reference_predictions, crohme_root):
    figures = tmp_path / "figures"
    book = execute("05_error_analysis.ipynb", tmp_path, out_dir=str(tmp_path / "out"), figures_dir=str(figures))
    for name in ("top_confusions", "confusion_heatmap", "exprate_by_length", "error_classes"):
        assert (figures / f"{name}.png").stat().st_size > 5000
    # the exported confusions are those of the reference predictions
    expected = analysis.confusion_records(analysis.confusion_table(analysis.samples_frame(reference_predictions),
                                                                   indels=True))
    assert analysis.read_confusions(tmp_path / "out" / "confusions.csv") == expected
    text = stream_text(book)
    assert "986 samples, 159 wrong" in text
    # images were rendered from test2014 and the inspector shows them
    assert len(list((tmp_path / "out" / "crohme" / "test2014" / "images").glob("*.png"))) == 986
    assert "159 samples · page 1/" in text
    assert "6 images on this page" in text
    # the saved notebook keeps a static copy of the inspector's first page (issue 32 item 3) and the sentence under
    # the confusion table is made from this run's table
    html = "".join(o.get("data", {}).get("text/html", "") for c in book.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "First page, as saved" in html and html.count("<img ") >= 6
    assert "Drawing pad, as saved" in html and html.count("<button disabled>") == 4  # the pad's static copy
    top = analysis.confusion_records(analysis.confusion_table(analysis.samples_frame(reference_predictions)))[0]
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for c in book.cells if c.cell_type == "code"
                       for o in c.outputs)
    assert f"`{top[0]} → {top[1]}` ({top[2]})" in markdown
    last = [c for c in book.cells if c.cell_type == "code"][-1]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in last.outputs)
