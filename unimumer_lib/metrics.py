"""Recognition metrics over whitespace-tokenised LaTeX, computed as the HMER literature (and Uni-MuMER) does.

Per sample: token Levenshtein distance d (``unimumer_lib.align.distance``, rapidfuzz). Corpus:

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
  (``unimumer_lib.latex.STRUCTURE_TOKENS``): "is the layout right, whatever the symbols".

All rates are percentages except ``cer`` (a fraction, as published). Tokenisation is ``str.split()`` as in the published evaluation, not
``latex.tokenize``, so an un-spaced prediction is scored as the published script scores it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import align
from .latex import STRUCTURE_TOKENS

THRESHOLDS = (0, 1, 2, 3)
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
    as one flat array of token ids ``codes`` with per-sequence ``offsets``/``lengths`` (for numpy)."""

    strings: list[str]
    codes: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray


def _encode(texts: Sequence[str], chars: _CharMap) -> Encoded:
    get = chars.__getitem__
    strings = ["".join(map(get, t.split())) for t in texts]
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    codes = np.frombuffer("".join(strings).encode("utf-32-le"), dtype="<u4").astype(np.int64)
    codes[codes >= _SURROGATES + _SURROGATE_SPAN] -= _SURROGATE_SPAN
    codes -= _FIRST_CHAR
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Encoded(strings, codes, offsets, lengths)


