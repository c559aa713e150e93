"""The published Uni-MuMER normalisation of CROHME 2023 / MathWriting ground truths, as explicit rules.

The authors report these benchmarks twice: on the original captions and on a "normalised" version in which
the LaTeX style is standardised and unusable items are removed (published files: CROHME 2023 2,300 -> 1,652,
MathWriting 7,644 -> 7,319; these rules keep 1,651 and 7,318 of the raw files, see the README).
``normalize_caption`` reproduces that convention; it is not ``latex.normalize`` (the
CROHME-literature one), which inserts ``\\limits``, merges many more synonyms and repairs broken braces.

An item is **removed** (``Removed`` is raised, its reason says which rule) when its caption

1. has unbalanced ``{ }`` braces;
2. has an unmatched or crossed delimiter: ``( )``, ``[ ]`` and ``\\{ \\}`` must pair up inside the same brace
   group, so a half-open interval ``[ 1 , 2 )`` or ``( x _ { n ) }`` is removed;
3. uses a symbol outside the published vocabulary (``OUT_OF_VOCABULARY``);
4. has a command without its arguments (``0 \\frac``, ``x ^``) or a delimiter as a fraction/radical argument
   (``\\frac | I |``).

A kept caption is **rewritten**:

- ``\\dots`` -> ``\\ldots``, ``\\le`` -> ``\\leq``, ``\\ge`` -> ``\\geq`` (``PUBLISHED_SYNONYMS``; ``\\ne``, ``\\ast``,
  ``\\to`` stay as written);
- ``\\left`` / ``\\right`` dropped, their delimiter kept (``\\left .`` draws nothing and goes entirely);
- braces that are no argument dropped: doubled braces ``\\bar { { y } }`` -> ``\\bar { y }``, a braced base
  ``{ v _ { e } } ^ { 2 }`` -> ``v _ { e } ^ { 2 }``, braced matrix cells ``{ 2 } & { 4 }`` -> ``2 & 4``;
- a group right after a big operator is its body and stays braced: ``\\int { d ^ { 4 p } }``;
- a single unbraced argument braced: ``\\sqrt 2`` -> ``\\sqrt { 2 }``, ``\\frac 1 { 2 }`` -> ``\\frac { 1 } { 2 }``,
  ``x ^ 2`` -> ``x ^ { 2 }``;
- a superscript written before the subscript moved after it: ``x ^ { a } _ { b }`` -> ``x _ { b } ^ { a }``;
- no ``\\limits`` inserted;
- a matrix directly inside ``( )``, ``[ ]`` or ``\\{ \\}`` becomes ``pmatrix``, ``bmatrix``, ``Bmatrix``
  (``| matrix |`` and ``array`` keep their delimiters), and the row break before ``\\end`` is dropped;
- the environment name is one token, ``\\begin {matrix}`` (as ``latex.tokenize`` splits it).

The same rewrite applies to predictions (``normalize_prediction``), which are never removed: a prediction the
rules cannot parse only gets the token-level rewrites.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from .tokens import (ACCENTS, BIG_OPERATORS, DELIMITER_SIZES, ENV_TOKENS, FRAC_LIKE, RADICALS, ROW_BREAK,
                    braces_balanced, normalize as latex_normalize, tokenize)
from ..formats.predictions import Prediction, predictions_text, read_predictions
from ..core.files import atomic_write_group, remove_temp_files_of
from ..formats.rejects import Reject, rejects_text

STYLES = ("crohme", "unimumer")  # the --normalize choices: latex.normalize and this module
PUBLISHED_SYNONYMS = {"\\dots": "\\ldots", "\\le": "\\leq", "\\ge": "\\geq"}
NULL_DELIMITER = "."
# Variant Greek letters and big n-ary set/logic operators: the published vocabulary has \epsilon, \phi,
# \cap, \cup, \oplus but not these, and removes every item that uses one.
OUT_OF_VOCABULARY = frozenset({
    "\\varepsilon", "\\varphi", "\\vartheta", "\\varrho", "\\varsigma", "\\varpi", "\\varkappa",
    "\\bigcup", "\\bigcap", "\\bigoplus", "\\bigotimes", "\\bigodot", "\\biguplus", "\\bigsqcup",
    "\\bigwedge", "\\bigvee",
})
PAIRS = {"(": ")", "[": "]", "\\{": "\\}"}
CLOSERS = {v: k for k, v in PAIRS.items()}
MATRIX = "{matrix}"
DELIMITED_MATRIX = {("(", ")"): "{pmatrix}", ("[", "]"): "{bmatrix}", ("\\{", "\\}"): "{Bmatrix}"}
ARRAY = "{array}"  # its column spec ``{ c c }`` is an argument, kept braced
SCRIPTS = ("_", "^")
REMOVED_SUFFIX = ".removed.tsv"


# The last rule is ours, not the protocol's: a caption nested beyond Python's recursion limit (~300 groups, no
# real caption comes near) is listed as removed rather than stopping a whole file.
BRACES, DELIMITER, OOV, ARGUMENT, DEPTH = RULES = ("unbalanced braces", "unmatched delimiter", "out of vocabulary",
                                                   "missing argument", "nested too deeply to parse")


class Removed(ValueError):
    """The published protocol removes this item: ``rule`` (one of RULES) and the detail in ``reason``."""

    def __init__(self, rule: str, detail: str):
        self.rule = rule
        self.reason = f"{rule}: {detail}"
        super().__init__(self.reason)


def _respell(tokens: list[str]) -> list[str]:
    """Synonyms unified and ``\\left``/``\\right`` dropped (with the null delimiter after them)."""
    out: list[str] = []
    for t in tokens:
        if t == NULL_DELIMITER and out and out[-1] in DELIMITER_SIZES:
            out.pop()
        elif out and out[-1] in DELIMITER_SIZES:
            out[-1] = PUBLISHED_SYNONYMS.get(t, t)
        else:
            out.append(PUBLISHED_SYNONYMS.get(t, t))
    if out and out[-1] in DELIMITER_SIZES:
        raise Removed(ARGUMENT, f"{out[-1]} without a delimiter")
    return out


def check_published(tokens: list[str]) -> None:
    """Raise Removed if the published protocol drops a caption with these (respelled) tokens."""
    oov = sorted({t for t in tokens if t in OUT_OF_VOCABULARY})
    if oov:
        raise Removed(OOV, " ".join(oov))
    stack: list[str] = []
    for t in tokens:
        if t == "{" or t in PAIRS:
            stack.append(t)
        elif t == "}" or t in CLOSERS:
            if not stack or stack[-1] != ("{" if t == "}" else CLOSERS[t]):
                raise Removed(*_mismatch(stack[-1] if stack else None, t))
            stack.pop()
    if stack:
        raise Removed(*_mismatch(stack[-1], None))


def _mismatch(opener: str | None, closer: str | None) -> tuple[str, str]:
    """(rule, detail) for an opener closed by the wrong token, a closer without opener, or an unclosed opener."""
    rule = BRACES if opener in ("{", None) and closer in ("}", None) else DELIMITER
    if opener is None:
        return rule, f"'{closer}' closes nothing"
    if closer is None:
        return rule, f"'{opener}' never closed"
    return rule, f"'{opener}' closed by '{closer}'"


@dataclass
class _Parser:
    """Recursive descent over respelled tokens, emitting the published layout (see the module docstring)."""

    tokens: list[str]
    i: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        self.i += 1
        return self.tokens[self.i - 1]

    def sequence(self, closer: str | None = None) -> list[str]:
        """Items up to ``closer`` (consumed) or the end."""
        out: list[str] = []
        while self.peek() is not None and self.peek() != closer:
            self.item(out)
        if closer is not None:
            if self.peek() is None:
                raise Removed(BRACES, "'{' never closed")
            self.take()
        return out

    def argument(self, owner: str) -> list[str]:
        """The braced or single-token argument of ``owner``, without its braces."""
        t = self.peek()
        if t is None or t == "}" or t in SCRIPTS or t == "&" or t == ROW_BREAK:
            raise Removed(ARGUMENT, f"{owner} without its argument")
        if t == "{":
            self.take()
            return self.sequence("}")
        if t in PAIRS or t in CLOSERS or t == "|":
            raise Removed(ARGUMENT, f"{owner} with the delimiter '{t}' as its argument")
        out: list[str] = []
        self.item(out)
        return out

    def item(self, out: list[str]) -> None:
        t = self.take()
        if t == "{" and out and out[-1] in BIG_OPERATORS:
            out += ["{", *self.sequence("}"), "}"]  # the operator's braced body stays braced
        elif t == "{":
            out += self.sequence("}")  # a group in no argument position: its braces go
        elif t == "}":
            raise Removed(BRACES, "'}' closes nothing")
        elif t in SCRIPTS:
            self.scripts(out, t)
        elif t in FRAC_LIKE:
            out.append(t)
            for _ in range(2):
                out += ["{", *self.argument(t), "}"]
        elif t in RADICALS:
            out.append(t)
            if self.peek() == "[":
                out += self.bracketed()
            out += ["{", *self.argument(t), "}"]
        elif t in ACCENTS:
            out += [t, "{", *self.argument(t), "}"]
        elif t in ENV_TOKENS and (self.peek() or "").startswith("{") and len(self.peek()) > 1:
            name = self.take()
            out += [t, name]
            if t == "\\begin" and name == ARRAY and self.peek() == "{":
                self.take()
                out += ["{", *self.sequence("}"), "}"]
        else:
            out.append(t)

    def bracketed(self) -> list[str]:
        """A radical's ``[ index ]``, which may itself hold brackets (``[ [ o b j e c t ] ]``)."""
        out = [self.take()]
        depth = 1
        while depth:
            if self.peek() is None:
                raise Removed(DELIMITER, "'[' never closed")
            depth += {"[": 1, "]": -1}.get(self.peek(), 0)
            if depth:
                self.item(out)
            else:
                out.append(self.take())
        return out

    def scripts(self, out: list[str], first: str) -> None:
        """``_ a ^ b`` or ``^ b _ a`` after one base -> ``_ { a } ^ { b }``."""
        found: dict[str, list[str]] = {first: self.argument(first)}
        other = "^" if first == "_" else "_"
        if self.peek() == other:
            self.take()
            found[other] = self.argument(other)
        for s in SCRIPTS:
            if s in found:
                out += [s, "{", *found[s], "}"]


