"""LaTeX captions: tokenising, normalising to the literature's token format, and token categories.

A caption is a space-separated token sequence as in CoMER/TAMER/Uni-MuMER, e.g. ``\\frac { 1 } { 2 } t ^ { 2 }``:
every script/fraction/radical argument braced, subscript before superscript, ``\\limits`` after a big operator
that carries scripts, no spacing commands, no redundant braces.  ``canonical_caption`` builds it for a CROHME
expression from its MathML annotation, reconciled with the raw LaTeX truth of the same file.
"""

from __future__ import annotations

import html
import re

from lxml import etree

from unimumer_lib.latex.align import align

# Token categories: the one source of truth used by the tree parser, metrics and analysis.
# The Tree-CoT categories follow the official Uni-MuMER preprocessing (latex_cate_lib.py); our extras are
# \overset \underset \stackrel (FRAC_LIKE) and \mathbf \mathit \boldsymbol (ACCENTS).
SCRIPT_TOKENS = ("^", "_")
GROUP_TOKENS = ("{", "}")
FRAC_LIKE = ("\\frac", "\\dfrac", "\\tfrac", "\\cfrac", "\\binom", "\\dbinom", "\\tbinom", "\\overset",
             "\\underset", "\\stackrel")
# Operators that take \limits in captions (normalize writes ``\bigcup \limits _ { i }``).
BIG_OPERATORS = ("\\sum", "\\lim", "\\int", "\\prod", "\\oint", "\\iint", "\\iiint", "\\coprod",
                 "\\bigcup", "\\bigcap", "\\bigoplus", "\\bigotimes")
# The official big-operator list: a script directly after one of these is a limit (Tree-CoT below/above);
# after any other operator, and after \limits itself, it is sub/sup.  The issue names \sum \int \lim \prod as
# in the list and \bigcup \bigcap \bigoplus \bigotimes \iiint as outside; \oint \iint \coprod were not named as
# differing and stay in (none occurs in CROHME).
LIMIT_OPERATORS = ("\\sum", "\\lim", "\\int", "\\prod", "\\oint", "\\iint", "\\coprod")
ACCENTS = ("\\hat", "\\bar", "\\vec", "\\dot", "\\ddot", "\\tilde", "\\check", "\\grave", "\\acute", "\\breve",
           "\\overline", "\\underline", "\\widehat", "\\widetilde", "\\overrightarrow", "\\overleftarrow",
           "\\overbrace", "\\underbrace", "\\xrightarrow", "\\xleftarrow", "\\mathrm", "\\mathbf", "\\mathit",
           "\\boldsymbol")
RADICALS = ("\\sqrt",)
ENV_TOKENS = ("\\begin", "\\end")
ROW_BREAK = "\\\\"
LIMITS = "\\limits"  # after a big operator: the scripts that follow are its limits
STRUCTURE_TOKENS = frozenset(SCRIPT_TOKENS + GROUP_TOKENS + FRAC_LIKE + RADICALS + ACCENTS + ENV_TOKENS
                             + ("[", "]", "&", ROW_BREAK, "\\limits"))

# Commands that only change spacing or size: the literature's captions never contain them.
SPACING = frozenset({"\\!", "\\,", "\\:", "\\;", "\\>", "\\ ", "~", "\\quad", "\\qquad", "\\displaystyle",
                     "\\textstyle", "\\scriptstyle", "\\nolimits", "\\big", "\\Big", "\\bigg", "\\Bigg",
                     "\\bigl", "\\bigr", "\\Bigl", "\\Bigr", "\\biggl", "\\biggr", "\\Biggl", "\\Biggr",
                     "\\hfill", "\\hspace", "$"})
