"""Notebook 01 runs headless with papermill on a CROHME sample and writes non-empty figures."""

from __future__ import annotations

import nbformat
import numpy as np
from PIL import Image

from unimumer_lib.core import paths
from unimumer_lib.pipeline.reproduce import run_notebook

NOTEBOOK = paths.REPO_ROOT / "notebooks" / "01_data_exploration.ipynb"
FIGURES = ("01_counts.png", "01_caption_length.png", "01_symbol_frequency.png", "01_structure.png",
           "01_gallery.png")


def test_notebook_takes_its_parameters():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    for name in ("data_root", "sample_size", "figures_dir", "out_dir"):
        assert f"{name} =" in tagged[0].source


def test_notebook_runs_on_a_sample(crohme_root, tmp_path):
    figures = tmp_path / "figures"
    run_notebook(NOTEBOOK.name, tmp_path, {"data_root": str(crohme_root), "sample_size": 25,
                                           "figures_dir": str(figures), "out_dir": str(tmp_path / "prepared")})
    for name in FIGURES:
        path = figures / name
        assert path.exists() and path.stat().st_size > 2000, name
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"))
        assert a.min() < 128 and (a < 250).mean() > 0.005, name  # something was drawn
    assert len(list((tmp_path / "prepared" / "train" / "images").glob("*.png"))) == 25
