"""Headless reproduction: run the notebooks with papermill under a named profile of parameters.

Two pipelines. ``ci``/``smoke``: notebooks 01 -> 05 once (prepare, caption tasks, SFT, inference on one test
split, analysis). ``paper``/``paper-dry``: the paper -- prepare train and every test split, build vanilla/tree/can
from train, k-fold EDL mining on train only, one SFT per arm (notebook 03 run once per arm), inference of every
arm on every test split into ``predictions/<arm>/<test>.json``, the main and ablation tables, figures of the
main arm per test split (notebook 05 run once per test split). With an HME100K-style root (``--data-hme100k``):
its train/ and test/ are copied in too, vanilla/tree/can and mined EDL rows are built from its train, the main
arm alone is trained on them and recognises its test into ``predictions/all/hme100k.json``: the main table's
HME100K column (the ablation stays CROHME-only, as in the paper).

The run folder records its profile and parameters in ``run.json`` and refuses another profile or other
parameters. Every finished step is recorded there with a hash of its parameters, so a rerun (or a run that was
interrupted) skips finished notebooks -- a finished arm is not retrained -- and starts at the first unfinished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

from . import TEXT_PROGRESS, config, taskspec
from .families import TEST_SPLIT_LABELS, dataset_label
from .gates import GATES_FILE
from .mining import Mining
from .files import atomic_write_text
from .outdir import OutputLock
from .records import read_captions

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


def executed_dir(run_dir: Path) -> Path:
    """Where the executed notebooks of a run live; they run with it as working directory."""
    return run_dir / "notebooks"


def relative_to_run(value, run_dir: Path):
    """``value`` (a parameter: a string, or lists/dicts of them) with every absolute path inside ``run_dir`` written
    relative to the executed notebooks' folder, so a copied run folder re-runs into itself (JupyterLab and papermill
    start a kernel in the notebook's folder). Paths outside the run (the user's data) stay absolute."""
    if isinstance(value, dict):
        return {k: relative_to_run(v, run_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_to_run(v, run_dir) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        root = run_dir.resolve()
        if Path(value).resolve().is_relative_to(root):
            return Path(os.path.relpath(Path(value).resolve(), executed_dir(root))).as_posix()
    return value


def run_notebook(name: str, run_dir: Path, parameters: dict, timeout: int | None = None, tag: str = "") -> Path:
    """Execute ``notebooks/<name>`` into ``run_dir/notebooks/<name>`` (``<stem>.<tag>.ipynb`` with a tag, so a
    notebook run once per arm keeps every executed copy) with that folder as working directory and the run's own
    paths relative to it (``relative_to_run``); raise NotebookFailed naming the cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _isolate_home(run_dir)
    os.environ[TEXT_PROGRESS] = "1"  # the kernel's progress bars as text: they read as finished when saved
    for quiet in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(quiet, "1")  # loading weights, casting a dataset: bars that say nothing in a report
    out = executed_dir(run_dir) / (f"{Path(name).stem}.{tag}.ipynb" if tag else name)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(NOTEBOOKS_DIR / name), str(out), parameters=relative_to_run(parameters, run_dir),
                                   kernel_name="python3", cwd=str(out.parent), progress_bar=False,
                                   execution_timeout=timeout)
    except PapermillExecutionError as err:
        raise NotebookFailed(f"{name}: cell {err.cell_index} (execution count {err.exec_count}) raised "
                             f"{err.ename}: {err.evalue}\n--- cell source ---\n{err.source}\n"
                             f"executed copy: {out}") from None
    return out


@dataclass(frozen=True)
class Paper:
    """What only the paper pipeline has: its EDL mining (``mining.Mining``; its model, preset and batch size are the
    profile's own), the arms trained (None: the five of the ablation), the
    base's zero-shot row, the test splits used (None: every one found) and the number of test images the
    learnability gates of each arm read."""

    mining: Mining
    arms: tuple[str, ...] | None = None
    zero_shot: bool = False
    test_splits: tuple[str, ...] | None = None
    gate_images: int = 0  # learnability gates (gates.py) of every arm on this many test images (0: none)
    gate_arms: tuple[str, ...] | None = None  # the arms (zero-shot included) gated; None: every arm

    def gates(self, arm: str) -> int:
        """The test images ``arm``'s gates read (0: not gated)."""
        return self.gate_images if self.gate_arms is None or arm in self.gate_arms else 0


