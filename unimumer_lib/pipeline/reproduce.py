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
from dataclasses import asdict
from pathlib import Path

from .. import TEXT_PROGRESS
from ..core import paths
from ..core.files import atomic_write_text
from ..core.outdir import OutputLock
from ..core.provenance import ProvenanceMismatch, not_ours, other_settings
from ..formats.records import read_captions
from .profiles import HME100K_SPLITS, MAIN_ARM, PROFILES, TEST_SPLIT_CROHME, parse_arms
from .runplan import Step, basic_steps, paper_steps



NOTEBOOKS_DIR = paths.REPO_ROOT / "notebooks"


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


RUN_FILE = "run.json"
REPRODUCE_LOCK = ".unimumer-reproduce.lock"  # the run's own lock; its notebooks lock the folders they write


def synthetic_root(run_dir: Path, n_train: int, n_test: int, seed: int = 0,
                   writers: tuple[str, str] | None = None) -> Path:
    """Synthesise train and test InkML splits (distinct seeds) under ``run_dir/raw``; reuse them if present
    (run.json guarantees they were made for this profile). ``writers``: compose them from the shipped glyph
    bank's (train, test) writer groups, so that the test writers are unseen in training.

    The test split is held out: its samples whose caption also occurs in train are dropped (a few spare
    samples are drawn so that ``n_test`` remain), and the caption sets are asserted disjoint. It is drawn from
    the tiny base's held-out pool (``stream.HELD_OUT_SEED``), whose captions pretraining left out; no seed
    lies in the pretraining range.
    """
    from ..training.stream import HELD_OUT_POOL, HELD_OUT_SEED, check_seed
    from ..data.glyphs import SHIPPED_NAME
    from ..data.synth import CAPTIONS_TSV, synthesize_dataset

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
    from ..data.prepare import find_splits
    from ..data.splits import TEST_SPLIT_NAME

    return [name for name in find_splits(data_root) if TEST_SPLIT_NAME.fullmatch(name)]


def check_inputs(data_root: Path, paper: bool, only: tuple[str, ...] | None = None) -> list[str]:
    """Fail before any notebook runs unless ``data_root`` has InkML in train/ and a test split; returns the
    test splits the pipeline uses (every one for the paper pipeline, test2014 or test otherwise; ``only``: those
    of the named splits that exist, else the synthetic ``test``)."""
    from ..data.prepare import find_splits

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
    from ..formats.records import CAPTION_FILE

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
            flat = [{"profile": r["profile"], "data": r["data"], "data_hme100k": r["data_hme100k"],
                     **({} if held["profile"] != record["profile"] else
                        {f"parameters.{k}": v for k, v in (r["parameters"] or {}).items()})}
                    for r in (held, json.loads(json.dumps(record)))]
            raise other_settings(run_dir, f"a run of profile {held['profile']!r} on data {held['data']!r}", *flat,
                                 f"use another --out, or delete {run_dir} to start over")
        return state
    if run_dir.exists() and any(p.name != REPRODUCE_LOCK for p in run_dir.iterdir()):
        raise not_ours(run_dir, "unimumer reproduce", RUN_FILE, "use an empty or new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"made_by": "unimumer reproduce", **record, "done": {}}
    save_state(run_dir, state)
    return state


def save_state(run_dir: Path, state: dict) -> None:
    atomic_write_text(run_dir / RUN_FILE, json.dumps(state, indent=1, default=str) + "\n")


def _digest(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    and test splits (the default of the paper profiles: ``paths.crohme_root()``). ``arms`` (paper pipeline):
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
    run_dir = (Path(out) if out else paths.runs_dir() / profile).resolve()
    if data is None:  # the profile's default data; paper profiles read the CROHME root
        data = p.data or (str(paths.crohme_root()) if paper else None)
    synthetic = data in (None, "synthetic")
    data_root = None if synthetic else Path(data).resolve()
    if data_root is not None:
        tests = check_inputs(data_root, paper, only)
    if run_dir.exists() and not run_dir.is_dir():
        raise ProvenanceMismatch(f"{run_dir}: --out is a file, not a folder")
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
