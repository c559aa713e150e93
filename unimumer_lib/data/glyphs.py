"""Real handwritten glyphs: a bank of the symbols written in a CROHME *train* split, for synthesis.

Every symbol ``traceGroup`` of a segmented InkML file (its truth label and its traces) becomes one glyph: its
strokes moved to the origin, scaled so that the longer side of its box is ``GRID`` units, y pointing up (as
``synth``'s Hershey glyphs), simplified (Ramer-Douglas-Peucker, ``TOLERANCE`` units) and stored as bytes. Each glyph
keeps its writer: the file's ``writer`` annotation within its source folder, or the file itself where none is
written (MathBrush), so that ``synth`` can write one expression with one writer's hand.

``build_bank`` refuses a test split, by its folder name and by the leak guard (``splits.held_out_index``: an
InkML id of a test split under the CROHME root or beside the source). Its counts reconcile: files read = used +
rejected, each reject with its reason (``glyphs.rejects.tsv`` beside the bank).

The package ships the bank of CROHME train (``SHIPPED_BANK``, CC BY-NC-SA 3.0 like CROHME: see the licence file in
its folder); ``load_bank()`` reads it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ..core.paths import RESOURCES
from ..core.tally import Tally

GRID = 255  # a glyph's longer side, in stored units (uint8)
TOLERANCE = 2.0  # Ramer-Douglas-Peucker tolerance, in stored units (under 1 % of the glyph)
BANK_FILE = "glyphs.npz"
BANK_REJECTS_FILE = "glyphs.rejects.tsv"
SHIPPED_BANK = RESOURCES / "glyphs" / BANK_FILE
LABEL_ALIASES = {"\\lt": "<", "\\gt": ">"}  # CROHME's symbol labels -> the caption tokens they are written as
# Writer groups, by a stable hash of the writer key: pretraining draws from one, the miniature's fine-tuning and
# test sets from the others (``writer_group``), so the base never saw the hands it is fine-tuned and tested on.
WRITER_GROUPS = (("pretrain", 0.7), ("finetune", 0.2), ("test", 0.1))


class TestSplitRefused(ValueError):
    """A glyph bank was asked for from a test split."""


def writer_group(writer: str) -> str:
    """The group (``WRITER_GROUPS``) a writer key falls in, the same on every machine."""
    u = int.from_bytes(hashlib.sha256(writer.encode()).digest()[:8], "big") / 2 ** 64
    for name, share in WRITER_GROUPS:
        if u < share:
            return name
        u -= share
    return WRITER_GROUPS[-1][0]


def simplify(stroke: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """Ramer-Douglas-Peucker: a subset of ``stroke``'s points (the ends kept) such that every point lies within
    ``tolerance`` of the polyline through them."""
    if len(stroke) < 3:
        return stroke
    keep = np.zeros(len(stroke), bool)
    keep[[0, -1]] = True
    spans = [(0, len(stroke) - 1)]
    while spans:
        a, b = spans.pop()
        if b - a < 2:
            continue
        p, d = stroke[a], stroke[b] - stroke[a]
        seg = stroke[a + 1:b] - p
        t = np.clip(seg @ d / float(d @ d), 0.0, 1.0) if d.any() else np.zeros(len(seg))
        dist = np.hypot(*(seg - t[:, None] * d).T)  # to the segment, so a pen going back past an end is kept
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            keep[a + 1 + k] = True
            spans += [(a, a + 1 + k), (a + 1 + k, b)]
    return stroke[keep]


def normalise(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """InkML strokes (y down) -> uint8 strokes in a GRID box (y up, longer side GRID), simplified."""
    pts = np.concatenate(strokes).astype(np.float64)
    lo, hi = pts.min(0), pts.max(0)
    scale = GRID / max(float((hi - lo).max()), 1e-9)
    out = []
    for s in strokes:
        q = np.stack([(s[:, 0] - lo[0]) * scale, (hi[1] - s[:, 1]) * scale], axis=1)
        out.append(np.clip(np.round(simplify(q)), 0, GRID).astype(np.uint8))
    return out


@dataclass(frozen=True)
class GlyphBank:
    """Glyphs as flat arrays: glyph ``g`` is strokes ``stroke_start[g]:stroke_start[g+1]``, stroke ``s`` is points
    ``point_start[s]:point_start[s+1]`` of ``points`` (uint8, y up); ``label[g]`` and ``writer[g]`` index
    ``labels`` and ``writers``."""

    labels: tuple[str, ...]
    writers: tuple[str, ...]
    label: np.ndarray
    writer: np.ndarray
    stroke_start: np.ndarray
    point_start: np.ndarray
    points: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.label)

    def strokes(self, g: int) -> tuple[np.ndarray, ...]:
        """Glyph ``g``'s strokes as float arrays (y up, in GRID units)."""
        s0, s1 = self.stroke_start[g], self.stroke_start[g + 1]
        return tuple(self.points[self.point_start[s]:self.point_start[s + 1]].astype(np.float64)
                     for s in range(s0, s1))

    @cached_property
    def by_label(self) -> dict[str, np.ndarray]:
        """{caption token: indices of its glyphs}."""
        order = np.argsort(self.label, kind="stable")
        cuts = np.flatnonzero(np.diff(self.label[order])) + 1
        return {self.labels[int(self.label[idx[0]])]: idx for idx in np.split(order, cuts) if len(idx)}

    @cached_property
    def writer_ids(self) -> np.ndarray:
        """The writers (indices into ``writers``) that have glyphs here."""
        return np.unique(self.writer)

    @cached_property
    def by_writer(self) -> dict[int, dict[str, np.ndarray]]:
        """{writer index: {token: indices of that writer's glyphs}}."""
        out: dict[int, dict[str, list[int]]] = {}
        for g, (w, lab) in enumerate(zip(self.writer.tolist(), self.label.tolist())):
            out.setdefault(w, {}).setdefault(self.labels[lab], []).append(g)
        return {w: {k: np.array(v) for k, v in d.items()} for w, d in out.items()}

    def subset(self, writers: set[str] | None = None, group: str | None = None) -> "GlyphBank":
        """The glyphs of some writers: those named, or those of a ``writer_group``."""
        if group is not None:
            writers = {w for w in self.writers if writer_group(w) == group}
        keep = np.flatnonzero(np.isin(self.writer, [i for i, w in enumerate(self.writers) if w in writers]))
        return self.take(keep)

    def take(self, glyphs: np.ndarray) -> "GlyphBank":
        """A bank of the given glyph indices (labels and writers kept as they are)."""
        strokes = [np.arange(self.stroke_start[g], self.stroke_start[g + 1]) for g in glyphs]
        n_strokes = np.array([len(s) for s in strokes], dtype=np.int64)
        flat = np.concatenate(strokes) if strokes else np.zeros(0, np.int64)
        lengths = self.point_start[flat + 1] - self.point_start[flat]
        points = (np.concatenate([self.points[self.point_start[s]:self.point_start[s + 1]] for s in flat])
                  if len(flat) else np.zeros((0, 2), np.uint8))
        return GlyphBank(self.labels, self.writers, self.label[glyphs], self.writer[glyphs],
                         np.concatenate([[0], np.cumsum(n_strokes)]), np.concatenate([[0], np.cumsum(lengths)]),
                         points, self.source)

    def pick(self, token: str, writer: int | None, rng) -> tuple[np.ndarray, ...] | None:
        """Strokes of a glyph of ``token``: ``writer``'s own where that writer wrote it, else any writer's; None
        where the bank has no glyph of it."""
        own = self.by_writer.get(writer, {}).get(token) if writer is not None else None
        pool = own if own is not None else self.by_label.get(token)
        if pool is None:
            return None
        return self.strokes(int(pool[rng.integers(len(pool))]))

    def counts(self) -> dict[str, int]:
        """{token: number of glyphs}, most first."""
        return dict(sorted(((k, len(v)) for k, v in self.by_label.items()), key=lambda kv: (-kv[1], kv[0])))

    def save(self, path: str | Path) -> Path:
        """One compressed ``.npz`` (written atomically)."""
        import io

        from ..core.files import atomic_write_bytes

        buf = io.BytesIO()
        meta = json.dumps({"labels": self.labels, "writers": self.writers, "source": self.source, "grid": GRID})
        np.savez_compressed(buf, meta=np.frombuffer(meta.encode(), np.uint8), label=self.label.astype(np.int16),
                            writer=self.writer.astype(np.int32), stroke_start=self.stroke_start.astype(np.int32),
                            point_start=self.point_start.astype(np.int32), points=self.points)
        return atomic_write_bytes(Path(path), buf.getvalue())