@dataclass(frozen=True)
class Profile:
    """A ``reproduce`` profile: data sizes, the model and its training/decoding settings, and (``paper``) the
    paper pipeline's own settings; without ``paper`` notebooks 01 -> 05 run once on ``tasks``.

    ``data``: the default --data ("synthetic"; None: synthetic, or the CROHME root for the paper pipeline).
    ``writers``: the synthetic splits are composed from the shipped glyph bank's (train, test) writer groups
    (``glyphs.WRITER_GROUPS``) instead of Hershey glyphs.
    ``threads``: torch threads of the notebook kernels (OMP_NUM_THREADS unless already set). ``seed``: every
    notebook's seed (recorded in run.json with the rest). ``label``: the main-table row of the basic pipeline.
    """

    name: str
    synth_train: int
    synth_test: int
    height: int
    model: str
    preset: str
    max_steps: int
    batch_size: int
    max_new_tokens: int
    sample_size: int | None = None
    data: str | None = None
    threads: int | None = None
    seed: int = 0
    tasks: tuple[str, ...] = ("vanilla", "tree", "can")
    label: str = "ours ({name}, {train})"
    paper: Paper | None = None
    writers: tuple[str, str] | None = None  # synthetic data in real glyphs: the bank's writer groups of (train, test)
    stroke: float = 1.0  # pen width of the prepared images, a multiple of the renderer's default (prepare.stroke_width)
    task_loss_every: int = 0  # notebook 03 logs each task's probe loss every N steps (train.task_loss_callback)


# `smoke` and `cpu` are the paper's experiment in miniature on CPU. `smoke` fine-tunes the shipped real-glyph base
# (`glyph-base`: tiny-base continued on expressions composed from real CROHME-train glyphs of the bank's
# pretraining writers, with every task's format; unimumer_lib/pretrain.py) on expressions composed from the glyphs
# of other writers (the bank's finetune group) and tests on a third group (test), written with a pen twice as broad
# as every image the base trained on (stroke 2.0, as a new device or scanner would): a domain the base did not train
# on, as the paper fine-tunes a Qwen2.5-VL that never saw CROHME. (Other writers alone were no new domain: the base
# read them as well as its own, and vanilla SFT moved it by -0.9 points; at stroke 2.0 it reads 1 of 300.)
# `zero_shot` adds the base's own row; EDL rows are the base's errors on the fine-tuning images (it never saw them)
# sampled at temperature 0.5 (at stroke 2.0 they are far misses, not a trained model's near misses: the base
# reads few of these images). Each arm trains one epoch over its own data (max_steps -1), as the paper trains
# each arm; `smoke-full` adds the compute-matched control (vanilla for as many steps as all). `cpu` fine-tunes
# glyph-base on CROHME train (its EDL rows from glyph-base's own errors). threads=2: on 2 idle cores a second
# thread trains the tiny model 1.45x faster. To hold the smoke near 10 minutes it gates the all arm only (its
# gates are what the acceptance reads) and mines 600 images; `smoke-full` gates every arm.
SMOKE_MINING = Mining(from_model="glyph-base", limit=600, max_steps=-1, temperature=0.5)
PROFILES = {p.name: p for p in (
    Profile("ci", synth_train=48, synth_test=16, height=64, model="tiny", preset="cpu-smoke", max_steps=30,
            batch_size=8, max_new_tokens=64, label="ours (ci, tiny CPU model, {train})"),
    Profile("smoke", synth_train=2000, synth_test=1000, height=64, model="glyph-base", preset="cpu-sft",
            max_steps=-1, batch_size=16, max_new_tokens=96, data="synthetic", threads=2,
            writers=("finetune", "test"), stroke=2.0, task_loss_every=100,
            paper=Paper(SMOKE_MINING, arms=("vanilla", "all"), zero_shot=True, gate_images=200, gate_arms=("all",))),
    Profile("smoke-full", synth_train=2000, synth_test=1000, height=64, model="glyph-base", preset="cpu-sft",
            max_steps=-1, batch_size=16, max_new_tokens=96, data="synthetic", threads=2,
            writers=("finetune", "test"), stroke=2.0, task_loss_every=100,
            paper=Paper(SMOKE_MINING, arms=("vanilla", taskspec.MATCHED_ARM, "all"), zero_shot=True, gate_images=200)),
    Profile("cpu", synth_train=12000, synth_test=500, height=64, model="glyph-base", preset="cpu-sft", max_steps=-1,
            batch_size=16, max_new_tokens=128, threads=2,
            paper=Paper(Mining(from_model="glyph-base", limit=3000, max_steps=-1), arms=("all",), zero_shot=True,
                        test_splits=("test2014",))),
    # The paper: Qwen2.5-VL-3B-Instruct, full fine-tuning, 1 epoch per arm over all of CROHME train, k-fold mining
    # with the same recipe (k=5, 4 samples per held-out image at temperature 1.0: our choices, see the README).
    Profile("paper", synth_train=20000, synth_test=1000, height=128, model="Qwen/Qwen2.5-VL-3B-Instruct",
            preset="paper", max_steps=-1, batch_size=32, max_new_tokens=512,
            paper=Paper(Mining(k=5, samples=4, max_steps=-1, max_new_tokens=512))),
    # The same code path on CPU in minutes: the tiny offline model, the first 30 files of every split, few steps.
    Profile("paper-dry", synth_train=30, synth_test=30, sample_size=30, height=48, model="tiny", preset="cpu-smoke",
            max_steps=12, batch_size=30, max_new_tokens=32, paper=Paper(Mining(k=2, max_steps=8, max_new_tokens=32))),
)}


