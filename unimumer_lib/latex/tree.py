"""Tree-CoT: LaTeX token sequence <-> syntax tree <-> the published Tree-CoT text; symbol-count text.

The tree is kept in depth-first order as lines ``(depth, symbol, relation)``; that order is the token order
of the caption, so one left-to-right pass builds it (linear time) and the serialisation is a join.
Relations: ``sup``/``sub`` (scripts), ``above``/``below`` (the two arguments of ``\\frac``-like commands, the
limits of the big operators in ``latex.LIMIT_OPERATORS``, the argument of accents and of ``\\sqrt`` whose
``[n]`` index is ``below``), ``begin_<env>``/``end_<env>``, ``nextline`` (after ``\\\\``) and ``right`` (the
next symbol at the same level). Argument braces, ``^``, ``_``, ``[``/``]`` of ``\\sqrt`` and ``\\\\`` are
consumed, not nodes; the environment name token ``{cases}`` is carried by the relation label.

As in the official Uni-MuMER preprocessing (``preprocess/unimumer_tree/latex2tree.py``, ``latex_cate_lib.py``):
``\\limits`` is an ordinary node and the scripts after it are its ``sub``/``sup``; only a script directly after
a ``LIMIT_OPERATORS`` member is ``below``/``above`` (``\\bigcup _ { i }`` is ``sub``); a brace group with no
command or script before it is kept as ordinary ``{`` / ``}`` nodes; the category lists live in ``latex``.

Where we deliberately keep our behaviour over the official code (it is wrong there):

* A superscript written before a subscript (``A ^ { - 1 } _ { x }``) gives ``sup`` then ``sub`` children of
  ``A`` in that order; the official code emits stray ``_ { }`` nodes.
* A script after a ``\\sqrt {…}`` or ``\\frac {…} {…}`` group (``\\sqrt { 2 } ^ { a }``) hangs as ``sup``/``sub``
  under the command, after its arguments.
* Unbalanced braces (``a }``, ``a ^ { b``) raise TreeError with the reason; the official code silently
  duplicates tokens.  Batch jobs count such captions as rejected with that reason.
* ``\\choose`` is an ordinary node (``{ n \\choose k }`` -> ``{``, ``n``, ``\\choose``, ``k``, ``}``); the
  official code crashes.
* An unbraced single-token argument is read as TeX reads it: ``\\sqrt 2`` is ``\\sqrt { 2 }`` (``\\sqrt``
  with the child ``2 (above)``), ``\\frac 1 c``, ``\\hat a`` and ``x ^ 2`` likewise; the official code crashes
  (and we used to put the ``2`` beside the root).  The inverse writes the braced form, so such captions
  round-trip to their braced, TeX-equivalent caption; an argument that is neither (``x ^ \\frac``, or
  nothing) raises TreeError.
"""

from __future__ import annotations

import re
from collections import Counter

from .tokens import ACCENTS, ENV_TOKENS, FRAC_LIKE, GROUP_TOKENS, LIMIT_OPERATORS, RADICALS, ROW_BREAK

OPEN, CLOSE = GROUP_TOKENS
BEGIN, END = ENV_TOKENS
LIMIT_BASES = frozenset(LIMIT_OPERATORS)
INDEX_OPEN, INDEX_CLOSE = "[", "]"
RIGHT, NEXTLINE, ABOVE, BELOW, SUP, SUB = "right", "nextline", "above", "below", "sup", "sub"
COUNT_EXCLUDED = GROUP_TOKENS  # symbol counting skips braces

# token -> parser action; every other token is an ordinary symbol node
_ACTIONS = {"^": "script", "_": "script", OPEN: "open", CLOSE: "close", BEGIN: "begin", END: "end",
            ROW_BREAK: "row", INDEX_CLOSE: "bracket", **{t: "frac" for t in FRAC_LIKE},
            **{t: "accent" for t in ACCENTS}, **{t: "sqrt" for t in RADICALS}}


class TreeError(ValueError):
    """A token sequence (or Tree-CoT text) the tree cannot represent faithfully; the message says why."""


def _arg(toks, i, level, rel, out):
    """Parse the argument at ``toks[i]``: a ``{ ... }`` group or, as in TeX, one ordinary token.

    Returns the index after it."""
    t = toks[i] if i < len(toks) else None
    if t == OPEN:
        i = _seq(toks, i + 1, level, rel, CLOSE, out)
        if i >= len(toks):
            raise TreeError("unclosed '{'")
        return i + 1
    if t is None or t in _ACTIONS:
        raise TreeError(f"token {i}: expected '{{' or a single symbol for the {rel} argument, got "
                        f"{'end of formula' if t is None else repr(t)}")
    out.append((level, t, rel))
    return i + 1


