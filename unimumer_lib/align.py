"""Token-level alignment of two LaTeX token sequences (ground truth vs prediction).

The lowest layer shared by metrics, error analysis and error-driven-learning data:
a C-backed Levenshtein edit script (rapidfuzz), not a Python double loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rapidfuzz.distance import Levenshtein


@dataclass(frozen=True)
class Edit:
    """One step of the edit script turning ``ref`` into ``hyp``.

    tag is "equal", "replace", "delete" (tokens of ref missing in hyp) or "insert"
    (extra tokens in hyp); ref[i1:i2] becomes hyp[j1:j2].
    """

    tag: str
    i1: int
    i2: int
    j1: int
    j2: int


def distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Token Levenshtein distance (unit costs)."""
    return Levenshtein.distance(ref, hyp)


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[Edit]:
    """Edit script from ``ref`` to ``hyp`` as opcodes covering both sequences end to end."""
    return [Edit(op.tag, op.src_start, op.src_end, op.dest_start, op.dest_end)
            for op in Levenshtein.opcodes(ref, hyp)]