class Step(NamedTuple):
    """One notebook run of a pipeline: ``key`` (in run.json's done list), the notebook, its parameters, the tag of
    its executed copy, and the keys of the steps it reads from."""

    key: str
    notebook: str
    parameters: dict
    tag: str = ""
    needs: tuple[str, ...] = ()


TEST_SPLIT_CROHME = "test2014"
# Column names of the tables (report.published() uses the same dataset names).
DATASET_LABELS = {"test": "synthetic", **TEST_SPLIT_LABELS}  # test2014 ... test2023 (families.py)
ARMS = ("vanilla", *taskspec.arms(), "all")  # the ablation: vanilla, each auxiliary arm of the registry, all
MAIN_ARM, BASELINE_ARM, MATCHED_ARM = taskspec.MAIN_ARM, taskspec.BASELINE_ARM, taskspec.MATCHED_ARM
# notebook 05 compares the main arm against the baseline (what the auxiliary tasks fixed and broke)
ZERO_SHOT = "zero-shot"  # the untrained model's row beside the arms (profiles with zero_shot)
RUN_FILE = "run.json"
REPRODUCE_LOCK = ".unimumer-reproduce.lock"  # the run's own lock; its notebooks lock the folders they write
HME100K_SPLIT = "hme100k"  # predictions/<main arm>/hme100k.json; its main-table column is families' "HME100K"
HME100K_SPLITS = ("train", "test")
TRAIN_LABELS = {True: "synthetic", False: "CROHME train"}  # the training data of a run, by "tested on synthetic"


class RunFolderMismatch(ValueError):
    """The run folder holds another profile, other parameters, or files that are not a run's."""


def arm_tasks(arm: str) -> list[str]:
    """Training tasks of an arm: vanilla plus the tasks of the named auxiliary arms (``taskspec.arms``: an arm name
    adds its tasks to vanilla; ``all`` = every one; ``tree+edl`` = vanilla + tree + EDL)."""
    if arm == MATCHED_ARM:
        return ["vanilla"]
    aux = taskspec.arms()
    names = list(aux) if arm == MAIN_ARM else [n for n in arm.split("+") if n != "vanilla"]
    unknown = [n for n in names if n not in aux]
    if unknown or not arm:
        raise ValueError(f"unknown arm {arm!r}: use vanilla, all, {MATCHED_ARM} (vanilla for as many steps as "
                         f"all), or auxiliary tasks {'+'.join(aux)} joined with '+'")
    return ["vanilla"] + [t for n in aux if n in names for t in aux[n]]


def parse_arms(text: str | list[str] | None) -> list[str]:
    """``"vanilla,tree,all"`` -> checked arm names (default: the five arms of the ablation)."""
    arms = list(ARMS) if not text else [a.strip() for a in (text.split(",") if isinstance(text, str) else text)]
    for arm in arms:
        arm_tasks(arm)
    if len(set(arms)) != len(arms):
        raise ValueError(f"arm named twice in {arms}")
    if MATCHED_ARM in arms and MAIN_ARM not in arms:
        raise ValueError(f"the {MATCHED_ARM} arm trains as many steps as the {MAIN_ARM} arm: name both")
    return arms


