"""Notebook 02 (task synthesis) runs headless on a CROHME sample and writes all five task files."""

from __future__ import annotations

import json

import nbformat

from unimumer_lib import config
from unimumer_lib.records import read_sharegpt
from unimumer_lib.reproduce import run_notebook
from unimumer_lib.tasks import DATASET_INFO, TASKS

NOTEBOOK = config.REPO_ROOT / "notebooks" / "02_task_synthesis.ipynb"


def test_notebook_runs_on_a_sample(crohme_root, reference_predictions, tmp_path):
    out, figures = tmp_path / "out", tmp_path / "figures"
    executed = run_notebook(NOTEBOOK.name, tmp_path, {"data_root": str(crohme_root), "sample_size": 60,
                                                      "out_dir": str(out), "figures_dir": str(figures)})
    book = nbformat.read(executed, as_version=4)
    text = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)
    assert "train captions: read 60 = written 60 + rejected 0" in text
    assert "tree: read 60 = written 60 + rejected 0" in text
    assert "correction log reproduces the ground truth for 159" in text
    for task in TASKS:
        assert read_sharegpt(out / "tasks" / f"{task}.json")
    assert len(json.loads((out / "tasks" / DATASET_INFO).read_text())) == len(TASKS)
    assert (figures / "02_task_lengths.png").stat().st_size > 0
