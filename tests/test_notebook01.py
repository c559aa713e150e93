"""Notebook 01 runs headless with papermill on a CROHME sample and writes non-empty figures."""

from __future__ import annotations

import nbformat
import numpy as np
import pytest
from PIL import Image

from unimumer_lib import config

NOTEBOOK = config.REPO_ROOT / "notebooks" / "01_data_exploration.ipynb"
FIGURES = ("01_counts.png", "01_caption_length.png", "01_symbol_frequency.png", "01_structure.png",
           "01_gallery.png")


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("data_root", "sample_size", "figures_dir", "out_dir"):
        assert f"{name} =" in tagged[0].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_notebook_runs_on_a_sample(crohme_root, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    figures = tmp_path / "figures"
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "01.ipynb"), kernel_name="python3",
                               progress_bar=False, cwd=str(NOTEBOOK.parent),
                               parameters={"data_root": str(crohme_root), "sample_size": 25,
                                           "figures_dir": str(figures), "out_dir": str(tmp_path / "prepared")})
    for name in FIGURES:
        path = figures / name
        assert path.exists() and path.stat().st_size > 2000, name
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"))
        assert a.min() < 128 and (a < 250).mean() > 0.005, name  # something was drawn
    assert len(list((tmp_path / "prepared" / "train" / "images").glob("*.png"))) == 25