def synthetic_root(run_dir: Path, n_train: int, n_test: int, seed: int = 0,
                   writers: tuple[str, str] | None = None) -> Path:
    """Synthesise train and test InkML splits (distinct seeds) under ``run_dir/raw``; reuse them if present
    (run.json guarantees they were made for this profile). ``writers``: compose them from the shipped glyph
    bank's (train, test) writer groups, so that the test writers are unseen in training.

    The test split is held out: its samples whose caption also occurs in train are dropped (a few spare
    samples are drawn so that ``n_test`` remain), and the caption sets are asserted disjoint. It is drawn from
    the tiny base's held-out pool (``pretrain.HELD_OUT_SEED``), whose captions pretraining left out; no seed
    lies in the pretraining range.
    """
    from .pretrain import HELD_OUT_POOL, HELD_OUT_SEED, check_seed
    from .glyphs import SHIPPED_NAME
    from .synth import CAPTIONS_TSV, synthesize_dataset

    root = run_dir / "raw"
    n_draw = n_test + n_test // 10 + 10
    check_seed(seed, "the synthetic train split")
    check_seed(seed + 1, "the synthetic test split")
    if seed + 1 != HELD_OUT_SEED or n_draw > HELD_OUT_POOL:  # the tiny base never saw these test captions
        raise ValueError(f"the synthetic test split must be drawn from the pretraining held-out pool (seed "
                         f"{HELD_OUT_SEED}, at most {HELD_OUT_POOL} samples); got seed {seed + 1}, {n_draw} samples")
    groups = dict(zip(("train", "test"), writers or (None, None)))
    for split, n, split_seed in (("train", n_train, seed), ("test", n_draw, seed + 1)):
        if not (root / split).is_dir():
            tmp = run_dir / f"raw_{split}.tmp"
            glyphs = {"glyphs": SHIPPED_NAME, "writers": groups[split]} if groups[split] else {}
            summary = synthesize_dataset(n=n, seed=split_seed, out=tmp, **glyphs)
            if split == "test":
                train_tsv = run_dir / "raw_train.tmp" / CAPTIONS_TSV
                _hold_out(Path(summary["folder"]), read_captions(train_tsv), read_captions(tmp / CAPTIONS_TSV), n_test)
            root.mkdir(parents=True, exist_ok=True)
            Path(summary["folder"]).rename(root / split)
    return root


def _hold_out(folder: Path, train: dict[str, str], test: dict[str, str], n: int) -> None:
    """Delete the test InkML files whose caption is in ``train`` and those beyond the first ``n`` others."""
    seen = set(train.values())
    keep = [key for key, caption in test.items() if caption not in seen][:n]
    for key in set(test) - set(keep):
        (folder / f"{key}.inkml").unlink()
    assert not seen & {test[k] for k in keep}, "held-out test captions overlap the training captions"
    if len(keep) < n:
        raise ValueError(f"only {len(keep)} of {n} synthetic test captions are absent from train")


def find_test_splits(data_root: Path) -> list[str]:
    """Test split folders holding InkML under a data root (test, test2014, test2016, test2019, ...)."""
    from .prepare import find_splits
    from .splits import TEST_SPLIT_NAME

    return [name for name in find_splits(data_root) if TEST_SPLIT_NAME.fullmatch(name)]


def check_inputs(data_root: Path, paper: bool, only: tuple[str, ...] | None = None) -> list[str]:
    """Fail before any notebook runs unless ``data_root`` has InkML in train/ and a test split; returns the
    test splits the pipeline uses (every one for the paper pipeline, test2014 or test otherwise; ``only``: those
    of the named splits that exist, else the synthetic ``test``)."""
    from .prepare import find_splits

    splits = find_splits(data_root)
    if "train" not in splits:
        raise FileNotFoundError(f"{data_root}: no train/ split with .inkml files (expected a CROHME-style root)")
    tests = find_test_splits(data_root)
    if only:
        tests = [t for t in tests if t in only] or [t for t in tests if t == "test"]
    elif not paper:
        tests = [t for t in (TEST_SPLIT_CROHME, "test") if t in tests][:1]
    if not tests:
        raise FileNotFoundError(f"{data_root}: no test split with .inkml files beside train/ "
                                f"(expected {TEST_SPLIT_CROHME}/ or test*/ folders); found {sorted(splits) or 'none'}")
    return tests


