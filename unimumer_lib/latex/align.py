"""Token-level alignment of two LaTeX token sequences (ground truth vs prediction).

The lowest layer shared by metrics, error analysis and error-driven-learning data:
a C-backed Levenshtein edit script (rapidfuzz), not a Python double loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein, Postfix, Prefix
from rapidfuzz.process import cpdist


PARALLEL_PAIRS = 20_000  # below this many pairs one thread is faster than starting more


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


def pair_distances(refs: Sequence, hyps: Sequence, threads: int = 1) -> np.ndarray:
    """``distance(refs[i], hyps[i])`` for every i (int32), in one C call (over ``threads`` threads)."""
    return _pairwise(Levenshtein.distance, refs, hyps, threads)


def pair_prefixes(refs: Sequence, hyps: Sequence) -> np.ndarray:
    """Length of the common prefix of ``refs[i]`` and ``hyps[i]`` for every i (int32)."""
    return _pairwise(Prefix.similarity, refs, hyps)


def pair_suffixes(refs: Sequence, hyps: Sequence) -> np.ndarray:
    """Length of the common suffix of ``refs[i]`` and ``hyps[i]`` for every i (int32)."""
    return _pairwise(Postfix.similarity, refs, hyps)


def _pairwise(scorer, refs: Sequence, hyps: Sequence, threads: int = 1) -> np.ndarray:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not len(refs):
        return np.zeros(0, dtype=np.int32)
    return cpdist(refs, hyps, scorer=scorer, dtype=np.int32, workers=threads if len(refs) >= PARALLEL_PAIRS else 1)


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[Edit]:
    """Edit script from ``ref`` to ``hyp`` as opcodes covering both sequences end to end."""
    return [Edit(op.tag, op.src_start, op.src_end, op.dest_start, op.dest_end)
            for op in Levenshtein.opcodes(ref, hyp)]