def _radical(toks, i, level, out):
    """The optional ``[ index ]`` (below) and the argument (above) of ``\\sqrt``; returns the index after them."""
    if i < len(toks) and toks[i] == INDEX_OPEN:
        i = _seq(toks, i + 1, level, BELOW, INDEX_CLOSE, out)
        if i >= len(toks):
            raise TreeError("unclosed '[' of \\sqrt")
        i += 1
    return _arg(toks, i, level, ABOVE, out)


def _seq(toks, i, level, rel, stop, out):
    """Parse symbols at ``level`` until ``stop`` (not consumed); the first gets ``rel``, the rest ``right``."""
    n, last, first, braces, append, actions = len(toks), None, len(out), 0, out.append, _ACTIONS
    while i < n:
        t = toks[i]
        action = actions.get(t)
        if action is None:  # the common case first: an ordinary symbol (stop tokens all have an action)
            append((level, t, rel))
            last, rel = t, RIGHT
            i += 1
            continue
        if t == stop and not braces:
            break
        if action == "script":
            if last is None:
                raise TreeError(f"token {i}: script {t!r} has no base symbol")
            if last in LIMIT_BASES:
                r = ABOVE if t == "^" else BELOW
            else:
                r = SUP if t == "^" else SUB
            i = _arg(toks, i + 1, level + 1, r, out)
            continue
        if action == "frac":
            append((level, t, rel))
            i = _arg(toks, _arg(toks, i + 1, level + 1, ABOVE, out), level + 1, BELOW, out)
        elif action == "sqrt":
            append((level, t, rel))
            i = _radical(toks, i + 1, level + 1, out)
        elif action == "accent":
            append((level, t, rel))
            i = _arg(toks, i + 1, level + 1, ABOVE, out)
        elif action == "begin":
            i = _environment(toks, i, level, rel, out)
        elif action == "row":
            if last is None:
                raise TreeError(f"token {i}: row break {t!r} has no symbol before it")
            if braces:
                raise TreeError(f"token {i}: row break {t!r} inside a brace group")
            # the next row hangs below the last symbol of this row, so rows nest one level deeper each
            i = _seq(toks, i + 1, level + 1, NEXTLINE, stop, out)
            break
        else:
            if action == "open":  # a group that is no argument: its braces are ordinary nodes
                braces += 1
            elif action == "close" and braces:
                braces -= 1
            elif action != "bracket":  # a ']' closing no \\sqrt index is ordinary; '}', '\\end' close nothing here
                raise TreeError(f"token {i}: unbalanced {t!r}")
            append((level, t, rel))
            i += 1
        last, rel = t, RIGHT
    if braces:
        raise TreeError("unclosed '{'")
    if len(out) == first:
        raise TreeError(f"token {i}: empty {rel} group (nothing to hang the relation on)")
    return i


def _environment(toks, i, level, rel, out):
    """``\\begin {env} ... \\end {env}`` at ``toks[i]``; returns the index after the closing name."""
    name = toks[i + 1] if i + 1 < len(toks) else ""
    if len(name) < 3 or name[0] != OPEN or name[-1] != CLOSE:
        raise TreeError(f"token {i}: \\begin must be followed by one environment token like '{{cases}}', "
                        f"got {name!r}")
    env = name[1:-1]
    out.append((level, BEGIN, rel))
    j = _seq(toks, i + 2, level + 1, "begin_" + env, END, out)
    if j + 1 >= len(toks) or toks[j + 1] != name:
        raise TreeError(f"token {i}: \\begin {name} is not closed by \\end {name}")
    out.append((level + 1, END, "end_" + env))
    return j + 2


def parse(tokens) -> list[tuple[int, str, str | None]]:
    """Tokens -> tree as depth-first lines ``(depth, symbol, relation)``; the root's relation is None.

    Raises TreeError for sequences the tree cannot carry back (unbalanced or empty groups, missing
    arguments, scripts without a base, unclosed environments).
    """
    toks = tokens.split() if isinstance(tokens, str) else list(tokens)
    if not toks:
        raise TreeError("empty formula")
    out: list = []
    i = _seq(toks, 0, 0, None, None, out)
    if i != len(toks):  # pragma: no cover - _seq only stops early at its stop token, None here
        raise TreeError(f"token {i}: unexpected {toks[i]!r}")
    return out


def format_lines(lines) -> str:
    """Tree lines -> Tree-CoT text: one node per line, ``symbol (relation)``, a tab per level."""
    tabs = _TABS if len(lines) < len(_TABS) else ["\t" * d for d in range(len(lines) + 1)]
    return "\n".join([tabs[d] + s if r is None else f"{tabs[d]}{s} ({r})" for d, s, r in lines])


def tree_text(tokens) -> str:
    """The published Tree-CoT serialisation of a token sequence (list or space-separated string)."""
    return format_lines(parse(tokens))


def depth(tokens) -> int:
    """Maximum nesting depth of the tree (0 for a flat sequence of symbols)."""
    return max(d for d, _, _ in parse(tokens))


