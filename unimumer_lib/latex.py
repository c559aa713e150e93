"""LaTeX captions: tokenising, normalising to the literature's token format, and token categories.

A caption is a space-separated token sequence as in CoMER/TAMER/Uni-MuMER, e.g. ``\\frac { 1 } { 2 } t ^ { 2 }``.
"""

from __future__ import annotations

# Token categories: the one source of truth used by the tree parser, metrics and analysis.
SCRIPT_TOKENS = ("^", "_")
GROUP_TOKENS = ("{", "}")
FRAC_LIKE = ("\\frac", "\\dfrac", "\\tfrac", "\\binom", "\\overset", "\\underset", "\\stackrel")
BIG_OPERATORS = ("\\sum", "\\lim", "\\int", "\\prod", "\\oint", "\\iint", "\\coprod")
ACCENTS = ("\\hat", "\\bar", "\\vec", "\\dot", "\\ddot", "\\tilde", "\\overline", "\\underline",
           "\\widehat", "\\widetilde", "\\overrightarrow", "\\mathrm", "\\mathbf", "\\mathit", "\\boldsymbol")
RADICALS = ("\\sqrt",)
ENV_TOKENS = ("\\begin", "\\end")
ROW_BREAK = "\\\\"
STRUCTURE_TOKENS = frozenset(SCRIPT_TOKENS + GROUP_TOKENS + FRAC_LIKE + RADICALS + ACCENTS + ENV_TOKENS
                             + ("[", "]", "&", ROW_BREAK, "\\limits"))


def tokenize(latex: str) -> list[str]:
    """Split LaTeX into tokens. Placeholder: whitespace split (the latex engineer replaces this)."""
    return latex.split()
