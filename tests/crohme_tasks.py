"""Test helper: rows of all five tasks built from real CROHME captions (EDL rows from injected errors)."""

from __future__ import annotations

from unimumer_lib.tasks import edl
from unimumer_lib.data.inkml import caption_of, find_inkml, read_inkml
from unimumer_lib.tasks.build import CAPTION_TASKS, caption_rows, edl_task_rows

# Small made-up confusion table; the insertion always applies, so every caption yields an error record.
CONFUSIONS = [("x", "X", 1), ("2", "z", 1), ("+", "t", 1), ("(", "", 1), ("", "1", 1)]


def rows_of(items, n: int) -> dict[str, list[dict]]:
    """{task: first n rows} from (id, caption, image path) items."""
    items = list(items)
    rows, _rejects = caption_rows(items, CAPTION_TASKS, progress=False)
    records = edl.synthetic_records([(image, caption) for _, caption, image in items], CONFUSIONS, seed=0)
    rows.update(edl_task_rows(records))
    return {task: r[:n] for task, r in rows.items()}


def task_rows(crohme_root, n: int, split: str = "train") -> dict[str, list[dict]]:
    """{task: n rows} from the first n captions of ``split`` (images are placeholder names)."""
    items = [(p.stem, caption_of(read_inkml(p)), f"{p.stem}.png") for p in find_inkml(crohme_root / split)[:n]]
    return rows_of(items, n)