def symbol_counts(tokens) -> dict[str, int]:
    """Occurrences of each distinct token except braces, in order of first appearance (list or string)."""
    counts: dict[str, int] = {}
    get = counts.get
    # a plain dict and a bound get beat Counter() on captions of ~15 tokens (its set-up costs more than the count)
    for token in tokens.split() if isinstance(tokens, str) else tokens:
        counts[token] = get(token, 0) + 1
    for t in COUNT_EXCLUDED:
        counts.pop(t, None)
    return counts


def count_text(tokens) -> str:
    """Symbol counting target: ``sym: n`` for each distinct token except braces, in order of first appearance."""
    return ", ".join([f"{t}: {c}" for t, c in symbol_counts(tokens).items()])


_TABS = ["\t" * d for d in range(64)]  # depth < number of lines, so 64 covers captions up to 64 nodes
_POSITION = re.compile(r"^token \d+: ")


def survey(captions) -> dict:
    """Tree-CoT over captions: counts ``captions``, ``accepted``, ``round_trip`` (accepted captions whose tree
    reads back to exactly their tokens) and ``rejected`` {reason without the token position: count}."""
    rejected: Counter = Counter()
    n = accepted = round_trip = 0
    for caption in captions:
        n += 1
        try:
            text = tree_text(caption)
        except TreeError as err:
            rejected[_POSITION.sub("", str(err))] += 1
            continue
        accepted += 1
        try:
            round_trip += tree_text_to_tokens(text) == caption.split()
        except TreeError:  # pragma: no cover - a bug in the inverse: the caption counts as not round-tripping
            pass
    return {"captions": n, "accepted": accepted, "round_trip": round_trip, "rejected": dict(rejected)}


def parse_tree_text(text: str) -> list[tuple[int, str, str | None]]:
    """Tree-CoT text -> lines ``(depth, symbol, relation)``; raises TreeError on a malformed line."""
    lines = []
    for k, line in enumerate(text.split("\n")):
        body = line.lstrip("\t")
        d = len(line) - len(body)
        sym, rel = body, None
        if body.endswith(")") and " (" in body:
            sym, rel = body[:-1].rsplit(" (", 1)
        if not sym or " " in sym or (rel is None) != (k == 0):
            raise TreeError(f"line {k + 1}: not a Tree-CoT node line: {line!r}")
        lines.append((d, sym, rel))
    return lines


def _opener(parent: str, rel: str, k: int) -> tuple[list[str], list[str]]:
    """Tokens that open and close the child group ``rel`` of ``parent`` (inverse of the parser)."""
    if rel == SUP or rel == SUB:
        return ["^" if rel == SUP else "_", OPEN], [CLOSE]
    if rel == NEXTLINE:
        return [ROW_BREAK], []
    if parent in LIMIT_BASES and rel in (ABOVE, BELOW):
        return ["^" if rel == ABOVE else "_", OPEN], [CLOSE]
    if parent in RADICALS and rel == BELOW:
        return [INDEX_OPEN], [INDEX_CLOSE]
    if rel == ABOVE or (rel == BELOW and parent in FRAC_LIKE):
        if parent in FRAC_LIKE or parent in ACCENTS or parent in RADICALS:
            return [OPEN], [CLOSE]
    if parent == BEGIN and rel.startswith("begin_"):
        return [OPEN + rel[6:] + CLOSE], []
    if parent == BEGIN and rel.startswith("end_"):
        return [], []
    raise TreeError(f"line {k + 1}: relation {rel!r} is not possible under {parent!r}")


def lines_to_tokens(lines) -> list[str]:
    """Inverse of :func:`parse`: tree lines -> the token sequence."""
    out: list[str] = []
    # open groups, innermost last: [depth, closing tokens, last symbol at that depth]
    stack: list[list] = []
    for k, (d, sym, rel) in enumerate(lines):
        while stack and stack[-1][0] > d:
            out += stack.pop()[1]
        if rel is None or rel == RIGHT:
            if (rel is None) != (k == 0) or not stack and k > 0 or stack and stack[-1][0] != d:
                raise TreeError(f"line {k + 1}: {sym!r} ({rel}) has no symbol before it at depth {d}")
            if k == 0:
                if d != 0:
                    raise TreeError("line 1: the root must not be indented")
                stack.append([0, [], None])
        else:
            if stack and stack[-1][0] == d:
                out += stack.pop()[1]
            if not stack or stack[-1][0] != d - 1:
                raise TreeError(f"line {k + 1}: {sym!r} ({rel}) is not one level below a symbol")
            opening, closing = _opener(stack[-1][2], rel, k)
            out += opening
            stack.append([d, closing, None])
        out.append(sym)
        if rel is not None and rel.startswith("end_"):
            out.append(OPEN + rel[4:] + CLOSE)
        stack[-1][2] = sym
    while stack:
        out += stack.pop()[1]
    return out


def tree_text_to_tokens(text: str) -> list[str]:
    """Inverse of :func:`tree_text`: Tree-CoT text (without the trailing caption line) -> tokens."""
    return lines_to_tokens(parse_tree_text(text))
