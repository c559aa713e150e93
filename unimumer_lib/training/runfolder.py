"""A training run folder (``train --out``): what made it, what a new run may replace, where a resume continues.

``run_config.json`` is the folder's marker, written before the first step from what ``claim`` returns:
``made_by``, the run's ``fingerprint`` (model, a digest of the training data, preset, config file settings,
overrides, steps, seed) and the names of files that were there before (``foreign``); ``record_run`` completes it
at the end.
Rules: a folder holding files this tool did not make is refused (``force``: the run writes beside them, and is
refused anyway when one of them has a name the run writes); an earlier run of ours is replaced only with
``force``, and resumed only when its fingerprint equals this run's, from its newest *complete* checkpoint (a
save cut short by a kill is skipped, naming why). Nothing is deleted through a symlink or outside the folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zipfile
from pathlib import Path

from ..core.files import is_temp_name
from ..core.outdir import LOCK_FILE
from ..core.provenance import ProvenanceMismatch, not_ours, other_settings, read_stamp

RUN_CONFIG_FILE = "run_config.json"
LOSS_HISTORY_FILE = "loss_history.json"
LOSS_CURVE_FILE = "loss_curve.png"
TRAIN_REJECTS_FILE = "rejects.tsv"
FINAL_DIR = "final"
CHECKPOINT_PREFIX = "checkpoint-"
MADE_BY = "unimumer train"
# What a run writes at the top of its folder (TRL writes README.md, the model card; tensorboard writes runs/).
OUTPUTS = (RUN_CONFIG_FILE, LOSS_HISTORY_FILE, LOSS_CURVE_FILE, TRAIN_REJECTS_FILE, FINAL_DIR, "README.md", "runs")


def is_output_name(name: str) -> bool:
    return name in OUTPUTS or name.startswith(CHECKPOINT_PREFIX) or name == LOCK_FILE or is_temp_name(name)


def file_digest(paths) -> str:
    """sha256 (16 hex digits) over the bytes of ``paths``, in order, with their names."""
    h = hashlib.sha256()
    for path in map(Path, paths):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def data_digest(data) -> str:
    """Digest of the training data: the files' bytes, or an in-memory ``datasets.Dataset``'s fingerprint."""
    if hasattr(data, "column_names"):
        return f"dataset:{data._fingerprint}"
    return file_digest([data] if isinstance(data, (str, Path)) else data)


def read_marker(folder: Path) -> dict | None:
    """The run marker of ``folder`` (None when there is none, or the file is not ours)."""
    marker = read_stamp(folder / RUN_CONFIG_FILE, MADE_BY)
    if marker is None:  # an older run of ours has sft_config but no made_by
        try:
            older = json.loads((folder / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return older if isinstance(older, dict) and "sft_config" in older else None
    return marker


def _listing(names) -> str:
    names = sorted(names)
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def claim(folder: Path, fingerprint: dict, resume: bool, force: bool) -> dict:
    """Check ``folder`` against the rules above (clearing an earlier run of ours under ``force``); returns the
    marker this run starts with (written by the caller)."""
    present = {p.name for p in folder.iterdir() if p.name != LOCK_FILE and not is_temp_name(p.name)} \
        if folder.is_dir() else set()
    marker = read_marker(folder) if folder.is_dir() else None
    if marker is None:
        if resume:
            raise ProvenanceMismatch(f"{folder}: no {RUN_CONFIG_FILE} of {MADE_BY}: nothing to resume")
        if present and not force:
            raise not_ours(folder, MADE_BY, RUN_CONFIG_FILE, "choose an empty --out, or --force to write beside "
                           "those files (none of them is overwritten)", found=_listing(present))
        clash = {n for n in present if is_output_name(n)}
        if clash:
            raise not_ours(folder, MADE_BY, RUN_CONFIG_FILE, "those files would be overwritten by the names a "
                           "training run writes; choose another --out", found=_listing(clash))
        return {"made_by": MADE_BY, "fingerprint": fingerprint, "complete": False, "foreign": sorted(present)}
    foreign = set(marker.get("foreign") or []) | {n for n in present if not is_output_name(n)}
    if resume:
        held = marker.get("fingerprint") or {}
        if held != fingerprint:
            raise other_settings(folder, "a training run", held, fingerprint, "--resume continues only the same "
                                 "run: use another --out, or --force to replace it")
    elif not force:
        raise ProvenanceMismatch(f"{folder}: holds an earlier training run ({RUN_CONFIG_FILE}); --resume continues it "
                             f"(same settings), --force replaces it (files it did not make are kept), or choose "
                             f"another --out")
    else:
        clear(folder, foreign)
    return {"made_by": MADE_BY, "fingerprint": fingerprint, "complete": False, "foreign": sorted(foreign)}


def clear(folder: Path, foreign: set[str]) -> None:
    """Delete what an earlier run of ours wrote at the top of ``folder`` (never a foreign name, never through a
    symlink: a link itself is removed, not what it points to)."""
    for path in folder.iterdir():
        if path.name in foreign or path.name == LOCK_FILE or not is_output_name(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_marker(folder: Path, marker: dict) -> None:
    from ..core.files import atomic_write_text

    atomic_write_text(folder / RUN_CONFIG_FILE, json.dumps(marker, indent=1, default=str) + "\n")


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint (None when it is). The Trainer writes ``trainer_state.json``
    last, so its absence means the save was cut short; weights and optimizer files are checked to their end
    (safetensors header vs file size, torch zip archives' central directory)."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        step = int(folder.name[len(CHECKPOINT_PREFIX):])
    except (OSError, ValueError):
        return "no readable trainer_state.json (its save was cut short)"
    if state.get("global_step") != step:
        return f"trainer_state.json records step {state.get('global_step')}, not {step}"
    files = [p for p in folder.rglob("*") if p.is_file()]
    if not any(p.suffix in (".safetensors", ".bin") or p.parent.name.startswith("global_step") for p in files):
        return "no weights file"
    for path in files:
        problem = _safetensors_problem(path) if path.suffix == ".safetensors" else (
            _zip_problem(path) if path.suffix in (".pt", ".pth", ".bin") else None)
        if problem:
            return f"{path.name}: {problem}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "cut short (no header)"
        (n,) = struct.unpack("<Q", head)
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            return "cut short (unreadable header)"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    size = path.stat().st_size
    return None if size >= 8 + n + end else f"cut short ({size} of {8 + n + end} bytes)"


def _zip_problem(path: Path) -> str | None:
    with path.open("rb") as fh:
        if fh.read(2) != b"PK":
            return None  # a legacy pickle file: nothing to check cheaply
    try:
        with zipfile.ZipFile(path):
            return None
    except zipfile.BadZipFile:
        return "cut short (no zip directory)"


def checkpoints(folder: Path) -> list[Path]:
    """``checkpoint-<step>`` folders of ``folder``, newest step first."""
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*")
             if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), reverse=True)


def newest_complete_checkpoint(folder: Path, say=print) -> Path | None:
    """The newest checkpoint that :func:`checkpoint_problem` passes; each skipped one is named with its reason."""
    for path in checkpoints(folder):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        say(f"resume: skipping {path} ({problem})")
    return None