def read_bank(path: str | Path) -> GlyphBank:
    """A bank written by ``GlyphBank.save``."""
    with np.load(Path(path)) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        return GlyphBank(tuple(meta["labels"]), tuple(meta["writers"]), z["label"].astype(np.int64),
                         z["writer"].astype(np.int64), z["stroke_start"].astype(np.int64),
                         z["point_start"].astype(np.int64), z["points"], meta.get("source", ""))


@lru_cache(maxsize=4)
def load_bank(path: str | None = None) -> GlyphBank:
    """The bank at ``path`` (a ``.npz`` or a folder holding ``glyphs.npz``), default the shipped one (cached)."""
    path = Path(path) if path else SHIPPED_BANK
    return read_bank(path / BANK_FILE if path.is_dir() else path)


SHIPPED_NAME = "shipped"  # how commands name the shipped bank


@lru_cache(maxsize=8)
def bank_for(bank: str | None, group: str | None = None) -> GlyphBank | None:
    """A bank by what a command was given (``"shipped"``, a folder or a ``.npz``; None: no bank), narrowed to a
    writer group (cached per process)."""
    if not bank:
        return None
    whole = load_bank(None if bank == SHIPPED_NAME else bank)
    return whole.subset(group=group) if group else whole


# ---- building a bank from InkML ---------------------------------------------------------------------------------