# Wrappers whose argument is kept and the wrapper dropped (CROHME writes \mbox { erf }, captions write e r f).
TRANSPARENT = frozenset({"\\mbox", "\\text", "\\textrm", "\\mathrm", "\\operatorname", "\\mathit", "\\rm"})
DELIMITER_SIZES = ("\\left", "\\right")
# Spellings the literature writes one way.
SYNONYMS = {"\\lbrack": "[", "\\rbrack": "]", "\\lt": "<", "\\gt": ">", "\\le": "\\leq", "\\ge": "\\geq",
            "\\ne": "\\neq", "\\to": "\\rightarrow", "\\lbrace": "\\{", "\\rbrace": "\\}", "'": "\\prime",
            "\\dots": "\\ldots", "\\leqslant": "\\leq", "\\geqslant": "\\geq", "\\gets": "\\leftarrow",
            "\\rarr": "\\rightarrow", "\\infin": "\\infty", "\\vert": "|", "\\mid": "|", "\\lvert": "|",
            "\\rvert": "|", "\\cdotp": "\\cdot", "\\ast": "*", "\\neg": "\\lnot"}

_MAX_PASSES = 8
_TOKEN = re.compile(r"\\(?:begin|end)(?=\s*\{)|\\[a-zA-Z]+|\\.|\S", re.S)
_ENV_NAME = re.compile(r"\s*(\{[^{}\s]*\})")


def tokenize(latex: str) -> list[str]:
    """Split LaTeX into tokens in one linear pass.

    Commands (``\\alpha``, ``\\\\``, ``\\{``, ``\\,``) are one token, every other non-space character is its own
    token (so ``12`` -> ``1 2``), and the environment name after ``\\begin``/``\\end`` is one token (``{cases}``).
    """
    tokens: list[str] = []
    pos = 0
    while True:
        m = _TOKEN.search(latex, pos)
        if m is None:
            return tokens
        tokens.append(m.group())
        pos = m.end()
        if m.group() in ENV_TOKENS:
            env = _ENV_NAME.match(latex, pos)
            if env:
                tokens.append(env.group(1))
                pos = env.end()


class _Parser:
    """Recursive-descent rewrite of a token list into the caption format (see ``normalize``)."""

    def __init__(self, tokens: list[str]):
        self.tokens = []
        for t in tokens:
            if t == "." and self.tokens and self.tokens[-1] in DELIMITER_SIZES:
                self.tokens.pop()  # \left. / \right. draw nothing
            elif t not in SPACING:
                self.tokens.append(SYNONYMS.get(t, t))
        self.tokens = [t for t in self.tokens if t not in DELIMITER_SIZES]
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> str:
        self.i += 1
        return self.tokens[self.i - 1]

    def sequence(self, closer: str | None = None, out: list[str] | None = None) -> list[str]:
        """Items up to ``closer`` (consumed) or the end of input, appended to ``out``."""
        out = [] if out is None else out
        while self.peek() is not None:
            if self.peek() == closer:
                self.next()
                return out
            self.item(out)
        return out

    def argument(self) -> list[str]:
        """A braced group or a single item: the operand of a script, fraction, radical or accent."""
        if self.peek() is None:
            return []
        if self.peek() == "{":
            self.next()
            return self.sequence("}")
        out: list[str] = []
        self.item(out)
        return out

    def item(self, out: list[str]) -> None:
        t = self.next()
        if t == "{":
            self.sequence("}", out)  # a group that is no argument: its braces are redundant
        elif t == "}":
            pass  # unbalanced closing brace
        elif t in SCRIPT_TOKENS or t == "\\limits":
            self.scripts(out, t)
        elif t in TRANSPARENT:
            if self.peek() == "{":
                self.next()
                self.sequence("}", out)
            elif self.peek() is not None:
                self.item(out)
        elif t in FRAC_LIKE:
            out.append(t)
            for _ in range(2):
                out += ["{", *self.argument(), "}"]
        elif t in RADICALS:
            out.append(t)
            if self.peek() == "[":
                self.next()
                out += ["[", *self.sequence("]"), "]"]
            out += ["{", *self.argument(), "}"]
        elif t in ACCENTS:
            out += [t, "{", *self.argument(), "}"]
        elif t in ENV_TOKENS and (self.peek() or "").startswith("{") and len(self.peek()) > 1:
            out += [t, self.next()]  # \begin {cases}
        else:
            out.append(t)

    def scripts(self, out: list[str], first: str) -> None:
        """A run of ``_``/``^``/``\\limits`` after a base: emitted as ``[\\limits] _ { sub } ^ { sup }``."""
        base_is_operator = bool(out) and out[-1] in BIG_OPERATORS
        sub: list[str] | None = None
        sup: list[str] | None = None
        t: str | None = first
        while t is not None:
            if t == "_" and sub is None:
                sub = self.argument()
            elif t == "^" and sup is None:
                sup = self.argument()
            elif t != "\\limits":
                self.i -= 1  # a second subscript/superscript starts a new cluster
                break
            t = self.next() if self.peek() in ("_", "^", "\\limits") else None
        if base_is_operator and (sub or sup):
            out.append("\\limits")
        if sub:
            out += ["_", "{", *sub, "}"]
        if sup:
            out += ["^", "{", *sup, "}"]


