"""Recognition metrics over whitespace-tokenised LaTeX, computed as the HMER literature (and Uni-MuMER) does.

Per sample: token Levenshtein distance d (``unimumer_lib.latex.align.distance``, rapidfuzz). Corpus:

- ExpRate / <=1 / <=2 / <=3: share of samples with d <= 0..3.
- edit score: mean of 100 * (1 - d / max(len_gt, len_pred)); both empty = 100.
- BLEU-4: NLTK ``corpus_bleu`` (uniform weights, smoothing method 4) over the token lists, computed here with numpy
  so that a million pairs take seconds; ``tests/test_metrics.py`` checks it against NLTK.
- ``cer``: the published "Character Error Rate" of the official ``*_results.txt`` files (``published_cer``):
  sum(token distance) / sum(reference characters), a fraction (0.0118 on the released CROHME 2014 predictions).
  It is a token count over a character count: an edit costs 1 however many characters it changes.
- ``cer_char``: the true character error rate in percent, corpus character edit distance / reference characters,
  the tokens joined by single spaces (``\\alpha`` -> ``a`` costs 5 here, 1 in ``cer``): 2.33 on the same file.
- structure rate: ExpRate after mapping every symbol token to one placeholder and keeping the structure tokens
  (``unimumer_lib.latex.tokens.STRUCTURE_TOKENS``): "is the layout right, whatever the symbols".

All rates are percentages except ``cer`` (a fraction, as published). Tokenisation is ``str.split()`` as in the
published evaluation, not ``latex.tokenize``, so an un-spaced prediction is scored as the published script scores
it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..latex import align
from ..latex.tokens import STRUCTURE_TOKENS

EXPRATE_DISTANCES = (0, 1, 2, 3)
BLEU_ORDER = 4
RESULT_KEYS = ("n", "exprate", "le1", "le2", "le3", "edit_score", "bleu4", "cer", "cer_char", "structure_rate")
PLACEHOLDER = "<sym>"
# NLTK SmoothingFunction(k=5) default used by method4.
_SMOOTH_K = 5


def tokens(text: str) -> list[str]:
    """Whitespace tokens of a caption or prediction (the published tokenisation)."""
    return text.split()


def skeleton(toks: Sequence[str]) -> list[str]:
    """Structure tokens kept, every other token replaced by PLACEHOLDER."""
    return [t if t in STRUCTURE_TOKENS else PLACEHOLDER for t in toks]


def edit_score(d: int, len_gt: int, len_pred: int) -> float:
    """100 * (1 - d / max(len)); both empty = 100."""
    longest = max(len_gt, len_pred)
    return 100.0 if longest == 0 else 100.0 * (1.0 - d / longest)


# ---------------------------------------------------------------- batch encoding

_FIRST_CHAR = 0x100  # token ids become code points from here: clear of whitespace and control characters
_SURROGATES = 0xD800  # ... skipping the surrogate block, which str cannot encode
_SURROGATE_SPAN = 0x800


class _CharMap(dict):
    """token -> one character, assigning the next free character to an unseen token."""

    def __missing__(self, token: str) -> str:
        code = _FIRST_CHAR + len(self)
        self[token] = chr(code + _SURROGATE_SPAN if code >= _SURROGATES else code)
        return self[token]


@dataclass
class Encoded:
    """Token sequences, one character per token: ``strings`` (rapidfuzz compares them at C speed) and the same
    as one flat int32 array of token ids ``codes`` with per-sequence ``offsets``/``lengths`` (for numpy)."""

    strings: list[str]
    codes: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray


def _encoded(strings: list[str]) -> Encoded:
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    codes = np.frombuffer("".join(strings).encode("utf-32-le"), dtype="<u4").astype(np.int32)
    codes[codes >= _SURROGATES + _SURROGATE_SPAN] -= _SURROGATE_SPAN
    codes -= _FIRST_CHAR
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Encoded(strings, codes, offsets, lengths)


def encode_pairs(gts: Sequence[str], preds: Sequence[str]) -> tuple[Encoded, Encoded, dict[str, int]]:
    """Tokenise and encode references and hypotheses over one shared vocabulary {token: id} (references first;
    a prediction equal to its reference reuses the reference's encoding)."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} references but {len(preds)} predictions")
    chars = _CharMap()
    get = chars.__getitem__
    refs = ["".join(map(get, t.split())) for t in gts]
    hyps = [r if g == p else "".join(map(get, p.split())) for g, p, r in zip(gts, preds, refs)]
    return _encoded(refs), _encoded(hyps), {tok: i for i, tok in enumerate(chars)}


def distances(ref: Encoded, hyp: Encoded, threads: int = 1) -> np.ndarray:
    """Token edit distance per pair (``align.distance`` over all pairs at once)."""
    return align.pair_distances(ref.strings, hyp.strings, threads)


# ---------------------------------------------------------------- BLEU

def _bits(count: int) -> int:
    return max(1, int(count).bit_length())


def _windows(enc: Encoded, pairs: np.ndarray, start: np.ndarray, stop: np.ndarray) -> Encoded:
    """The tokens ``[start, stop)`` of the sequences ``pairs`` (strings left out: BLEU only needs the arrays)."""
    lengths = (stop - start).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    first = np.repeat(enc.offsets[pairs] + start - offsets[:-1], lengths)
    return Encoded([], enc.codes[first + np.arange(int(offsets[-1]), dtype=np.int64)], offsets, lengths)


class _NGrams:
    """All n-grams of a set of sequences, built order by order: the (n)-gram starting at each position is the
    (n-1)-gram there shifted left by one token id and or-ed with the next token (slices, no gathers)."""

    def __init__(self, enc: Encoded, vocab_size: int):
        self.codes = enc.codes
        self.tok_bits = _bits(vocab_size)
        self.seq = np.repeat(np.arange(len(enc.lengths), dtype=np.int32), enc.lengths)
        # tokens left in the sequence from each position on (itself included)
        self.left = (enc.offsets[1:][self.seq] - np.arange(len(enc.codes), dtype=np.int64)).astype(np.int32)
        self.key = np.zeros(len(enc.codes), dtype=np.int64)
        self.n = 0
        self.width = 0

    def next_order(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Advance to order n+1: (sequence index, n-gram id, id width in bits) of every n-gram inside a sequence.
        When the packed id would not fit in 62 bits it is first renumbered (dense ranks, exact)."""
        if self.width + self.tok_bits > 62:
            _, inverse = np.unique(self.key, return_inverse=True)
            self.key = inverse.astype(np.int64)
            self.width = _bits(int(self.key.max(initial=0)) + 1)
        size = max(0, len(self.codes) - self.n)
        self.key = (self.key[:size] << self.tok_bits) | self.codes[self.n:self.n + size]
        self.width += self.tok_bits
        self.n += 1
        inside = self.left[:size] >= self.n
        return self.seq[:size][inside], self.key[inside], self.width


def _concat(a: Encoded, b: Encoded) -> Encoded:
    lengths = np.concatenate([a.lengths, b.lengths])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Encoded([], np.concatenate([a.codes, b.codes]), offsets, lengths)


def _clipped_matches(seq: np.ndarray, key: np.ndarray, width: int, pairs: int) -> int:
    """Sum over pairs of the clipped matches sum_g min(count_hyp(g), count_ref(g)); sequences ``< pairs`` are the
    references, the others the hypotheses in the same order."""
    if len(key) == 0:
        return 0
    if width + _bits(pairs) + 1 > 63:
        _, key = np.unique(key, return_inverse=True)
        width = _bits(int(key.max(initial=0)) + 1)
    seq = seq.astype(np.int64)
    from_hyp = (seq >= pairs).astype(np.int64)
    # One sort of (pair, n-gram, side) keys: a run of equal (pair, n-gram) holds the reference occurrences
    # (side 0) then the hypothesis ones (side 1).
    side_key = ((((seq - from_hyp * pairs) << width) | key) << 1) | from_hyp
    side_key.sort()
    group = side_key >> 1
    starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    size = np.diff(np.append(starts, len(group)))
    in_hyp = np.add.reduceat(side_key & 1, starts)
    return int(np.minimum(in_hyp, size - in_hyp).sum())


def _ngram_count(lengths: np.ndarray, n: int) -> int:
    return int(np.maximum(lengths - n + 1, 0).sum())


def corpus_bleu(ref: Encoded, hyp: Encoded, vocab_size: int, order: int = BLEU_ORDER) -> float:
    """Corpus BLEU (0-1) equal to ``nltk.translate.bleu_score.corpus_bleu`` with one reference per hypothesis,
    uniform weights and ``SmoothingFunction().method4``."""
    return _bleu(_clipped_ngram_matches(ref, hyp, vocab_size, order), hyp.lengths, int(ref.lengths.sum()), order)


def _clipped_ngram_matches(ref: Encoded, hyp: Encoded, vocab_size: int, order: int = BLEU_ORDER) -> list[int]:
    """Per order n = 1..order: sum over pairs of the clipped matches sum_g min(count_hyp(g), count_ref(g)).

    Clipped matches drop by exactly one when one equal occurrence is taken from both sides, so the n-grams of a
    pair's common prefix and common suffix are matched without counting: only the n-grams inside the window from
    ``order - 1`` tokens before the first difference to ``order - 1`` tokens after the last one are counted (an
    exact match is all prefix)."""
    refs, hyps = ref.strings, hyp.strings
    prefix = align.pair_prefixes(refs, hyps)
    suffix = align.pair_suffixes([r[k:] for r, k in zip(refs, prefix.tolist())],
                                 [h[k:] for h, k in zip(hyps, prefix.tolist())])
    pairs = np.arange(len(refs))
    reach = order - 1
    start = np.maximum(prefix - reach, 0)
    r_win = _windows(ref, pairs, start, np.minimum(ref.lengths, ref.lengths - suffix + reach))
    h_win = _windows(hyp, pairs, start, np.minimum(hyp.lengths, hyp.lengths - suffix + reach))
    windows = _concat(r_win, h_win)
    counted = _clipped_matches_one_sort(windows, vocab_size, order, len(refs))
    if counted is None:  # keys too wide to pack: one sort per order, n-gram ids renumbered as needed
        ngrams = _NGrams(windows, vocab_size)
        counted = [_clipped_matches(*ngrams.next_order(), len(refs)) for _ in range(order)]
    return [_ngram_count(hyp.lengths, n) - _ngram_count(h_win.lengths, n) + counted[n - 1]
            for n in range(1, order + 1)]


def _clipped_matches_one_sort(enc: Encoded, vocab_size: int, order: int, pairs: int) -> list[int] | None:
    """Clipped matches of every order 1..``order`` from one sort: each position's key packs (pair, its
    ``order`` tokens, padded past the sequence end, side, tokens left), so that the positions sorted by it are
    grouped by (pair, n-gram) for every n at once (an n-gram is a prefix of the longest one). Sequences
    ``< pairs`` are the references, the others the hypotheses. None when the key does not fit in 63 bits."""
    tok_bits = _bits(vocab_size + 1)  # + the padding id
    low_bits = 1 + _bits(order)  # side, then min(tokens left, order)
    if _bits(pairs) + order * tok_bits + low_bits > 63:
        return None
    total = len(enc.codes)
    seq = np.repeat(np.arange(len(enc.lengths), dtype=np.int64), enc.lengths)
    side = seq >= pairs
    left = np.minimum(enc.offsets[1:][seq] - np.arange(total, dtype=np.int64), order)
    key = seq - side * pairs
    codes = enc.codes.astype(np.int64)
    for k in range(order):
        token = np.full(total, vocab_size, dtype=np.int64)
        if k < total:
            token[:total - k] = codes[k:]
        token[left <= k] = vocab_size  # past the end of its sequence
        key = (key << tok_bits) | token
    key = (((key << 1) | side) << (low_bits - 1)) | left
    key.sort()
    left, side = key & ((1 << (low_bits - 1)) - 1), (key >> (low_bits - 1)) & 1
    counted = []
    for n in range(1, order + 1):
        valid = left >= n
        group = key[valid] >> (low_bits + (order - n) * tok_bits)  # (pair, first n tokens)
        if not len(group):
            counted.append(0)
            continue
        starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
        size = np.diff(np.append(starts, len(group)))
        in_hyp = np.add.reduceat(side[valid], starts)
        counted.append(int(np.minimum(in_hyp, size - in_hyp).sum()))
    return counted


def _bleu(numerators: list[int], hyp_lengths: np.ndarray, ref_len: int, order: int = BLEU_ORDER) -> float:
    """BLEU from the clipped matches per order, the hypothesis lengths and the total reference length."""
    hyp_len = int(hyp_lengths.sum())
    # NLTK's modified_precision divides by max(1, #hyp n-grams) per sentence.
    denominators = [int(np.maximum(hyp_lengths - n + 1, 1).sum()) for n in range(1, order + 1)]
    if not numerators or numerators[0] == 0:
        return 0.0
    precisions = []
    smooth_step = 1
    for num, den in zip(numerators, denominators):
        if num == 0 and hyp_len > 1:  # method4, with NLTK's corpus-level hyp_len
            precisions.append(1 / (2 ** smooth_step * _SMOOTH_K / math.log(hyp_len)) / den)
            smooth_step += 1
        else:
            precisions.append(num / den)
    bp = _brevity_penalty(ref_len, hyp_len)
    weight = 1 / order
    return bp * math.exp(math.fsum(weight * math.log(p) for p in precisions if p > 0))


def _brevity_penalty(ref_len: int, hyp_len: int) -> float:
    if hyp_len > ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1 - ref_len / hyp_len)


# ---------------------------------------------------------------- CER, structure

def _single_spaced(text: str) -> str:
    """``" ".join(text.split())``, skipping the split for text already in that form (the usual case)."""
    # isprintable() is False for every whitespace character but " "; all four checks run at C speed.
    if text.isprintable() and "  " not in text and not text.startswith(" ") and not text.endswith(" "):
        return text
    return " ".join(text.split())


def _spaced_length(texts: Sequence[str]) -> int | None:
    """Total length of the texts when every one is already single-spaced (no leading, trailing, doubled or
    non-space whitespace; one C-speed check of the whole corpus instead of one per text), else None."""
    joined = "\x1f".join(texts)  # a separator that no single-spaced text holds
    if ("  " in joined or " \x1f" in joined or "\x1f " in joined or joined.startswith(" ") or joined.endswith(" ")
            or not joined.replace("\x1f", "").isprintable()):
        return None
    return len(joined) - max(len(texts) - 1, 0)


def char_error_rate(gts: Sequence[str], preds: Sequence[str], threads: int = 1) -> float:
    """Corpus CER in percent: character edit distance / reference characters, tokens joined by one space."""
    total = _spaced_length(gts)
    if total is None:
        total = sum(map(len, map(_single_spaced, gts)))
    differ = [i for i, (g, p) in enumerate(zip(gts, preds)) if g != p]
    refs, hyps = [gts[i] for i in differ], [preds[i] for i in differ]
    if _spaced_length(refs) is None:
        refs = list(map(_single_spaced, refs))
    if _spaced_length(hyps) is None:
        hyps = list(map(_single_spaced, hyps))
    if total == 0:
        return 0.0 if not any(hyps) else 100.0
    return 100.0 * int(align.pair_distances(refs, hyps, threads).sum()) / total


def published_cer(gts: Sequence[str], d: np.ndarray) -> float:
    """The published file's "Character Error Rate": sum(token distance) / sum(len(gt string)), a fraction."""
    return float(d.sum()) / max(1, sum(map(len, gts)))


def structure_matches(ref: Encoded, hyp: Encoded, vocab: dict[str, int]) -> np.ndarray:
    """Per pair: True when the structure skeletons are equal."""
    size = len(vocab)
    table = np.full(size + 1, size, dtype=np.int64)  # every symbol -> one placeholder id
    for tok, code in vocab.items():
        if tok in STRUCTURE_TOKENS:
            table[code] = code
    same_len = ref.lengths == hyp.lengths
    idx = np.flatnonzero(same_len)
    if len(idx) == 0:
        return same_len
    # Compare equal-length pairs position by position on the flat arrays.
    lens = ref.lengths[idx]
    pair = np.repeat(np.arange(len(idx)), lens)
    within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    r = table[ref.codes[ref.offsets[idx][pair] + within]]
    h = table[hyp.codes[hyp.offsets[idx][pair] + within]]
    mismatched = np.bincount(pair[r != h], minlength=len(idx))
    out = np.zeros(len(ref.lengths), dtype=bool)
    out[idx] = mismatched == 0
    return out


# ---------------------------------------------------------------- the report

def exprate_at(d: np.ndarray, threshold: int) -> float:
    """Percent of samples with token distance <= threshold."""
    return 100.0 * float(np.mean(d <= threshold)) if len(d) else 0.0


@dataclass(frozen=True, slots=True)
class Scores:
    """The corpus metrics of :func:`score`, fields in ``RESULT_KEYS`` order: rates in percent, ``cer`` a fraction
    as published."""

    n: int
    exprate: float
    le1: float
    le2: float
    le3: float
    edit_score: float
    bleu4: float
    cer: float
    cer_char: float
    structure_rate: float

    def as_dict(self) -> dict:
        """``{key: value}`` in ``RESULT_KEYS`` order: a row of the report's tables."""
        return {key: getattr(self, key) for key in RESULT_KEYS}


def score(gts: Sequence[str], preds: Sequence[str], threads: int | None = None) -> Scores:
    """All corpus metrics (keys RESULT_KEYS; rates in percent, ``cer`` a fraction as published) for aligned lists
    of captions and predictions. A prediction that is its caption character for character (most of them, for a
    good model) needs only its token count; only the others are encoded and compared. Large corpora use
    ``threads`` threads (default ``workers.threads()``: OMP_NUM_THREADS, else the cores)."""
    from ..core.workers import threads as thread_policy

    threads = thread_policy(threads)
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} references but {len(preds)} predictions")
    n = len(gts)
    same = np.fromiter(map(str.__eq__, gts, preds), dtype=bool, count=n)
    differ = np.flatnonzero(~same)
    ref, hyp, vocab = encode_pairs([gts[i] for i in differ], [preds[i] for i in differ])
    ref_len = np.zeros(n, dtype=np.int64)
    ref_len[same] = [len(gts[i].split()) for i in np.flatnonzero(same)]
    ref_len[differ] = ref.lengths
    hyp_len = ref_len.copy()
    hyp_len[differ] = hyp.lengths
    d = np.zeros(n, dtype=np.int32)
    d[differ] = distances(ref, hyp, threads)
    longest = np.maximum(ref_len, hyp_len)
    scores = np.where(longest == 0, 100.0, 100.0 * (1.0 - d / np.maximum(longest, 1)))
    out = {"n": n}
    for k, key in zip(EXPRATE_DISTANCES, ("exprate", "le1", "le2", "le3")):
        out[key] = exprate_at(d, k)
    out["edit_score"] = float(scores.mean()) if n else 0.0
    matches = [_ngram_count(ref_len[same], k) + m
               for k, m in enumerate(_clipped_ngram_matches(ref, hyp, len(vocab)), start=1)]
    out["bleu4"] = 100.0 * _bleu(matches, hyp_len, int(ref_len.sum())) if n else 0.0
    out["cer"] = published_cer(gts, d)
    out["cer_char"] = char_error_rate(gts, preds, threads)
    structure = same.copy()
    structure[differ] = structure_matches(ref, hyp, vocab)
    out["structure_rate"] = 100.0 * float(structure.mean()) if n else 0.0
    return Scores(**out)


def sample_distances(gts: Sequence[str], preds: Sequence[str]) -> np.ndarray:
    """Token edit distance per sample."""
    ref, hyp, _ = encode_pairs(gts, preds)
    return distances(ref, hyp)


def exprate_by_length(gts: Sequence[str], d: np.ndarray, bins: Sequence[int] = (0, 10, 20, 30, 50, 10**9)):
    """ExpRate per ground-truth length bucket: list of (label, n, exprate)."""
    lengths = np.array([len(tokens(t)) for t in gts])
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        mask = (lengths > lo) & (lengths <= hi) if lo else (lengths <= hi)
        label = f"{lo + 1}-{hi}" if hi < 10**9 else f">{lo}"
        rows.append((label, int(mask.sum()), exprate_at(d[mask], 0) if mask.any() else float("nan")))
    return rows


def exprate_by_group(groups: Sequence[str], d: np.ndarray) -> dict[str, tuple[int, float]]:
    """ExpRate per group label (e.g. dataset): {group: (n, exprate)}."""
    labels = np.asarray(groups)
    return {g: (int((labels == g).sum()), exprate_at(d[labels == g], 0)) for g in dict.fromkeys(groups)}
