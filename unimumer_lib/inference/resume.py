"""The resume protocol of a prediction file: the settings a run records beside its output (``<out>.run.json``),
refusing to mix runs of other settings (``claim_output``), the partial file a killed run resumes from, and the
final file written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.provenance import not_ours, other_settings, read_stamp
from ..formats.predictions import RUN_SUFFIX, Prediction
from ..formats.records import Record

if TYPE_CHECKING:
    from transformers import GenerationConfig


PARTIAL_SUFFIX = ".partial.jsonl"
REJECTS_SUFFIX = ".rejects.tsv"
MADE_BY = "unimumer infer"


def side_file(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def run_settings(model, task: str, prompt: str, settings: GenerationConfig, records: list[Record]) -> dict:
    """The settings a prediction file is made with (``<out>.run.json``); rows are reused only under equal ones."""
    from ..models.model import model_identity

    keys = ("max_new_tokens", "num_beams", "num_return_sequences", "do_sample", "temperature", "top_p", "top_k",
            "repetition_penalty")
    return json.loads(json.dumps({"made_by": MADE_BY, "model": model_identity(model), "task": task, "prompt": prompt,
                                  "decoding": {k: getattr(settings, k, None) for k in keys},
                                  "data": data_key(records)}, default=str))


def data_key(records: list[Record]) -> dict:
    """What identifies the input of a run: the records' ids, captions, image paths and image files' stamps."""
    import hashlib

    data = hashlib.sha256(json.dumps([[r.id, r.caption, r.image_path or "", _file_stamp(r.image_path)]
                                      for r in records]).encode()).hexdigest()
    return {"records": len(records), "sha256": data[:16]}


RUN_KEYS = ("made_by", "model", "task", "prompt", "decoding", "data")  # what a resume compares (not the processes)


def _file_stamp(path: str | None) -> list[int] | None:
    """(size, modification time in ns) of an image file: a rerun over replaced image bytes (the same name, or a
    split prepared again at another height) is not the same data, so its old predictions are not reused."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if st else None


def held_settings(out: Path) -> dict | None:
    """The settings ``out`` (or its partial file) was written with; None when neither exists. A file this tool
    did not write raises ``ProvenanceMismatch``: it is never replaced."""
    partial, run_file = side_file(out, PARTIAL_SUFFIX), side_file(out, RUN_SUFFIX)
    if not (out.exists() or partial.exists()):
        return None
    held = read_stamp(run_file, MADE_BY)
    if held is None:
        raise not_ours(out if out.exists() else partial, MADE_BY, run_file.name,
                       "choose another --out, or move it away")
    return {k: v for k, v in held.items() if k != "complete"}


def _check_side_files(out: Path) -> None:
    """Refuse when ``<out>.run.json`` or ``<out>.rejects.tsv`` exists but this tool did not write it (a user's
    file of that name is never replaced, even before ``out`` itself exists)."""
    run_file = side_file(out, RUN_SUFFIX)
    ours = read_stamp(run_file, MADE_BY) is not None
    for path in (run_file, side_file(out, REJECTS_SUFFIX)):
        if path.exists() and not ours:
            raise not_ours(path, MADE_BY, f"run record of {out.name}", "choose another --out, or move it away")


def claim_output(out: Path, wanted: dict, force: bool) -> None:
    """Refuse ``out`` (and its partial file) unless this tool wrote them with ``wanted`` settings (``force``:
    recompute, replacing what it wrote with other settings). A file it did not write is never replaced."""
    _check_side_files(out)
    held = held_settings(out)
    keys = [k for k in RUN_KEYS if k in wanted] or list(wanted)  # the same run with other --processes is the same
    if held is None or all(held.get(k) == wanted[k] for k in keys):
        return
    if not force:
        raise other_settings(out, "predictions", held, wanted, "--force recomputes them, or choose another --out",
                             keys)
    for path in (out, side_file(out, PARTIAL_SUFFIX), side_file(out, REJECTS_SUFFIX)):
        path.unlink(missing_ok=True)


def _read_partial(path: Path) -> list[Prediction]:
    """Rows of a partial file; a line cut by a kill (and anything after it) is truncated away, so the next
    rows are appended after the last whole one."""
    if not path.exists():
        return []
    rows, good = [], 0
    data = path.read_bytes()
    for line in data.splitlines(keepends=True):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no newline")
            row = Prediction.from_json(json.loads(line), path, len(rows))
        except ValueError:  # (a line that is not a whole prediction row, too)
            break
        rows.append(row)
        good += len(line)
    if good < len(data):
        with path.open("r+b") as fh:
            fh.truncate(good)
    return rows


def _write_final(path: Path, rows: list[Prediction]) -> Path:
    from ..formats.predictions import write_predictions

    return write_predictions(path, rows)