def encode_pairs(gts: Sequence[str], preds: Sequence[str]) -> tuple[Encoded, Encoded, dict[str, int]]:
    """Tokenise and encode references and hypotheses over one shared vocabulary {token: id}."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} references but {len(preds)} predictions")
    chars = _CharMap()
    ref, hyp = _encode(gts, chars), _encode(preds, chars)
    return ref, hyp, {tok: i for i, tok in enumerate(chars)}


def _pairwise(scorer, refs: list[str], hyps: list[str]) -> np.ndarray:
    return np.fromiter(map(scorer, refs, hyps), dtype=np.int64, count=len(refs))


def distances(ref: Encoded, hyp: Encoded) -> np.ndarray:
    """Token edit distance per pair."""
    return _pairwise(align.distance, ref.strings, hyp.strings)


def _select(enc: Encoded, keep: np.ndarray) -> Encoded:
    """The sequences where ``keep`` is True (strings left out: BLEU only needs the arrays)."""
    lengths = enc.lengths[keep]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Encoded([], enc.codes[np.repeat(keep, enc.lengths)], offsets, lengths)


# ---------------------------------------------------------------- BLEU

def _bits(count: int) -> int:
    return max(1, int(count).bit_length())


class _NGrams:
    """All n-grams of a set of sequences, built order by order: the (n)-gram starting at each position is the
    (n-1)-gram there shifted left by one token id and or-ed with the next token (slices, no gathers)."""

    def __init__(self, enc: Encoded, vocab_size: int):
        self.codes = enc.codes
        self.tok_bits = _bits(vocab_size)
        self.seq = np.repeat(np.arange(len(enc.lengths), dtype=np.int64), enc.lengths)
        # tokens left in the sequence from each position on (itself included)
        self.left = enc.offsets[1:][self.seq] - np.arange(len(enc.codes))
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


def corpus_bleu(ref: Encoded, hyp: Encoded, vocab_size: int, order: int = BLEU_ORDER) -> float:
    """Corpus BLEU (0-1) equal to ``nltk.translate.bleu_score.corpus_bleu`` with one reference per hypothesis,
    uniform weights and ``SmoothingFunction().method4``."""
    hyp_len = int(hyp.lengths.sum())
    ref_len = int(ref.lengths.sum())
    # An exact match contributes all its n-grams as matches: only the other pairs need counting.
    exact = np.fromiter(map(str.__eq__, ref.strings, hyp.strings), dtype=bool, count=len(ref.strings))
    ngrams = _NGrams(_concat(_select(ref, ~exact), _select(hyp, ~exact)), vocab_size)
    numerators, denominators = [], []
    for n in range(1, order + 1):
        hyp_ngrams = np.maximum(hyp.lengths - n + 1, 0)
        matches = int(hyp_ngrams[exact].sum()) + _clipped_matches(*ngrams.next_order(), int((~exact).sum()))
        numerators.append(matches)
        # NLTK's modified_precision divides by max(1, #hyp n-grams) per sentence.
        denominators.append(int(np.maximum(hyp_ngrams, 1).sum()))
    if numerators[0] == 0:
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


def char_error_rate(gts: Sequence[str], preds: Sequence[str]) -> float:
    """Corpus CER in percent: character edit distance / reference characters, tokens joined by one space."""
    refs, hyps = list(map(_single_spaced, gts)), list(map(_single_spaced, preds))
    total = sum(map(len, refs))
    if total == 0:
        return 0.0 if not any(hyps) else 100.0
    return 100.0 * int(_pairwise(align.distance, refs, hyps).sum()) / total


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


def score(gts: Sequence[str], preds: Sequence[str]) -> dict:
    """All corpus metrics (keys RESULT_KEYS; rates in percent, ``cer`` a fraction as published) for aligned lists
    of captions and predictions."""
    ref, hyp, vocab = encode_pairs(gts, preds)
    d = distances(ref, hyp)
    n = len(d)
    longest = np.maximum(ref.lengths, hyp.lengths)
    scores = np.where(longest == 0, 100.0, 100.0 * (1.0 - d / np.maximum(longest, 1)))
    out = {"n": n}
    for k, key in zip(THRESHOLDS, ("exprate", "le1", "le2", "le3")):
        out[key] = exprate_at(d, k)
    out["edit_score"] = float(scores.mean()) if n else 0.0
    out["bleu4"] = 100.0 * corpus_bleu(ref, hyp, len(vocab)) if n else 0.0
    out["cer"] = published_cer(gts, d)
    out["cer_char"] = char_error_rate(gts, preds)
    out["structure_rate"] = 100.0 * float(structure_matches(ref, hyp, vocab).mean()) if n else 0.0
    return out


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


# ---------------------------------------------------------------- answer extraction

TASKS = ("auto", "vanilla", "tree", "can")
_FENCE = re.compile(r"```[a-zA-Z]*\n?(.*?)```", re.S)
_LABEL = re.compile(r"^(final answer|answer|latex( format)?|result)\s*[:：]\s*", re.I)
# A Tree-CoT node line (``unimumer_lib.tree``): tab-indented, or ``symbol (relation)``.
_TREE_LINE = re.compile(r"^(\t|\S+ \([a-z_]+\)$)")


def extract_answer(text: str, task: str = "auto", normalize: bool = False) -> str:
    """The LaTeX answer in a model output.

    vanilla: the whole output. tree / can / auto: the last non-empty line (Tree-CoT and symbol-counting
    outputs end with the LaTeX). Code fences, ``$``/``\\[ \\]`` delimiters and an "Answer:" label are stripped.
    A Tree-CoT output whose last line is still a tree node line (no final LaTeX line) is
    turned back into LaTeX tokens with ``unimumer_lib.tree.tree_text_to_tokens``.
    ``normalize`` applies ``unimumer_lib.latex.normalize`` (off by default: published scores are exact).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if not isinstance(text, str):
        raise TypeError(f"model output must be a string, got {type(text).__name__}")
    fenced = _FENCE.findall(text)
    body = fenced[-1] if fenced and task == "vanilla" else _FENCE.sub(lambda m: m.group(1), text)
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        answer = ""
    elif task == "vanilla":
        answer = " ".join(lines)
    elif task in ("tree", "auto") and len(lines) > 1 and _TREE_LINE.match(lines[-1]):
        answer = _from_tree(body, fallback=lines[-1])
    else:
        answer = lines[-1]
    answer = _strip_delimiters(answer)
    if normalize:
        from .latex import normalize as normalize_latex
        answer = normalize_latex(answer)
    return answer


def _from_tree(text: str, fallback: str) -> str:
    try:
        from .tree import tree_text_to_tokens
        return " ".join(tree_text_to_tokens(text))
    except (ImportError, ValueError):
        return fallback


def _strip_delimiters(answer: str) -> str:
    answer = _LABEL.sub("", answer.strip())
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            answer = answer[len(left):len(answer) - len(right)]
            break
    return " ".join(answer.split())
