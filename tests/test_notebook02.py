"""Notebook 02 (task synthesis) runs headless on a CROHME sample and writes all five task files."""

from __future__ import annotations

import json

import nbformat
import papermill
import pytest

from unimumer_lib import config
from unimumer_lib.records import read_sharegpt
from unimumer_lib.tasks import DATASET_INFO, TASKS

NOTEBOOK = config.REPO_ROOT / "notebooks" / "02_task_synthesis.ipynb"


@pytest.fixture(autouse=True)
def headless(monkeypatch, tmp_path):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))


def test_notebook_is_committed_clean():
    book = nbformat.read(NOTEBOOK, as_version=4)
    assert book.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in book.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_on_a_sample(crohme_root, reference_predictions, tmp_path):
    out, figures = tmp_path / "out", tmp_path / "figures"
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "02.ipynb"), kernel_name="python3",
                               cwd=str(NOTEBOOK.parent), progress_bar=False,
                               parameters={"data_root": str(crohme_root), "sample_size": 60,
                                           "out_dir": str(out), "figures_dir": str(figures)})
    book = nbformat.read(tmp_path / "02.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs)
    assert "train captions: read 60 = written 60 + rejected 0" in text
    assert "tree: read 60 = written 60 + rejected 0" in text
    assert "correction log reproduces the ground truth for 159" in text
    for task in TASKS:
        assert read_sharegpt(out / "tasks" / f"{task}.json")
    assert len(json.loads((out / "tasks" / DATASET_INFO).read_text())) == len(TASKS)
    assert (figures / "02_task_lengths.png").stat().st_size > 0
