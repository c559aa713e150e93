"""Notebook 02 (task synthesis) runs headless on a CROHME sample: caption tasks, leak guard, analysis-only use of
the released test predictions. (Its k-fold mining path runs in tests/test_paper_dry.py.)"""

from __future__ import annotations

import json

import nbformat

from unimumer_lib.core import paths
from unimumer_lib.formats.sharegpt import read_sharegpt
from unimumer_lib.pipeline.reproduce import run_notebook
from unimumer_lib.tasks.build import CAPTION_TASKS, DATASET_INFO, EDL_TASKS

NOTEBOOK = paths.REPO_ROOT / "notebooks" / "02_task_synthesis.ipynb"


def test_notebook_runs_on_a_sample(crohme_root, reference_predictions, tmp_path):
    out, figures = tmp_path / "out", tmp_path / "figures"
    executed = run_notebook(NOTEBOOK.name, tmp_path, {"data_root": str(crohme_root), "sample_size": 60,
                                                      "out_dir": str(out), "figures_dir": str(figures)})
    book = nbformat.read(executed, as_version=4)
    text = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)
    assert "train captions: read 60 = written 60 + rejected 0" in text
    assert "tree: read 60 = written 60 + rejected 0" in text
    assert "correction log reproduces the ground truth for 159" in text  # analysis only
    assert "leak guard: 2133 test images in ['test2014', 'test2016']" in text
    assert "180 training images across 3 tasks: none belongs to a test split" in text
    for task in CAPTION_TASKS:
        assert read_sharegpt(out / "tasks" / f"{task}.json")
    for task in EDL_TASKS:  # no mining asked for: no EDL rows, and none from the test predictions
        assert not (out / "tasks" / f"{task}.json").exists()
    assert len(json.loads((out / "tasks" / DATASET_INFO).read_text())) == len(CAPTION_TASKS)
    assert (figures / "02_task_lengths.png").stat().st_size > 0
