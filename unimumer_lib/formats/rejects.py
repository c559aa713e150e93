"""Rejects: what a command read and did not use, and why. One type (``Reject``), one file layout (a TSV whose
header is ``REJECTS_HEADER``: source, item, reason) and one writer and reader, for every command that goes on past
bad input (prepare, glyphs, tasks, train, infer, normalize, the parquet export); counts reconcile: read = written
+ rejected.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..core.files import atomic_write_text, tsv_line

REJECTS_HEADER = ("source", "item", "reason")


@dataclass(frozen=True)
class Reject:
    """One thing left out: ``source``, where it was read from (a file, or the task whose rows were built);
    ``item``, the record, row or id in it ("" when the whole file is left out); ``reason``, why."""

    source: str
    item: str
    reason: str

    def line(self) -> str:
        return tsv_line(self.source, self.item, self.reason)


def rejects_text(rejects) -> str:
    """The rejects file's text: the header, then one line per ``Reject``."""
    return tsv_line(*REJECTS_HEADER) + "".join(r.line() for r in rejects)


def write_rejects(path, rejects) -> Path:
    """Write ``rejects`` (``Reject``s) to ``path`` atomically."""
    return atomic_write_text(Path(path), rejects_text(rejects))


def read_rejects(path) -> list[Reject]:
    """The ``Reject``s of a rejects file (one of another layout is an error naming it and its header)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if tuple(header or ()) != REJECTS_HEADER:
            raise ValueError(f"{path}: not a rejects file (header {header}, expected {list(REJECTS_HEADER)})")
        return [Reject(*row) for row in reader]