def check_hme100k(root: Path) -> None:
    """Fail before any notebook runs unless ``root`` has train/ and test/ folders each with a caption.txt."""
    from .records import CAPTION_FILE

    missing = [split for split in HME100K_SPLITS if not (root / split / CAPTION_FILE).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: no {' or '.join(f'{s}/{CAPTION_FILE}' for s in missing)} (expected an "
                                f"HME100K-style root: train/ and test/, each caption.txt + its images)")


def run_record(profile: str, data: str, data_hme100k: str | None = None) -> dict:
    """What a run folder is for: its profile, the profile's parameters and the data it reads."""
    return {"profile": profile, "data": data, "data_hme100k": data_hme100k,
            "parameters": json.loads(json.dumps(asdict(PROFILES[profile])))}


def open_run(run_dir: Path, record: dict) -> dict:
    """Claim ``run_dir`` for ``record`` (refusing another profile/parameters or a foreign folder); returns the
    run state ``{**record, "done": {step: parameter hash}}``."""
    state_path = run_dir / RUN_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        held = {k: state.get(k) for k in record}
        if held != json.loads(json.dumps(record)):
            diff = sorted(k for k in record["parameters"] if held["parameters"].get(k) != record["parameters"][k]) \
                if held["profile"] == record["profile"] else ["profile"]
            diff += [k for k in ("data", "data_hme100k") if held[k] != record[k]]
            hme = {k: f" + HME100K {r['data_hme100k']!r}" if r["data_hme100k"] else "" for k, r in
                   (("held", held), ("asked", record))}
            raise RunFolderMismatch(
                f"{run_dir} holds a run of profile {held['profile']!r} on data {held['data']!r}{hme['held']}; this "
                f"run asks for profile {record['profile']!r} on data {record['data']!r}{hme['asked']} (differs in: "
                f"{', '.join(diff)}). Use another --out, or delete {run_dir} to start over.")
        return state
    if run_dir.exists() and any(p.name != REPRODUCE_LOCK for p in run_dir.iterdir()):
        raise RunFolderMismatch(f"{run_dir} is not empty and holds no {RUN_FILE}: not a run folder of this tool; "
                                f"use an empty or new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {**record, "done": {}}
    save_state(run_dir, state)
    return state


def save_state(run_dir: Path, state: dict) -> None:
    atomic_write_text(run_dir / RUN_FILE, json.dumps(state, indent=1, default=str) + "\n")


def _digest(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- one function per notebook builds its parameters ------------------------------------------------------

def explore_parameters(p: Profile, data_root: Path, prepared: Path, figures: Path) -> dict:
    """Notebook 01: prepare (a sample of) every split of ``data_root`` into ``prepared``."""
    return dict(data_root=str(data_root), sample_size=p.sample_size, out_dir=str(prepared), figures_dir=str(figures),
                height=p.height, stroke=p.stroke, seed=p.seed)


def synthesis_parameters(p: Profile, captions: Path, out: Path, figures: Path, test_roots: list[Path]) -> dict:
    """Notebook 02: the caption tasks of ``captions`` (basic pipeline: ``p.tasks``, all rows of each) or, for the
    paper pipeline, the caption tasks and the EDL tasks from the profile's mining."""
    params = dict(captions_path=str(captions), out_dir=str(out), figures_dir=str(figures),
                  test_roots=[str(r) for r in test_roots], seed=p.seed)
    if p.paper is None:
        return params | dict(ratios={t: 1.0 for t in p.tasks})
    mining = replace(p.paper.mining, model=p.model, preset=p.preset, batch_size=p.batch_size)  # the profile's recipe
    return params | dict(mining=asdict(mining))


def sft_parameters(p: Profile, train_json: list[Path], out: Path, figures: Path,
                   processes: int | None = None, steps_of: list[Path] | None = None) -> dict:
    """Notebook 03: fine-tune the profile's model on ``train_json`` with its preset (``steps_of``: for as many
    steps as one epoch of those files takes, the compute-matched control)."""
    return dict(train_json=[str(f) for f in train_json], preset=p.preset, model_path=p.model, out_dir=str(out),
                figures_dir=str(figures), max_steps=p.max_steps, seed=p.seed,
                **({"processes": processes} if processes else {}),
                **({"task_loss_every": p.task_loss_every} if p.task_loss_every else {}),
                **({"steps_of": [str(f) for f in steps_of]} if steps_of else {}))


def inference_parameters(p: Profile, model_path: str, tests: dict[str, Path], predictions: Path, out: Path,
                         model_name: str, arm: str | None = None) -> dict:
    """Notebook 04 (inference): ``model_path`` recognises each prepared test split into ``predictions/<split>.json``,
    evaluated into ``out``; with the profile's ``gate_images`` (for ``arm``), its learnability gates on the first
    test split (``out/gates.json``)."""
    gate_images = p.paper.gates(arm) if p.paper and arm else 0
    return dict(model_path=str(model_path), test_dirs={t: str(d) for t, d in tests.items()},
                predictions_dir=str(predictions), pred_paths=[],
                datasets=[DATASET_LABELS.get(t) or dataset_label(t) or t for t in tests],
                model_name=model_name, out_dir=str(out), batch_size=p.batch_size, max_new_tokens=p.max_new_tokens,
                **({"gate_images": gate_images} if gate_images else {}))


def analysis_parameters(pred: Path, images: Path, out: Path, figures: Path, baseline: Path | None = None) -> dict:
    """Notebook 05: the errors of ``pred`` (and, with ``baseline``, what it fixed and broke against it)."""
    return dict(pred_path=str(pred), images_dir=str(images), out_dir=str(out), figures_dir=str(figures),
                **({"baseline_path": str(baseline)} if baseline else {}))


def notebook_parameters(profile: str, run_dir: Path, data_root: Path, test_split: str, figures: Path) -> list:
    """(notebook, parameters) in pipeline order for the basic pipeline (ci); each notebook reads what the previous
    one wrote."""
    p = PROFILES[profile]
    prepared, tasks_dir, sft, tables = (run_dir / "prepared", run_dir / "tasks", run_dir / "sft",
                                        run_dir / "tables")
    evaluate = dict(model_path=str(sft / "final"), test_dir=str(prepared / test_split), pred_paths=[],
                    datasets=[DATASET_LABELS.get(test_split, test_split)],
                    model_name=p.label.format(name=p.name, train=TRAIN_LABELS[test_split == "test"]),
                    out_dir=str(tables), batch_size=p.batch_size, max_new_tokens=p.max_new_tokens)
    return [
        ("01_data_exploration.ipynb", explore_parameters(p, data_root, prepared, figures)),
        ("02_task_synthesis.ipynb", synthesis_parameters(p, prepared / "train" / "caption.txt", tasks_dir, figures,
                                                         [data_root, prepared])),
        ("03_sft_trl.ipynb", sft_parameters(p, [tasks_dir / "tasks" / f"{t}.json" for t in p.tasks], sft, figures)),
        ("04_inference_evaluation.ipynb", evaluate),
        ("05_error_analysis.ipynb", analysis_parameters(tables / "predictions.json",
                                                        prepared / test_split / "images", run_dir / "analysis",
                                                        figures)),
    ]


def basic_steps(profile: str, run_dir: Path, data_root: Path, tests: list[str]) -> list[Step]:
    """The basic pipeline (ci) as steps, each needing the ones before it."""
    names = notebook_parameters(profile, run_dir, data_root, tests[0], run_dir / "figures")
    keys = [Path(name).stem for name, _ in names]
    return [Step(key, name, params, "", tuple(keys[:i])) for i, (key, (name, params)) in enumerate(zip(keys, names))]


def paper_steps(profile: str, run_dir: Path, data_root: Path, tests: list[str], arms: list[str],
                hme100k: Path | None = None, processes: int | None = None) -> list[Step]:
    """The paper pipeline as steps; with an HME100K root, the HME100K model's steps (``hme100k_steps``) come
    before the tables."""
    p = PROFILES[profile]
    prepared, tasks_dir, preds, figures = (run_dir / "prepared", run_dir / "tasks", run_dir / "predictions",
                                           run_dir / "figures")
    labels = {t: DATASET_LABELS.get(t, t) for t in tests}
    splits = {t: prepared / t for t in tests}
    main_arm = MAIN_ARM if MAIN_ARM in arms else arms[-1]
    explore = explore_parameters(p, data_root, prepared, figures)
    if hme100k is not None:
        explore.update(hme100k_root=str(hme100k), hme100k_out=str(run_dir / "hme100k_prepared"))
    steps = [Step("01", "01_data_exploration.ipynb", explore),
             Step("02", "02_task_synthesis.ipynb", synthesis_parameters(
                 p, prepared / "train" / "caption.txt", run_dir, figures, [data_root, prepared]), "", ("01",))]
    for arm in arms:
        matched = [tasks_dir / f"{t}.json" for t in arm_tasks(MAIN_ARM)] if arm == MATCHED_ARM else None
        steps.append(Step(f"03[{arm}]", "03_sft_trl.ipynb", sft_parameters(
            p, [tasks_dir / f"{t}.json" for t in arm_tasks(arm)], run_dir / "sft" / arm, figures / arm, processes,
            matched), arm, ("02",)))
    for arm in arms:
        steps.append(Step(f"04[{arm}]", "04_inference_evaluation.ipynb", inference_parameters(
            p, run_dir / "sft" / arm / "final", splits, preds / arm, run_dir / "results" / arm,
            arm_model_name(profile, arm), arm), arm, ("01", f"03[{arm}]")))
    table_arms = list(arms)
    if p.paper.zero_shot:  # the base itself, no SFT: the paper's zero-shot rows
        table_arms.insert(0, ZERO_SHOT)
        steps.append(Step(f"04[{ZERO_SHOT}]", "04_inference_evaluation.ipynb", inference_parameters(
            p, p.model, splits, preds / ZERO_SHOT, run_dir / "results" / ZERO_SHOT,
            arm_model_name(profile, ZERO_SHOT), ZERO_SHOT), ZERO_SHOT, ("01",)))
    main_tests = {}
    if hme100k is not None:
        steps += hme100k_steps(profile, run_dir, data_root, hme100k)
        main_tests = {HME100K_SPLIT: dataset_label(HME100K_SPLIT)}
    gate_paths = {arm: str(run_dir / "results" / arm / GATES_FILE) for arm in table_arms if p.paper.gates(arm)}
    steps.append(Step("tables", "04_inference_evaluation.ipynb", dict(
        pred_paths=[str(preds / main_arm / f"{t}.json") for t in tests], datasets=list(labels.values()),
        model_name=arm_model_name(profile, main_arm), out_dir=str(run_dir / "tables"), paper_arms=table_arms,
        predictions_root=str(preds), tests=labels, main_arm=main_arm, figures_dir=str(figures),
        arm_names={arm: arm_model_name(profile, arm) for arm in table_arms},
        main_tests=main_tests, **({"gate_paths": gate_paths} if p.paper.gate_images else {})), "tables",
        tuple(f"04[{arm}]" for arm in table_arms) + tuple(f"04[{t}]" for t in main_tests)))
    baseline = BASELINE_ARM if BASELINE_ARM in arms and BASELINE_ARM != main_arm else None
    for t in tests:  # the main arm's errors, and (with the vanilla arm) what it fixed and broke against vanilla
        steps.append(Step(f"05[{t}]", "05_error_analysis.ipynb", analysis_parameters(
            preds / main_arm / f"{t}.json", prepared / t / "images", run_dir / "analysis" / t,
            figures / main_arm / t, preds / baseline / f"{t}.json" if baseline else None),
            t, (f"04[{main_arm}]",) + ((f"04[{baseline}]",) if baseline else ())))
    return steps


def hme100k_steps(profile: str, run_dir: Path, data_root: Path, hme100k: Path) -> list[Step]:
    """The HME100K model: tasks (with mined EDL) from HME100K train, the main arm trained on them with the same
    recipe, recognition of HME100K test into ``predictions/<main arm>/hme100k.json``. Every HME100K and CROHME
    test split is a leak-guard root."""
    p = PROFILES[profile]
    prepared, work, figures = run_dir / "hme100k_prepared", run_dir / HME100K_SPLIT, run_dir / "figures" / HME100K_SPLIT
    test_roots = [hme100k, prepared, data_root, run_dir / "prepared"]
    key = f"[{HME100K_SPLIT}]"
    return [
        Step("02" + key, "02_task_synthesis.ipynb", synthesis_parameters(
            p, prepared / "train" / "caption.txt", work, figures, test_roots), HME100K_SPLIT, ("01",)),
        Step("03" + key, "03_sft_trl.ipynb", sft_parameters(
            p, [work / "tasks" / f"{t}.json" for t in arm_tasks(MAIN_ARM)], work / "sft" / MAIN_ARM,
            figures / MAIN_ARM), f"{HME100K_SPLIT}-{MAIN_ARM}", ("02" + key,)),
        Step("04" + key, "04_inference_evaluation.ipynb", inference_parameters(
            p, work / "sft" / MAIN_ARM / "final", {HME100K_SPLIT: prepared / "test"},
            run_dir / "predictions" / MAIN_ARM, run_dir / "results" / HME100K_SPLIT,
            arm_model_name(profile, MAIN_ARM)), HME100K_SPLIT, ("01", "03" + key)),
    ]


def arm_model_name(profile: str, arm: str) -> str:
    """Row name of an arm in the tables (the zero-shot row names the model)."""
    if arm == ZERO_SHOT:
        return f"{PROFILES[profile].model} ({profile}, zero-shot)"
    return f"ours ({profile}, {arm})"


def run_steps(steps: list[Step], run_dir: Path, state: dict, profile: str) -> int:
    """Run the steps not finished earlier with the same parameters (or whose dependencies ran now)."""
    ran: set[str] = set()
    for key, name, params, tag, needs in steps:
        digest = _digest({"notebook": name, "parameters": relative_to_run(params, run_dir)})  # a copied run: same
        what = f"{name}" + (f" [{tag}]" if tag else "")
        if state["done"].get(key) == digest and not ran & set(needs):
            verb = "not retrained" if name.startswith("03_") else "skipped"
            print(f"[reproduce:{profile}] {what}: finished earlier with the same parameters, {verb}", flush=True)
            continue
        print(f"[reproduce:{profile}] {what}", flush=True)
        if "predictions_dir" in params and ran & set(needs):  # a retrained model: its old predictions are stale
            for split in params["test_dirs"]:  # (two models write into predictions/all: CROHME and HME100K)
                for stale in Path(params["predictions_dir"]).glob(f"{split}.json*"):
                    stale.unlink()
        state["done"].pop(key, None)
        save_state(run_dir, state)
        try:
            run_notebook(name, run_dir, params, tag=tag)
        except NotebookFailed as err:
            print(f"[reproduce:{profile}] FAILED in {err}", file=sys.stderr)
            return 1
        state["done"][key] = digest
        save_state(run_dir, state)
        ran.add(key)
    return 0


def reproduce(profile: str = "smoke", out: Path | None = None, data: str | None = None,
              arms: str | list[str] | None = None, data_hme100k: str | None = None,
              train_processes: int | None = None) -> int:
    """Run the profile's notebooks; tables land in ``out/tables``, figures in ``out/figures``.

    ``data`` is "synthetic" (the embedded generator; the default of ci/smoke) or a CROHME-style root with train/
    and test splits (the default of the paper profiles: ``config.crohme_root()``). ``arms`` (paper pipeline):
    comma-separated arm names, default the five of the ablation. ``data_hme100k`` (paper pipeline, needs the
    ``all`` arm): an HME100K-style root (train/, test/) for the HME100K model and column. ``train_processes``
    (paper pipeline): processes per arm's training (default: notebook 03's, one per visible GPU; 2 on a CPU
    machine runs the 2-process gloo launcher). Returns 0, or 1 after printing which notebook
    and cell failed; a refused run folder or missing input raises before any notebook runs.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    p = PROFILES[profile]
    if p.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(p.threads))
    paper = p.paper is not None
    if train_processes and not paper:
        raise ValueError("--train-processes needs a paper-pipeline profile")
    if arms and not paper:
        names = ", ".join(k for k, v in PROFILES.items() if v.paper is not None)
        raise ValueError(f"--arms needs a paper profile ({names})")
    arms = parse_arms(arms or p.paper.arms) if paper else None
    only = p.paper.test_splits if paper else None
    hme100k = Path(data_hme100k).resolve() if data_hme100k else None
    if hme100k is not None:
        if not paper or MAIN_ARM not in arms:
            raise ValueError(f"--data-hme100k trains the {MAIN_ARM!r} arm of a paper profile: use --profile paper or "
                             f"paper-dry with {MAIN_ARM!r} among --arms")
        check_hme100k(hme100k)
    run_dir = (Path(out) if out else config.runs_dir() / profile).resolve()
    if data is None:  # the profile's default data; paper profiles read the CROHME root
        data = p.data or (str(config.crohme_root()) if paper else None)
    synthetic = data in (None, "synthetic")
    data_root = None if synthetic else Path(data).resolve()
    if data_root is not None:
        tests = check_inputs(data_root, paper, only)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderMismatch(f"{run_dir}: --out is a file, not a folder")
    with OutputLock(run_dir, "unimumer reproduce", name=REPRODUCE_LOCK):
        state = open_run(run_dir, run_record(profile, "synthetic" if synthetic else str(data_root),
                                             str(hme100k) if hme100k else None))
        if synthetic:
            data_root = synthetic_root(run_dir, p.synth_train, p.synth_test, writers=p.writers)
            tests = check_inputs(data_root, paper, only)
        steps = (paper_steps(profile, run_dir, data_root, tests, arms, hme100k, train_processes) if paper
                 else basic_steps(profile, run_dir, data_root, tests))
        if run_steps(steps, run_dir, state, profile):
            return 1
    print(f"[reproduce:{profile}] done: tables in {run_dir / 'tables'}, figures in {run_dir / 'figures'}")
    return 0
