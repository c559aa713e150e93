"""Error-driven learning data: (ground truth, wrong prediction) -> error-marked formula and correction log.

The wrong prediction's tokens are aligned to the caption's (``align.align``); each maximal run of differing
tokens becomes one error: extra or wrong prediction tokens are wrapped in ``<error_start> … <error_end>``, and
a ``<deleted>`` marker stands where caption tokens are missing.  The correction log lists one line per error,
in marker order: ``REPLACE:old -> new``, ``DELETE:to_delete`` or ``INSERT:content after position`` (position
is the prediction token just before the marker, ``<start>`` at the beginning).  ``inject_errors`` is the
model-free source: edits sampled from a measured confusion table, records marked ``synthetic``.
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

from ..latex.align import align

ERROR_START, ERROR_END, DELETED = "<error_start>", "<error_end>", "<deleted>"
REPLACE, INSERT, DELETE = "REPLACE:", "INSERT:", "DELETE:"
ARROW, AFTER = " -> ", " after "
START_POSITION = "<start>"
LOG_SEPARATOR = "\n"
MODEL, SYNTHETIC = "model", "synthetic"
GAPS = ("", None)  # how a confusion table writes the missing side of an insertion or deletion


def error_blocks(gt: Sequence[str], pred: Sequence[str]) -> list[tuple[int, int, int, int]]:
    """Maximal runs of non-equal edit steps as (i1, i2, j1, j2): ``gt[i1:i2]`` became ``pred[j1:j2]``."""
    blocks: list[list[int]] = []
    for e in align(gt, pred):
        if e.tag == "equal":
            continue
        if blocks and blocks[-1][1] == e.i1 and blocks[-1][3] == e.j1:
            blocks[-1][1], blocks[-1][3] = e.i2, e.j2
        else:
            blocks.append([e.i1, e.i2, e.j1, e.j2])
    return [tuple(b) for b in blocks]


def edl_targets(gt: str, pred: str) -> tuple[str, str]:
    """(marked prediction, correction log) for a wrong prediction; ValueError when pred equals gt."""
    g, p = gt.split(), pred.split()
    blocks = error_blocks(g, p)
    if not blocks:
        raise ValueError(f"prediction equals the ground truth ({gt!r}): no error to mark")
    marked: list[str] = []
    log: list[str] = []
    j = 0
    for i1, i2, j1, j2 in blocks:
        marked += p[j:j1]
        new, old = " ".join(g[i1:i2]), " ".join(p[j1:j2])
        if j1 == j2:
            marked.append(DELETED)
            log.append(f"{INSERT}{new}{AFTER}{p[j1 - 1] if j1 else START_POSITION}")
        else:
            marked += [ERROR_START, *p[j1:j2], ERROR_END]
            log.append(f"{REPLACE}{old}{ARROW}{new}" if new else f"{DELETE}{old}")
        j = j2
    marked += p[j:]
    return " ".join(marked), LOG_SEPARATOR.join(log)


def parse_log(log: str) -> list[tuple[str, str, str]]:
    """Correction log -> [(kind, a, b)]: (REPLACE, old, new), (DELETE, old, ""), (INSERT, content, position)."""
    entries = []
    for n, line in enumerate(filter(None, log.split(LOG_SEPARATOR)), start=1):
        if line.startswith(REPLACE) and ARROW in line:
            old, new = line[len(REPLACE):].split(ARROW, 1)
            entries.append((REPLACE, old, new))
        elif line.startswith(DELETE):
            entries.append((DELETE, line[len(DELETE):], ""))
        elif line.startswith(INSERT) and AFTER in line:
            content, position = line[len(INSERT):].rsplit(AFTER, 1)
            entries.append((INSERT, content, position))
        else:
            raise ValueError(f"correction log line {n}: not REPLACE:/DELETE:/INSERT: {line!r}")
    return entries


def apply_corrections(marked: str, log: str) -> str:
    """Apply a correction log to the marked formula, one log line per marker in order -> corrected caption.

    ValueError when the log does not fit the markers (wrong kind, span or position, or a count mismatch).
    """
    toks, entries = marked.split(), parse_log(log)
    out: list[str] = []
    k = i = 0
    while i < len(toks):
        t = toks[i]
        if t not in (ERROR_START, DELETED):
            out.append(t)
            i += 1
            continue
        if k >= len(entries):
            raise ValueError(f"marker {k + 1} ({t}) has no correction in the log")
        kind, a, b = entries[k]
        k += 1
        if t == DELETED:
            position = toks[i - 1] if i else START_POSITION
            if kind != INSERT or b != position:
                raise ValueError(f"marker {k} (<deleted> after {position!r}) does not match {kind}{a}")
            out += a.split()
            i += 1
            continue
        try:
            end = toks.index(ERROR_END, i)
        except ValueError:
            raise ValueError(f"marker {k}: {ERROR_START} without {ERROR_END}") from None
        span = " ".join(toks[i + 1:end])
        if kind == INSERT or a != span:
            raise ValueError(f"marker {k} (span {span!r}) does not match {kind}{a}")
        out += b.split()
        i = end + 1
    if k != len(entries):
        raise ValueError(f"log has {len(entries)} corrections but the formula has {k} markers")
    return " ".join(out)


def _pair(item) -> tuple[str, str, str, str]:
    """(id, image, gt, pred) from a (image_or_id, gt, pred) tuple, a prediction mapping or a Prediction."""
    if isinstance(item, (tuple, list)):
        key, gt, pred = item
        return str(key), str(key), gt, pred
    get = item.get if isinstance(item, dict) else lambda k, d=None: getattr(item, k, d)
    key = str(get("img_id") or get("id") or get("image_path") or get("image") or "")
    return key, str(get("image_path") or get("image") or key), get("gt"), get("pred")


def edl_records(pairs: Iterable, source: str = MODEL) -> list[dict]:
    """Pairs of (image_path/id, gt, pred) (or prediction records) -> EDL records for the wrong ones.

    Each record: id, image, gt, pred, marked (error_find target), log (error_fix correction log), source.
    Pairs whose prediction equals the ground truth (token-wise) carry no error and are skipped.
    """
    records = []
    for item in pairs:
        key, image, gt, pred = _pair(item)
        if gt.split() == pred.split():
            continue
        marked, log = edl_targets(gt, pred)
        records.append({"id": key, "image": image, "gt": gt, "pred": pred, "marked": marked, "log": log,
                        "source": source})
    return records


def _confusion_rows(confusions) -> list[tuple[str, str, float]]:
    """A confusion table [(gt_token, pred_token, count)] as a list, or a DataFrame with those columns."""
    if hasattr(confusions, "itertuples"):
        cols = [c for c in ("gt_token", "pred_token", "count") if c in confusions.columns]
        frame = confusions[cols] if len(cols) == 3 else confusions.iloc[:, :3]
        confusions = frame.itertuples(index=False, name=None)
    rows = []
    for g, p, c in confusions:
        g = "" if g in GAPS or g != g else str(g)  # g != g: NaN read from an empty CSV cell
        p = "" if p in GAPS or p != p else str(p)
        if (g or p) and g != p and float(c) > 0:
            rows.append((g, p, float(c)))
    return rows


# Generic near misses of a reader of handwriting, for EDL rows where no model's errors are at hand (the real-glyph
# base's pretraining stream): look-alike substitutions both ways, a dropped or an extra small symbol. It is written
# from the shapes of the glyphs, not from any test set's predictions.
_LOOKALIKE_PAIRS = ("x \\times 3", "1 | 2", "1 l 1", "1 7 1", "0 o 1", "2 z 2", "5 s 1", "9 q 1", "9 g 1",
                    "a \\alpha 2", "y \\gamma 1", "u v 1", "n h 1", "b 6 1", "t + 2", "c C 1", "k K 1", "p P 1",
                    "s S 1", "x X 1", "z Z 1", "- = 1", "+ \\pm 1", "n \\pi 1", "0 \\theta 1", "B \\beta 1",
                    "( [ 1", ") ] 1", "< \\leq 1", "> \\geq 1", "e c 1", "4 y 1", "8 B 1", "r \\gamma 1")
LOOKALIKES: tuple[tuple[str, str, float], ...] = (
    *((a, b, float(w)) for a, b, w in (p.split() for p in _LOOKALIKE_PAIRS)),
    *((b, a, float(w)) for a, b, w in (p.split() for p in _LOOKALIKE_PAIRS)),
    ("-", "", 1.0), ("1", "", 1.0), (",", "", 0.5), ("", "1", 0.5), ("", "-", 0.5),
)


def inject_errors(caption: str, confusions, rng: random.Random, max_edits: int = 3) -> str | None:
    """A plausible wrong prediction of ``caption``: 1..max_edits edits drawn from a confusion table.

    ``(g, p, n)`` with both tokens is a substitution, an empty ``p`` a deletion of ``g``, an empty ``g`` an
    insertion of ``p``; each is drawn with probability proportional to ``n`` among those that apply.
    Returns None when no confusion applies (or the edits cancel out).
    """
    rows = _confusion_rows(confusions)
    toks = caption.split()
    for _ in range(rng.randint(1, max_edits)):
        present = set(toks)
        options = [r for r in rows if (r[0] in present if r[0] else True)]
        if not options:
            break
        g, p, _n = rng.choices(options, weights=[r[2] for r in options])[0]
        if not g:
            toks.insert(rng.randint(0, len(toks)), p)
            continue
        at = rng.choice([k for k, t in enumerate(toks) if t == g])
        toks[at:at + 1] = [p] if p else []
    pred = " ".join(toks)
    return pred if toks and toks != caption.split() else None


def synthetic_records(items: Iterable, confusions, seed: int = 0, per_caption: int = 1,
                      max_edits: int = 3) -> list[dict]:
    """EDL records from captions with injected errors; ``items`` are (image_path/id, caption) pairs."""
    rng = random.Random(seed)
    rows = _confusion_rows(confusions)
    pairs = []
    for key, caption in items:
        for _ in range(per_caption):
            pred = inject_errors(caption, rows, rng, max_edits)
            if pred is not None:
                pairs.append((key, caption, pred))
    return edl_records(pairs, source=SYNTHETIC)


def describe_records(records: list[dict], n: int = 3) -> str:
    """The first ``n`` EDL records as text (ground truth, prediction, marked prediction, correction log)."""
    return "".join(f"\nGT:     {r['gt']}\nPRED:   {r['pred']}\nMARKED: {r['marked']}\nLOG:    {r['log']}\n"
                   for r in records[:n])


def describe_prediction_file(path, n: int = 3) -> str:
    """What EDL makes of a Uni-MuMER prediction file: its wrong predictions, how many of their correction logs
    reproduce the ground truth (``apply_corrections``), and the first ``n`` records (``describe_records``)."""
    from ..formats.predictions import read_predictions

    predictions = read_predictions(path)
    records = edl_records(predictions)
    back = sum(apply_corrections(r["marked"], r["log"]) == r["gt"] for r in records)
    return (f"{len(records)} wrong predictions of {len(predictions)}; correction log reproduces the ground truth "
            f"for {back}\n{describe_records(records, n)}")