def check_not_test(src: Path, roots=()) -> None:
    """Refuse (TestSplitRefused) a source that is a test split, by name or by the leak guard's index of the test
    splits under ``roots`` (and beside ``src``)."""
    from .inkml import find_inkml
    from .splits import TEST_SPLIT_NAME, held_out_index

    named = [p for p in (src.resolve(), *src.resolve().parents) if TEST_SPLIT_NAME.fullmatch(p.name)]
    if named:
        raise TestSplitRefused(f"{src}: {named[0].name} is a test split; a glyph bank is built from a train split "
                               f"only (its glyphs would leak the test writers into training)")
    index = held_out_index([*roots, src.resolve().parent])
    leaked = [p for p in find_inkml(src) if p.stem in index]
    if leaked:
        raise TestSplitRefused(f"{src}: {len(leaked)} file(s) are expressions of a test split (e.g. "
                               f"{leaked[0].name} in {index[leaked[0].stem]}); refused by the leak guard")


def writer_key(ink, path: Path, src: Path) -> str:
    """``<source folder>/<writer>``: the file's writer annotation, or the file's own id where none is given."""
    rel = path.relative_to(src)
    source = rel.parts[0] if len(rel.parts) > 1 else src.name
    writer = (ink.annotations.get("writer") or "").strip()
    return f"{source}/{writer}" if writer else f"{source}/{path.stem}"


def _glyphs_of(ink) -> tuple[list[tuple[str, list[np.ndarray]]], list[str]]:
    """([(token, strokes)], [reasons a group was left out]) of one ink."""
    out, skipped = [], []
    for group in ink.groups:
        label = LABEL_ALIASES.get(group.label, group.label)
        traces = [ink.traces.get(t) for t in group.trace_ids]
        if not label or any(t is None for t in traces):
            skipped.append("no label" if not label else "a trace it names is missing")
            continue
        out.append((label, [t for t in traces if len(t)]))
    return [(k, s) for k, s in out if s], skipped


def build_bank(src: str | Path, out: str | Path, roots=None, progress: bool = True) -> dict:
    """Build the bank of every symbol traceGroup under the train split ``src``; write ``out/glyphs.npz`` and
    ``out/glyphs.rejects.tsv``. Returns the summary (files read = used + rejected; glyphs; groups left out)."""
    from tqdm.auto import tqdm

    from ..core import paths
    from ..formats.rejects import Reject, write_rejects
    from .inkml import InkmlError, find_inkml, read_inkml

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder (give a CROHME train split, e.g. <crohme>/train)")
    check_not_test(src, [paths.crohme_root()] if roots is None else roots)
    files = find_inkml(src)
    labels: dict[str, int] = {}
    writers: dict[str, int] = {}
    label, writer, n_strokes, lengths, points, rejects, skipped, used = [], [], [], [], [], [], 0, 0
    for path in tqdm(files, desc="glyph bank", unit="file", mininterval=2.0, disable=not progress):
        try:
            ink = read_inkml(path)
        except (InkmlError, RecursionError) as err:
            rejects.append((str(path.relative_to(src)), getattr(err, "reason", str(err))))
            continue
        glyphs, left_out = _glyphs_of(ink)
        skipped += len(left_out)
        if not glyphs:
            rejects.append((str(path.relative_to(src)), "no symbol segmentation (no labelled traceGroup)"))
            continue
        used += 1
        w = writers.setdefault(writer_key(ink, path, src), len(writers))
        for token, strokes in glyphs:
            norm = normalise(strokes)
            label.append(labels.setdefault(token, len(labels)))
            writer.append(w)
            n_strokes.append(len(norm))
            lengths += [len(s) for s in norm]
            points += norm
    bank = GlyphBank(tuple(labels), tuple(writers), np.array(label, np.int64), np.array(writer, np.int64),
                     np.concatenate([[0], np.cumsum(n_strokes, dtype=np.int64)]),
                     np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]),
                     np.concatenate(points) if points else np.zeros((0, 2), np.uint8), source=src.name)
    out.mkdir(parents=True, exist_ok=True)
    bank.save(out / BANK_FILE)
    write_rejects(out / BANK_REJECTS_FILE, [Reject(str(p), "", r) for p, r in rejects])
    tally = Tally(len(files), used, len(rejects))
    return {**tally.as_dict(), "glyphs": len(bank), "labels": len(bank.labels), "writers": len(bank.writers),
            "groups_left_out": skipped, "points": len(bank.points), "bank": str(out / BANK_FILE)}
