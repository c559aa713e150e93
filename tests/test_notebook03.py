"""Notebook 03 runs end to end under papermill on a tiny mixture built from real CROHME images."""

from __future__ import annotations

import json
import os

from PIL import Image

from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.pipeline.reproduce import run_notebook
from unimumer_lib.tasks.build import build_task_files
from unimumer_lib.training.train import LOSS_HISTORY_FILE, FINAL_DIR


def test_notebook03_trains_and_plots(crohme_root, tmp_path):
    sample_caption_set(crohme_root / "train", tmp_path / "set", 4, min_tokens=3, max_tokens=10, height=64)
    summary = build_task_files(tmp_path / "tasks", ["vanilla", "tree", "can"], captions=tmp_path / "set",
                               progress=False)
    written = sum(s["written"] for s in summary.values())
    executed = run_notebook("03_sft_trl.ipynb", tmp_path, {"data_dir": str(tmp_path / "tasks"),
                                                           "out_dir": str(tmp_path / "sft"),
                                                           "figures_dir": str(tmp_path / "fig"), "max_steps": 4})
    assert Image.open(tmp_path / "fig" / "03_loss_curve.png").size[0] > 100
    assert [h["step"] for h in json.loads((tmp_path / "sft" / LOSS_HISTORY_FILE).read_text()) if "loss" in h]
    assert (tmp_path / "sft" / FINAL_DIR / "model.safetensors").exists()
    out = json.loads(executed.read_text())
    counts = [c for c in out["cells"] if "mixture_counts" in "".join(c["source"])][0]
    shown = counts["outputs"][-1]["data"]["text/plain"]
    assert written == 3 * 4 and all(f"'{t}': 4" in "".join(shown) for t in ("vanilla", "tree", "can"))
    # the kernel ran with its inline backend (no inherited Agg), so the loss curve is in the executed notebook
    assert "MPLBACKEND" not in os.environ
    assert any("image/png" in o.get("data", {}) for c in out["cells"] for o in c.get("outputs", []))
