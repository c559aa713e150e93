"""Tree-CoT: LaTeX token sequence <-> syntax tree <-> the published Tree-CoT text; symbol-count text.

The tree is kept in depth-first order as lines ``(depth, symbol, relation)``; that order is the token order
of the caption, so one left-to-right pass builds it (linear time) and the serialisation is a join.
Relations: ``sup``/``sub`` (scripts of ordinary symbols), ``above``/``below`` (the two arguments of
``\\frac``-like commands, the limits of big operators and of ``\\limits``, the argument of accents and of
``\\sqrt`` whose ``[n]`` index is ``below``), ``begin_<env>``/``end_<env>``, ``nextline`` (after ``\\\\``) and
``right`` (the next symbol at the same level). Braces, ``^``, ``_``, ``[``/``]`` of ``\\sqrt`` and ``\\\\``
are consumed, not nodes; the environment name token ``{cases}`` is carried by the relation label.
"""

from __future__ import annotations

from collections import Counter

from .latex import ACCENTS, BIG_OPERATORS, ENV_TOKENS, FRAC_LIKE, GROUP_TOKENS, LIMITS, RADICALS, ROW_BREAK

OPEN, CLOSE = GROUP_TOKENS
BEGIN, END = ENV_TOKENS
LIMIT_BASES = frozenset(BIG_OPERATORS + (LIMITS,))
INDEX_OPEN, INDEX_CLOSE = "[", "]"
RIGHT, NEXTLINE, ABOVE, BELOW, SUP, SUB = "right", "nextline", "above", "below", "sup", "sub"
COUNT_EXCLUDED = frozenset(GROUP_TOKENS)

# token -> parser action; every other token is an ordinary symbol node
_ACTIONS = {"^": "script", "_": "script", OPEN: "open", CLOSE: "close", BEGIN: "begin", END: "end",
            ROW_BREAK: "row", **{t: "frac" for t in FRAC_LIKE}, **{t: "accent" for t in ACCENTS},
            **{t: "sqrt" for t in RADICALS}}


class TreeError(ValueError):
    """A token sequence (or Tree-CoT text) the tree cannot represent faithfully; the message says why."""


def _group(toks, i, level, rel, out):
    """Parse ``{ ... }`` at ``toks[i]`` as a child group; returns the index after ``}``."""
    if i >= len(toks) or toks[i] != OPEN:
        raise TreeError(f"token {i}: expected '{{' to open the {rel} argument, got "
                        f"{toks[i] if i < len(toks) else 'end of formula'!r}")
    i = _seq(toks, i + 1, level, rel, CLOSE, out)
    if i >= len(toks):
        raise TreeError("unclosed '{'")
    return i + 1


def _seq(toks, i, level, rel, stop, out):
    """Parse symbols at ``level`` until ``stop`` (not consumed); the first gets ``rel``, the rest ``right``."""
    n, last, first = len(toks), None, len(out)
    while i < n:
        t = toks[i]
        if t == stop:
            break
        action = _ACTIONS.get(t)
        if action is None:
            out.append((level, t, rel))
        elif action == "script":
            if last is None:
                raise TreeError(f"token {i}: script {t!r} has no base symbol")
            if last in LIMIT_BASES:
                r = ABOVE if t == "^" else BELOW
            else:
                r = SUP if t == "^" else SUB
            i = _group(toks, i + 1, level + 1, r, out)
            continue
        elif action == "frac":
            out.append((level, t, rel))
            i = _group(toks, _group(toks, i + 1, level + 1, ABOVE, out), level + 1, BELOW, out)
            last, rel = t, RIGHT
            continue
        elif (action == "accent" or action == "sqrt") and (
                i + 1 == n or toks[i + 1] != OPEN and (action == "accent" or toks[i + 1] != INDEX_OPEN)):
            # an accent or radical with no argument is a plain symbol (CROHME writes an arrow as a bare \vec)
            out.append((level, t, rel))
        elif action == "accent":
            out.append((level, t, rel))
            i = _group(toks, i + 1, level + 1, ABOVE, out)
            last, rel = t, RIGHT
            continue
        elif action == "sqrt":
            out.append((level, t, rel))
            i += 1
            if toks[i] == INDEX_OPEN:
                i = _seq(toks, i + 1, level + 1, BELOW, INDEX_CLOSE, out)
                if i >= n:
                    raise TreeError("unclosed '[' of \\sqrt")
                i += 1
            i = _group(toks, i, level + 1, ABOVE, out)
            last, rel = t, RIGHT
            continue
        elif action == "begin":
            i = _environment(toks, i, level, rel, out)
            last, rel = t, RIGHT
            continue
        elif action == "row":
            if last is None:
                raise TreeError(f"token {i}: row break {t!r} has no symbol before it")
            # the next row hangs below the last symbol of this row, so rows nest one level deeper each
            i = _seq(toks, i + 1, level + 1, NEXTLINE, stop, out)
            break
        elif action == "open":
            raise TreeError(f"token {i}: brace group with no command or script before it")
        else:  # a '}' or '\end' that does not close anything open here
            raise TreeError(f"token {i}: unbalanced {t!r}")
        last, rel = t, RIGHT
        i += 1
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

    Raises TreeError for sequences the tree cannot carry back exactly (unbalanced or empty groups,
    unbraced arguments, scripts without a base, unclosed environments).
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
    return "\n".join("\t" * d + s if r is None else f"{chr(9) * d}{s} ({r})" for d, s, r in lines)


def tree_text(tokens) -> str:
    """The published Tree-CoT serialisation of a token sequence (list or space-separated string)."""
    return format_lines(parse(tokens))


def depth(tokens) -> int:
    """Maximum nesting depth of the tree (0 for a flat sequence of symbols)."""
    return max(d for d, _, _ in parse(tokens))


def count_text(tokens) -> str:
    """Symbol counting target: ``sym: n`` for each distinct token except braces, in order of first appearance."""
    counts = Counter(tokens.split() if isinstance(tokens, str) else tokens)
    return ", ".join(f"{t}: {c}" for t, c in counts.items() if t not in COUNT_EXCLUDED)


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