def _fold_matrices(tokens: list[str]) -> list[str]:
    """``( \\begin {matrix} … \\end {matrix} )`` -> ``\\begin {pmatrix} … \\end {pmatrix}`` (and [ ], \\{ \\});
    the row break right before ``\\end`` of any environment dropped."""
    out = [t for i, t in enumerate(tokens)
           if not (t == ROW_BREAK and i + 1 < len(tokens) and tokens[i + 1] == "\\end")]
    i = 0
    while i + 2 < len(out):
        if out[i] in PAIRS and out[i + 1] == "\\begin" and out[i + 2] == MATRIX:
            end = _matching_end(out, i + 1)
            if end is not None and end + 2 < len(out) and out[end + 2] == PAIRS[out[i]]:
                name = DELIMITED_MATRIX[(out[i], out[end + 2])]
                out[i:end + 3] = ["\\begin", name, *out[i + 3:end], "\\end", name]
        i += 1
    return out


def _matching_end(tokens: list[str], begin: int) -> int | None:
    """Index of the ``\\end`` that closes the ``\\begin`` at ``begin``."""
    depth = 0
    for j in range(begin, len(tokens)):
        if tokens[j] == "\\begin":
            depth += 1
        elif tokens[j] == "\\end":
            depth -= 1
            if depth == 0:
                return j
    return None


