"""Headless reproduction: run notebooks 01 -> 05 with papermill under a named profile of parameters."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import config

NOTEBOOKS_DIR = config.REPO_ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message names the notebook and the cell."""


def _isolate_home(run_dir: Path) -> None:
    # Jupyter, IPython and matplotlib write config into $HOME; keep runs self-contained.
    for var, sub in (("MPLCONFIGDIR", "mpl"), ("IPYTHONDIR", "ipython"), ("JUPYTER_RUNTIME_DIR", "jupyter-runtime")):
        path = run_dir.resolve() / ".cache" / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault(var, str(path))
    # Unset, ipykernel picks its inline backend: figures stay in the executed notebook and are closed after
    # each cell. An inherited MPLBACKEND=Agg would drop them and let one chart draw on the previous axes.
    os.environ.pop("MPLBACKEND", None)


def run_notebook(name: str, run_dir: Path, parameters: dict, timeout: int | None = None) -> Path:
    """Execute ``notebooks/<name>`` into ``run_dir/notebooks/<name>``; raise NotebookFailed naming the cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _isolate_home(run_dir)
    out = run_dir / "notebooks" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(NOTEBOOKS_DIR / name), str(out), parameters=parameters, kernel_name="python3",
                                   cwd=str(NOTEBOOKS_DIR), progress_bar=False, execution_timeout=timeout)
    except PapermillExecutionError as err:
        raise NotebookFailed(f"{name}: cell {err.cell_index} (execution count {err.exec_count}) raised "
                             f"{err.ename}: {err.evalue}\n--- cell source ---\n{err.source}\n"
                             f"executed copy: {out}") from None
    return out


# Each profile: data sizes, training settings and the model. `paper` carries the paper's settings for a GPU.
PROFILES = {
    "ci": dict(synth_train=48, synth_test=16, sample_size=None, height=64, model="tiny", preset="cpu-smoke",
               max_steps=30, tasks=["vanilla", "tree", "can"], batch_size=8, max_new_tokens=64),
    "smoke": dict(synth_train=400, synth_test=100, sample_size=None, height=64, model="tiny", preset="cpu-smoke",
                  max_steps=300, tasks=["vanilla", "tree", "can"], batch_size=16, max_new_tokens=96),
    "paper": dict(synth_train=20000, synth_test=1000, sample_size=None, height=128,
                  model="Qwen/Qwen2.5-VL-3B-Instruct", preset="paper", max_steps=-1,
                  tasks=["vanilla", "tree", "can"], batch_size=32, max_new_tokens=512),
}
TEST_SPLIT_CROHME = "test2014"
# Column names of the main table (report.published() uses the same dataset names).
DATASET_LABELS = {"test": "synthetic", "test2014": "CROHME 2014"}


def synthetic_root(run_dir: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Synthesise train and test InkML splits (distinct seeds) under ``run_dir/raw``; reuse them if present."""
    from .synth import synthesize_dataset

    root = run_dir / "raw"
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        if not (root / split).is_dir():
            tmp = run_dir / f"raw_{split}.tmp"
            summary = synthesize_dataset(n=n, seed=split_seed, out=tmp)
            root.mkdir(parents=True, exist_ok=True)
            Path(summary["folder"]).rename(root / split)
    return root


def notebook_parameters(profile: str, run_dir: Path, data_root: Path, test_split: str, figures: Path) -> list:
    """(notebook, parameters) in pipeline order; each notebook reads what the previous one wrote."""
    p = PROFILES[profile]
    prepared, tasks_dir, sft, tables = (run_dir / "prepared", run_dir / "tasks", run_dir / "sft",
                                        run_dir / "tables")
    figs = str(figures)
    return [
        ("01_data_exploration.ipynb", dict(data_root=str(data_root), sample_size=p["sample_size"],
                                           out_dir=str(prepared), figures_dir=figs, height=p["height"])),
        ("02_task_synthesis.ipynb", dict(captions_path=str(prepared / "train" / "caption.txt"),
                                         out_dir=str(tasks_dir), figures_dir=figs,
                                         ratios={t: 1.0 for t in p["tasks"]})),
        ("03_sft_trl.ipynb", dict(train_json=[str(tasks_dir / "tasks" / f"{t}.json") for t in p["tasks"]],
                                  preset=p["preset"], model_path=p["model"], out_dir=str(sft),
                                  figures_dir=figs, max_steps=p["max_steps"])),
        ("04_inference_evaluation.ipynb", dict(model_path=str(sft / "final"), test_dir=str(prepared / test_split),
                                               pred_paths=[], datasets=[DATASET_LABELS.get(test_split, test_split)],
                                               out_dir=str(tables),
                                               batch_size=p["batch_size"], max_new_tokens=p["max_new_tokens"])),
        ("05_error_analysis.ipynb", dict(pred_path=str(tables / "predictions.json"),
                                         images_dir=str(prepared / test_split / "images"),
                                         out_dir=str(run_dir / "analysis"), figures_dir=figs)),
    ]


def reproduce(profile: str = "smoke", out: Path | None = None, data: str | None = None) -> int:
    """Run notebooks 01 -> 05; tables land in ``out/tables``, figures in ``out/figures``.

    ``data`` is "synthetic" (default: the embedded generator) or a CROHME root with train/ and test2014/.
    Returns 0, or 1 after printing which notebook and cell failed.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    run_dir = (Path(out) if out else config.runs_dir() / profile).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    p = PROFILES[profile]
    if data in (None, "synthetic"):
        data_root, test_split = synthetic_root(run_dir, p["synth_train"], p["synth_test"]), "test"
    else:
        data_root, test_split = Path(data).resolve(), TEST_SPLIT_CROHME
        if not (data_root / "train").is_dir():
            raise FileNotFoundError(f"{data_root}: no train/ split folder (expected a CROHME-style InkML root)")
    for name, params in notebook_parameters(profile, run_dir, data_root, test_split, run_dir / "figures"):
        print(f"[reproduce:{profile}] {name}", flush=True)
        try:
            run_notebook(name, run_dir, params)
        except NotebookFailed as err:
            print(f"[reproduce:{profile}] FAILED in {err}", file=sys.stderr)
            return 1
    print(f"[reproduce:{profile}] done: tables in {run_dir / 'tables'}, figures in {run_dir / 'figures'}")
    return 0
