"""Every notebook runs by hand from its defaults, as in JupyterLab: papermill with no parameters, cwd notebooks/,
in pipeline order (03 trains on what 02 wrote, 04/05 read the released predictions). Outputs land in the runs
folder (here a temporary one), never beside the notebooks."""

from __future__ import annotations

import ast
import json

import nbformat

from unimumer_lib.core import paths
from unimumer_lib.pipeline.reproduce import NOTEBOOKS_DIR, run_notebook

NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def outputs_text(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") != "stderr")


def cell_result(path, source: str) -> str:
    """The value (text/plain) of the executed cell whose source holds ``source``."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and source in c.source)
    return next(o["data"]["text/plain"] for o in cell.outputs if o.output_type == "execute_result")


def test_every_notebook_runs_from_its_defaults(tmp_path, monkeypatch, crohme_root, reference_predictions):
    runs = tmp_path / "runs"
    monkeypatch.setenv("UNIMUMER_RUNS", str(runs))
    before = sorted(p.name for p in NOTEBOOKS_DIR.iterdir())
    assert len(NOTEBOOKS) == 5
    texts = {name: outputs_text(run_notebook(name, tmp_path / "executed", {})) for name in NOTEBOOKS}
    assert sorted(p.name for p in NOTEBOOKS_DIR.iterdir()) == before  # nothing written beside the notebooks
    assert paths.runs_dir() == runs
    assert (runs / "crohme_prepared" / "train" / "caption.txt").is_file()  # 01
    assert (runs / "02_task_synthesis" / "tasks" / "vanilla.json").is_file()  # 02
    assert (runs / "sft" / "final" / "config.json").is_file()  # 03 trained on 02's tasks
    shown = texts["02_task_synthesis.ipynb"].split("mixture notebook 03 trains: ", 1)[1].splitlines()[0]
    trained = cell_result(tmp_path / "executed" / "notebooks" / "03_sft_trl.ipynb", "sftdata.mixture_counts(dataset)")
    assert ast.literal_eval(shown) == ast.literal_eval(trained) != {}  # 02 shows the mixture 03 trains
    # 02 with other ratios: 03, run again by hand, trains the mixture 02 now shows
    again = outputs_text(run_notebook("02_task_synthesis.ipynb", tmp_path / "again", {"ratios": {"tree": 0.5},
                                                                                      "seed": 7}))
    shown = ast.literal_eval(again.split("mixture notebook 03 trains: ", 1)[1].splitlines()[0])
    run_notebook("03_sft_trl.ipynb", tmp_path / "again", {})
    trained = cell_result(tmp_path / "again" / "notebooks" / "03_sft_trl.ipynb", "sftdata.mixture_counts(dataset)")
    assert shown == ast.literal_eval(trained) and shown["tree"] == shown["vanilla"] // 2
    assert json.loads((runs / "sft" / "run_config.json").read_text())["sft_config"]["seed"] == 7  # and its seed
    assert "83.8742" in texts["04_inference_evaluation.ipynb"]  # the released predictions' ExpRate
    assert "no baseline_path" in texts["05_error_analysis.ipynb"]
    assert (runs / "05_error_analysis" / "confusions.csv").is_file()