def normalize_tokens(tokens: list[str]) -> list[str]:
    """``normalize`` on a token list.

    Real captions settle in one pass; degenerate input (``x ^ a { _ b }``) can need another, so passes repeat
    until the output is stable, which makes ``normalize`` idempotent.
    """
    out = _Parser(tokens).sequence()
    for _ in range(_MAX_PASSES):
        again = _Parser(out).sequence()
        if again == out:
            break
        out = again
    return out


def braces_balanced(text: str) -> bool:
    """True when every ``{`` token of a space-separated caption is closed by a later ``}`` and none is left over."""
    depth = 0
    for tok in text.split():
        depth += (tok == "{") - (tok == "}")
        if depth < 0:
            return False
    return depth == 0


def normalize(latex: str) -> str:
    """Raw LaTeX -> the literature's caption format (idempotent on captions already in that format).

    ``$`` and spacing/sizing commands dropped, ``\\left``/``\\right`` dropped (their delimiter kept, ``.`` dropped),
    synonyms unified (``\\lbrack`` -> ``[``, ``\\lt`` -> ``<``, ``\\le`` -> ``\\leq`` ...), every script, fraction,
    radical and accent argument braced, subscript before superscript, empty scripts dropped, ``\\limits`` after a
    big operator with scripts, redundant braces removed, ``\\mbox``/``\\mathrm`` wrappers dropped.
    """
    return " ".join(normalize_tokens(tokenize(html.unescape(latex))))


# ---- MathML (CROHME's presentation-like "Content-MathML" annotation) -> caption --------------------------------

# Element text spelled as an entity name or without its backslash in some CROHME files.
MATHML_NAMES = {"infin": "\\infty", "rarr": "\\rightarrow", "hellip": "\\ldots", "ctdot": "\\cdots",
                "ge": "\\geq", "le": "\\leq", "ne": "\\neq", "exist": "\\exists", "lt": "<", "gt": ">",
                "·": "\\cdot", "{": "\\{", "}": "\\}", "′": "\\prime", "…": "\\ldots", "⋯": "\\cdots",
                "×": "\\times", "÷": "\\div", "±": "\\pm", "→": "\\rightarrow", "≤": "\\leq", "≥": "\\geq",
                "≠": "\\neq", "∞": "\\infty", "∫": "\\int", "∑": "\\sum", "−": "-"}
# Symbols the 2016 MathML revision spells differently from the LaTeX truth of the same file (the literature
# follows the LaTeX spelling); within one class the raw LaTeX decides.
CONFUSABLE = ({"\\ldots", "\\cdots"}, {".", "\\cdot"})  # and ". . ." is an ellipsis, \\Pi vs \\pi one symbol
PUNCTUATION = (",", ".")
_ID_LABEL = re.compile(r"^(\\[a-zA-Z]+)_\d+$")
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
_LAYOUT = frozenset({"math", "mrow", "mstyle", "mpadded", "mphantom", "semantics", "merror"})