def published_tokens(tokens: list[str]) -> list[str]:
    """Respelled, checked and rewritten tokens; raises Removed (with the rule) for an item the protocol drops."""
    tokens = _respell(tokens)
    check_published(tokens)
    return _rewrite(tokens)


def _rewrite(tokens: list[str]) -> list[str]:
    try:
        return _fold_matrices(_Parser(tokens).sequence())
    except RecursionError:
        raise Removed(DEPTH, f"{tokens.count('{')} groups") from None


def normalize_caption(caption: str) -> str:
    """A ground truth in the published normalised form; raises Removed if the protocol removes it."""
    return " ".join(published_tokens(tokenize(caption)))


def normalize_prediction(text: str) -> str:
    """A prediction in the published form; one the rules cannot parse gets only the token-level rewrites."""
    tokens = tokenize(text)
    try:
        return " ".join(_rewrite(_respell(tokens)))
    except Removed:
        return " ".join(PUBLISHED_SYNONYMS.get(t, t) for t in tokens)


# ---- prediction files and the published sample ----------------------------------------------------

Dropped = list[tuple[Prediction, Removed]]


def normalize_texts(texts: list[str]) -> tuple[list[str], int]:
    """``latex.normalize`` on each text whose braces balance; the others stay as they are (normalising them
    would invent closing braces). Returns the texts and how many were left unbalanced."""
    out = [latex_normalize(t) if braces_balanced(t) else t for t in texts]
    return out, sum(not braces_balanced(t) for t in texts)


