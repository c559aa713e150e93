"""`unimumer reproduce` end to end on the embedded synthetic data (the CI-sized profile)."""

from __future__ import annotations

import json
import re

import nbformat

import pandas as pd
import pytest

from unimumer_lib.pipeline import cli, reproduce
from unimumer_lib.pipeline import runplan
from unimumer_lib.pipeline import profiles
from unimumer_lib.evaluation import metrics
from unimumer_lib.formats.predictions import read_predictions
from unimumer_lib.formats.records import read_captions


@pytest.mark.parametrize("path", sorted(reproduce.NOTEBOOKS_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    book = nbformat.read(path, as_version=4)
    assert book.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in book.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    assert cli.main(["reproduce", "--profile", "ci", "--out", str(out)]) == 0
    return out


def test_every_notebook_was_executed(run_dir):
    for name, _ in runplan.notebook_parameters("ci", run_dir, run_dir / "raw", "test", run_dir / "figures"):
        book = json.loads((run_dir / "notebooks" / name).read_text())
        assert any(c.get("outputs") for c in book["cells"] if c["cell_type"] == "code"), name


def test_progress_bars_are_saved_as_finished_text(run_dir):
    """No tqdm widget (papermill saves no widget state: it would read "0%" forever); the text bars end at 100%."""
    for path in sorted((run_dir / "notebooks").glob("0[1-4]_*.ipynb")):
        outputs = [o for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
        assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), path.name
    text = "".join(o.get("text", "") for c in nbformat.read(run_dir / "notebooks" / "01_data_exploration.ipynb",
                                                              as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "100%" in text


def image_outputs(path):
    book = nbformat.read(path, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in book.cells if c.cell_type == "code" for o in c.outputs)


def test_executed_notebooks_show_their_figures_inline(run_dir):
    counts = {name: image_outputs(run_dir / "notebooks" / name) for name in
              ("01_data_exploration.ipynb", "02_task_synthesis.ipynb", "05_error_analysis.ipynb")}
    assert counts == {"01_data_exploration.ipynb": 5, "02_task_synthesis.ipynb": 1, "05_error_analysis.ipynb": 4}


def test_runs_leave_nothing_in_the_repository(run_dir):
    # Notebooks execute with notebooks/ as working directory: caches and outputs belong in the run folder.
    strays = [p for p in reproduce.NOTEBOOKS_DIR.rglob("*") if p.is_file() and p.suffix != ".ipynb"]
    assert strays == []
    assert (run_dir / ".cache" / "mpl").is_dir()


def test_tables_parse_and_agree_with_the_predictions(run_dir):
    tables = run_dir / "tables"
    rows = json.loads((tables / "results.json").read_text())
    preds = read_predictions(tables / "predictions.json")
    test_ids = list(read_captions(run_dir / "prepared" / "test" / "caption.txt"))
    assert sorted(p.img_id for p in preds) == sorted(test_ids)
    assert rows[0]["n"] == len(test_ids) == profiles.PROFILES["ci"].synth_test
    expected = metrics.score([p.gt for p in preds], [p.pred for p in preds]).as_dict()
    assert rows[0]["exprate"] == pytest.approx(expected["exprate"])
    assert len(pd.read_csv(tables / "results.csv")) == 1
    assert "|" in (tables / "main_table.md").read_text()


def test_figures_are_written(run_dir):
    figures = sorted((run_dir / "figures").glob("*.png"))
    names = {f.stem for f in figures}
    assert {"03_loss_curve", "top_confusions", "exprate_by_length"} <= names
    assert all(f.stat().st_size > 2000 for f in figures)


def test_failing_notebook_is_named(tmp_path):
    # A task folder without task files makes notebook 03 fail: the error names the notebook and the cell.
    with pytest.raises(reproduce.NotebookFailed, match=r"03_sft_trl.ipynb: cell \d+ .*no <task>.json files"):
        reproduce.run_notebook("03_sft_trl.ipynb", tmp_path, {"data_dir": str(tmp_path / "empty")})


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="unknown profile"):
        reproduce.reproduce("huge")


def test_inputs_are_checked_before_any_notebook(tmp_path, crohme_root, capsys):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "a.inkml").write_bytes((crohme_root / "test2014" / "18_em_0.inkml").read_bytes())
    assert cli.main(["reproduce", "--profile", "paper-dry", "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    assert "no test split with .inkml files beside train/" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before the run folder or any notebook


def test_a_foreign_folder_is_not_taken_over(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["reproduce", "--profile", "ci", "--out", str(tmp_path)]) == 2
    assert "no run.json of it" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_arms_are_vanilla_plus_their_auxiliary_tasks():
    assert profiles.arm_tasks("vanilla") == ["vanilla"]
    assert profiles.arm_tasks("edl") == ["vanilla", "error_find", "error_fix"]
    assert profiles.arm_tasks("edl+tree") == profiles.arm_tasks("tree+edl") == ["vanilla", "tree", "error_find",
                                                                                   "error_fix"]
    assert profiles.arm_tasks("all") == ["vanilla", "tree", "error_find", "error_fix", "can"]
    assert profiles.parse_arms(None) == ["vanilla", "tree", "edl", "can", "all"]
    for bad in ("tree+cot", "", "vanilla,vanilla"):
        with pytest.raises(ValueError):
            profiles.parse_arms(bad if "," in bad else [bad])


def declared_parameters(notebook: str) -> set[str]:
    """The names a notebook's ``parameters`` cell assigns (what papermill can set)."""
    import ast

    book = nbformat.read(reproduce.NOTEBOOKS_DIR / notebook, as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    return {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets}


def test_every_parameter_reproduce_passes_is_declared_in_the_notebook(tmp_path):
    steps = list(runplan.basic_steps("ci", tmp_path, tmp_path / "raw", ["test"]))
    for name, profile in profiles.PROFILES.items():
        if profile.paper is not None:
            arms = list(profile.paper.arms or profiles.ARMS)
            steps += runplan.paper_steps(name, tmp_path, tmp_path / "raw", ["test2014", "test2016"], arms,
                                           hme100k=tmp_path / "hme", processes=2)
    assert {s.notebook for s in steps} == {p.name for p in reproduce.NOTEBOOKS_DIR.glob("0[1-5]_*.ipynb")}
    for step in steps:
        undeclared = set(step.parameters) - declared_parameters(step.notebook)
        assert not undeclared, f"{step.key}: {step.notebook} declares no {sorted(undeclared)}"
    assert {s.parameters.get("seed") for s in steps} - {None} == {0}  # the profile's seed reaches the notebooks


def test_run_json_records_the_profile_and_its_seed(run_dir):
    held = json.loads((run_dir / reproduce.RUN_FILE).read_text())
    assert held["parameters"]["seed"] == profiles.PROFILES["ci"].seed and held["parameters"]["name"] == "ci"


def test_papermill_reads_every_parameter_of_every_notebook():
    from papermill.translators import PythonTranslator

    for path in sorted(reproduce.NOTEBOOKS_DIR.glob("0[1-5]_*.ipynb")):
        book = nbformat.read(path, as_version=4)
        cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        parsed = {p.name for p in PythonTranslator.inspect(cell)}
        assert parsed == declared_parameters(path.name), path.name  # a comment papermill cannot parse hides one


def tree_digest(root):
    import hashlib

    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".cache" not in p.parts}


def test_a_copied_run_reruns_into_itself_and_leaves_the_original_byte_identical(run_dir, tmp_path):
    """Issue 32 item 4: the run's own paths reach the notebooks relative to the executed copies' folder, so the
    notebook 05 of a copied run (re-run as JupyterLab would: in its own folder, no new parameters) reads and writes
    the copy; the original is byte-identical. The user's data (outside the run) stays absolute."""
    import shutil

    import papermill

    executed = run_dir / "notebooks" / "05_error_analysis.ipynb"
    injected = next(c for c in nbformat.read(executed, as_version=4).cells
                    if "injected-parameters" in c.metadata.get("tags", []))
    params = {}
    exec(injected.source, {}, params)
    assert str(run_dir.resolve()) not in injected.source
    assert params["pred_path"] == "../tables/predictions.json" and params["out_dir"].startswith("../")
    before = tree_digest(run_dir)
    copy = tmp_path / "moved" / "smoke-copy"
    shutil.copytree(run_dir, copy)
    marker = {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    papermill.execute_notebook(str(copy / "notebooks" / "05_error_analysis.ipynb"),
                               str(copy / "notebooks" / "05_error_analysis.ipynb"), kernel_name="python3",
                               cwd=str(copy / "notebooks"), progress_bar=False)
    assert tree_digest(run_dir) == before
    rewritten = {p.relative_to(copy).as_posix() for p, t in marker.items() if p.stat().st_mtime_ns != t}
    assert "notebooks/05_error_analysis.ipynb" in rewritten
    assert any(not name.startswith("notebooks/") for name in rewritten), "05 wrote nothing into the copy"
    new = {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()} - {
        p.relative_to(copy).as_posix() for p in marker}
    assert not [n for n in new if not n.startswith(".cache/")], new  # the same files, rewritten in place


def test_saved_notebooks_carry_no_loss_table_and_no_library_bars(run_dir):
    """Issue 32 item 3: the Trainer's notebook bar stays, the loss table it grows (a row per logging step) does
    not (the loss is a plot); loading-weights / casting-dataset bars of the libraries are not saved; a text bar
    redraws at most every 15 s, so a short loop leaves its first and last line only."""
    def outputs(name):
        book = nbformat.read(run_dir / "notebooks" / name, as_version=4)
        return json.dumps([o for c in book.cells if c.cell_type == "code" for o in c.outputs])

    sft = outputs("03_sft_trl.ipynb")
    assert "Training Loss" not in sft and "Epoch" in sft  # the bar, not the table
    for name in ("02_task_synthesis.ipynb", "03_sft_trl.ipynb", "04_inference_evaluation.ipynb"):
        text = outputs(name)
        assert "Loading weights" not in text and "Casting the dataset" not in text, name
    predict = [line for line in outputs("04_inference_evaluation.ipynb").replace("\\r", "\\n").split("\\n")
               if line.startswith("predict:")]
    assert predict and "100%" in predict[-1], predict
    elapsed = [int(m[1]) * 60 + int(m[2]) for line in predict for m in [re.search(r"\[(\d+):(\d+)[<,\]]", line)] if m]
    assert len(elapsed) == len(predict) and elapsed[0] == 0, predict  # (the first line at 0 s; the last at close)
    assert all(b - a >= 14 for a, b in zip(elapsed[:-1], elapsed[1:-1])), predict  # redrawn every 15 s at most