def _symbol(elem) -> list[str]:
    """Tokens of an mi/mn/mo/mtext leaf; the xml:id label (the trace group's symbol) wins over garbled text."""
    label = _ID_LABEL.match(elem.get(_XML_ID, ""))
    text = (elem.text or "").strip()
    name = text.lstrip("\\")
    if label and name and name.lower() in label.group(1).lower() and name.lower() != label.group(1)[1:].lower():
        return [SYNONYMS.get(label.group(1), label.group(1))]  # text truncated: "im" labelled \lim
    if text in MATHML_NAMES:
        return [MATHML_NAMES[text]]
    if len(name) > 1 and name.isalpha():
        command = "\\" + name
        return [MATHML_NAMES.get(name, SYNONYMS.get(command, command))]
    return [SYNONYMS.get(t, t) for t in tokenize(text)]


def _scripted(base: list[str], sub: list[str], sup: list[str]) -> list[str]:
    """``base [\\limits] _ { sub } ^ { sup }``; trailing punctuation inside a script is moved after it.

    A script ending in ``,`` or ``.`` is a known defect of the converter that wrote the RIT MathML
    (``\\sigma _ { a , } \\sigma``); no real expression ends a script with punctuation.
    """
    tail: list[str] = []
    for script in (sup, sub):
        while script and script[-1] in PUNCTUATION:
            tail.insert(0, script.pop())
    out = list(base)
    if base and base[-1] in BIG_OPERATORS and (sub or sup):
        out.append("\\limits")
    if sub:
        out += ["_", "{", *sub, "}"]
    if sup:
        out += ["^", "{", *sup, "}"]
    return out + tail


def _children(elem) -> list:
    return [c for c in elem if isinstance(c.tag, str)]


def _convert(elem) -> list[str]:
    tag = etree.QName(elem).localname
    kids = _children(elem)
    if tag in ("mi", "mn", "mo", "mtext", "ms"):
        return _symbol(elem)
    if tag in _LAYOUT:
        return [t for k in kids for t in _convert(k)]
    if tag == "mspace":
        return []
    args = [_convert(k) for k in kids]
    arity = {"msub": 2, "munder": 2, "msup": 2, "mover": 2, "msubsup": 3, "munderover": 3, "mfrac": 2,
             "mroot": 2}
    if tag in arity and len(args) != arity[tag]:
        raise ValueError(f"<{tag}> with {len(args)} children, expected {arity[tag]}")
    if tag in ("msub", "munder"):
        return _scripted(args[0], args[1], [])
    if tag in ("msup", "mover"):
        return _scripted(args[0], [], args[1])
    if tag in ("msubsup", "munderover"):
        return _scripted(args[0], args[1], args[2])
    if tag == "mfrac":
        return ["\\frac", "{", *args[0], "}", "{", *args[1], "}"]
    if tag == "msqrt":
        return ["\\sqrt", "{", *[t for a in args for t in a], "}"]
    if tag == "mroot":
        return ["\\sqrt", "[", *args[1], "]", "{", *args[0], "}"]
    if tag == "mfenced":
        inner = [t for i, a in enumerate(args) for t in ([","] if i else []) + a]
        return _symbol_text(elem.get("open", "(")) + inner + _symbol_text(elem.get("close", ")"))
    if tag == "mtable":
        rows = [[t for j, cell in enumerate(_children(row)) for t in (["&"] if j else []) + _convert(cell)]
                for row in kids]
        body = [t for i, r in enumerate(rows) for t in ([ROW_BREAK] if i else []) + r]
        return ["\\begin", "{matrix}", *body, "\\end", "{matrix}"]
    if tag in ("mtr", "mtd"):
        return [t for a in args for t in a]
    raise ValueError(f"unsupported MathML element <{tag}>")


def _symbol_text(text: str) -> list[str]:
    return [MATHML_NAMES.get(text, SYNONYMS.get(text, text))] if text else []