def check_style(style: str) -> None:
    """Refuse a ``style`` that is not one of ``STYLES``."""
    if style not in STYLES:
        raise ValueError(f"unknown normalisation style {style!r}; expected one of {', '.join(STYLES)}")


def normalize_predictions(preds: list[Prediction], style: str) -> tuple[list[Prediction], Dropped]:
    """(kept, removed) after normalising ``gt`` and ``pred`` in ``style`` (one of STYLES); ``crohme``
    (``normalize_texts``: texts with unbalanced braces stay as they are) removes nothing; ``unimumer``
    removes the items whose ground truth the published protocol removes."""
    check_style(style)
    if style == "crohme":
        gts, _ = normalize_texts([p.gt for p in preds])
        hyps, _ = normalize_texts([p.pred for p in preds])
        return [replace(p, gt=g, pred=h) for p, g, h in zip(preds, gts, hyps)], []
    kept, removed = [], []
    for p in preds:
        try:
            kept.append(replace(p, gt=normalize_caption(p.gt), pred=normalize_prediction(p.pred)))
        except Removed as err:
            removed.append((p, err))
    return kept, removed


def removal_counts(removed: Dropped) -> dict[str, int]:
    """{rule: items removed by it}, in RULES order."""
    counts = Counter(err.rule for _, err in removed)
    return {rule: counts[rule] for rule in RULES if counts[rule]}


def removed_path(out: Path) -> Path:
    """Where ``normalize_file`` lists the removed items: ``OUT.removed.tsv`` beside ``OUT``."""
    return out.with_name(out.stem + REMOVED_SUFFIX)


def normalize_file(path: Path, out: Path, style: str = "unimumer") -> dict:
    """Normalise a prediction file into ``out`` (same format); the removed items go to ``removed_path(out)``
    as (img_id, reason) rows. Returns counts: read = kept + removed, and removed per rule."""
    preds = read_predictions(path)
    kept, removed = normalize_predictions(preds, style)
    remove_temp_files_of(out, removed_path(out))  # what a killed earlier run left half-written
    atomic_write_group({out: predictions_text(out, kept),  # one unit: never a new file beside an old list
                        removed_path(out): rejects_text(Reject(str(path), p.img_id, err.reason)
                                                        for p, err in removed)})
    return {"read": len(preds), "kept": len(kept), "removed": len(removed), "rules": removal_counts(removed),
            "removed_file": str(removed_path(out))}


@dataclass
class Agreement:
    """Our rules against published (raw, normalised-or-None) pairs: items agreeing on the kept/removed decision,
    items agreeing on the outcome (both removed, or both kept with the same caption), the others, and how many
    items our rules removed, per rule."""

    n: int
    decision: int
    caption: int
    disagreements: list[dict]
    removed: dict[str, int]

    def rate(self, what: str) -> float:
        return 100.0 * getattr(self, what) / self.n if self.n else 0.0


def compare_with_published(items: list[dict]) -> Agreement:
    """Apply ``normalize_caption`` to each ``{"img_id", "raw", "normalized"}`` item (the published sample)."""
    decision = caption = 0
    disagreements = []
    rules: Counter = Counter()
    for item in items:
        try:
            ours, why = normalize_caption(item["raw"]), None
        except Removed as err:
            ours, why = None, err.reason
            rules[err.rule] += 1
        published = item["normalized"]
        decision += (ours is None) == (published is None)
        caption += ours == published
        if ours != published:
            disagreements.append({**item, "ours": ours, "our_reason": why})
    return Agreement(len(items), decision, caption, disagreements, {r: rules[r] for r in RULES if rules[r]})