def mathml_tokens(mathml: str) -> list[str]:
    """Caption tokens from a serialized MathML ``<math>`` element (CROHME annotationXML); ValueError if unusable."""
    try:
        root = etree.fromstring(mathml.strip().encode(), etree.XMLParser(recover=True, resolve_entities=False))
    except etree.XMLSyntaxError as err:
        raise ValueError(f"MathML does not parse: {err}") from err
    if root is None:
        raise ValueError("MathML is empty")
    tokens = _convert(root)
    if not tokens:
        raise ValueError("MathML holds no symbols")
    return tokens


def _leaves(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in GROUP_TOKENS and t not in SCRIPT_TOKENS and t != "\\limits"]


def _lost_symbols(layout: list[str], raw: list[str]) -> bool:
    """True when the MathML's symbols are the raw LaTeX's with some missing (a truncated or lossy annotation)."""
    a, b = _leaves(layout), _leaves(raw)
    edits = align(a, b)
    return len(b) > len(a) and all(e.tag in ("equal", "insert") for e in edits)


def _symbol_class(tokens: list[str]) -> tuple:
    """Tokens with confusable spellings merged: the key under which MathML and LaTeX spellings are one symbol."""
    text = " ".join(tokens).replace(". . .", "\\ldots")
    key = []
    for t in text.split():
        group = next((min(c) for c in CONFUSABLE if t in c), None)
        key.append(group or (t.lower() if t.startswith("\\") else t))
    return tuple(key)


def _respell(layout: list[str], raw: list[str]) -> list[str]:
    """Take the raw LaTeX's spelling where it and the MathML write one symbol differently (see CONFUSABLE)."""
    out: list[str] = []
    for e in _merged(align(layout, raw)):
        mine, theirs = layout[e[0]:e[1]], raw[e[2]:e[3]]
        out += theirs if mine != theirs and _symbol_class(mine) == _symbol_class(theirs) else mine
    return out


def _merged(edits) -> list[tuple[int, int, int, int]]:
    """Edit script as spans, adjacent non-equal edits joined into one span."""
    spans: list[list] = []
    for e in edits:
        if spans and e.tag != "equal" and spans[-1][4] != "equal":
            spans[-1][1], spans[-1][3] = e.i2, e.j2
        else:
            spans.append([e.i1, e.i2, e.j1, e.j2, e.tag])
    return [tuple(s[:4]) for s in spans]


def _double_script(tokens: list[str]) -> bool:
    """True for ``x _ { a } _ { b }``: two scripts of one kind on one base, which LaTeX rejects."""
    clusters: list[set] = [set()]
    for t in tokens:
        if t == "{":
            clusters.append(set())
        elif t == "}":
            if len(clusters) > 1:
                clusters.pop()
        elif t in SCRIPT_TOKENS:
            if t in clusters[-1]:
                return True
            clusters[-1].add(t)
        elif t != "\\limits":
            clusters[-1] = set()
    return False


def canonical_caption(mathml: str | None, raw_latex: str | None) -> str:
    """The literature-format caption of one CROHME expression.

    The structure comes from the MathML annotation; the raw LaTeX truth of the same file supplies symbol
    spellings the MathML conflates (``\\cdots``/``\\ldots``, ``\\Pi``/``\\pi``) and replaces the MathML where that
    is missing, unusable, or has lost symbols the LaTeX has.  ValueError when neither gives a caption.
    """
    raw = normalize_tokens(tokenize(html.unescape(raw_latex))) if raw_latex else []
    try:
        layout = mathml_tokens(mathml) if mathml else None
    except ValueError:
        layout = None
    if layout is None or (raw and (_lost_symbols(layout, raw) or _double_script(layout))):
        if not raw:
            raise ValueError("neither MathML nor LaTeX truth gives a caption")
        return " ".join(raw)
    return " ".join(_respell(layout, raw) if raw else layout)
