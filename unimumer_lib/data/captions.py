"""Random LaTeX captions in the literature's token format, drawn from a seed: CROHME-like expressions (polynomials,
fractions, radicals, scripts, sums, integrals, limits, functions, brackets) with CROHME's symbol frequencies and
length distribution (``sample_caption``).
"""

from __future__ import annotations

import math

import numpy as np

from ..latex.tokens import BIG_OPERATORS, FRAC_LIKE, RADICALS, SCRIPT_TOKENS


SUB, SUP = SCRIPT_TOKENS[1], SCRIPT_TOKENS[0]
FRAC = FRAC_LIKE[0]
SQRT = RADICALS[0]
SUM, LIM, INT = BIG_OPERATORS[0], BIG_OPERATORS[1], BIG_OPERATORS[2]


def _weighted(spec: str) -> tuple[list[str], np.ndarray]:
    items = [s.rsplit(":", 1) for s in spec.split()]
    w = np.array([float(c) for _, c in items])
    return [t for t, _ in items], w / w.sum()


LETTERS = _weighted("x:57 a:28 n:25 y:20 b:18 z:12 d:8 i:11 c:10 t:8 f:8 k:7 p:6 m:5 e:5 q:4 r:4 v:4 u:4 j:3 "
                    "g:3 s:3 l:2 w:2 h:2 o:1 A:3 B:3 C:3 X:3 R:2 F:2 L:2 E:2 S:2 P:2 N:2 V:2 H:2 T:2 Y:2 M:2 "
                    "G:1 I:1")
DIGITS = _weighted("1:7 2:7 3:3 0:2 4:2 5:1.2 6:1 7:1 8:1 9:1")
GREEK = _weighted(r"\theta:6 \pi:6 \alpha:4 \beta:3 \gamma:1 \phi:1 \sigma:1 \mu:0.6 \lambda:0.6 \Delta:0.5 \Pi:0.2")
BINARY = _weighted(r"+:60 -:48 \times:7 \div:2 \pm:2 \cdot:1.5 /:2")
RELATIONS = _weighted(r"=:40 \leq:3 \geq:2 <:1.5 >:1 \neq:1.5 \rightarrow:1 \in:0.3")
FUNCTIONS = _weighted(r"\sin:9 \cos:7 \tan:3 \log:3")
BRACKETS = {"(": ")", "[": "]", "\\{": "\\}", "|": "|"}
BRACKET_WEIGHTS = _weighted(r"(:45 [:4 \{:1 |:6")
BOUND_VARS = ("i", "j", "k", "n", "x", "r")
UPPER_LIMITS = _weighted(r"n:55 \infty:25 N:8 k:6 m:6")
DIFFERENTIALS = _weighted(r"x:70 t:12 u:6 y:6 \theta:6")
LIMIT_TARGETS = _weighted(r"0:35 \infty:45 a:10 1:10")
FUNCTION_ARGS = _weighted(r"x:55 \theta:20 t:10 \alpha:10 a:5")
PRIMED = _weighted("f:5 y:2 g:1 x:1 t:1")
LOWER_LIMITS = _weighted("1:6 0:3 2:1")
# CROHME train caption length (tokens): median 13, mean 15.6, 95th percentile 38. The target is log-normal;
# the grammar overshoots it by a few tokens, so these give median 13, mean 16, 95th percentile 38.
LENGTH_MEDIAN, LENGTH_SIGMA, LENGTH_MAX = 9.0, 0.75, 120


def _pick(rng, table) -> str:
    names, p = table
    return names[rng.choice(len(names), p=p)]


def _any(rng, options) -> str:
    return options[rng.integers(len(options))]


def _group(tokens: list[str]) -> list[str]:
    return ["{", *tokens, "}"]


class _Sampler:
    """Recursive grammar over CROHME structures; ``budget`` is the number of tokens still wanted."""

    def __init__(self, rng):
        self.rng = rng

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def number(self) -> list[str]:
        n = 1 + int(self.rng.geometric(0.6)) - 1
        digits = [_pick(self.rng, DIGITS) for _ in range(min(n, 5))]
        if self.chance(0.04):
            digits += [".", *[_pick(self.rng, DIGITS) for _ in range(1 + self.rng.integers(3))]]
        return digits

    def atom(self) -> list[str]:
        r = self.rng.random()
        if r < 0.5:
            return [_pick(self.rng, LETTERS)]
        if r < 0.85:
            return self.number()
        if r < 0.97:
            return [_pick(self.rng, GREEK)]
        return ["\\infty"]

    def small(self) -> list[str]:
        """A short script/limit body: 1-3 tokens mostly."""
        r = self.rng.random()
        if r < 0.55:
            return self.atom()
        if r < 0.8:
            return [_pick(self.rng, LETTERS), _any(self.rng, ("+", "-")), *self.atom()]
        if r < 0.9:
            return ["-", *self.atom()]
        return [_pick(self.rng, LETTERS), _pick(self.rng, LETTERS)]

    def scripted(self, base: list[str], depth: int) -> list[str]:
        r = self.rng.random()
        sup = _group(self.expr(3, depth + 1) if self.chance(0.2) else self.small())
        if r < 0.5:
            return [*base, SUP, *sup]
        sub = _group(self.small())
        if r < 0.85:
            return [*base, SUB, *sub]
        return [*base, SUB, *sub, SUP, *sup]

    def bigop(self, budget: int, depth: int) -> list[str]:
        r, v = self.rng.random(), _any(self.rng, BOUND_VARS)
        body = self.expr(max(2, budget // 2), depth + 1)
        if r < 0.4:
            upper = _pick(self.rng, UPPER_LIMITS)
            lim = [SUB, *_group([v, "=", _pick(self.rng, LOWER_LIMITS)]), SUP, *_group([upper])] if self.chance(.8) \
                else [SUB, *_group([v])]
            return [SUM, "\\limits", *lim, *body]
        if r < 0.75:
            dx = ["d", _pick(self.rng, DIFFERENTIALS)]
            if self.chance(0.5):
                lo, hi = self.atom()[:2], self.atom()[:2]
                return [INT, "\\limits", SUB, *_group(lo), SUP, *_group(hi), *body, *dx]
            return [INT, *body, *dx]
        target = _pick(self.rng, LIMIT_TARGETS)
        if self.chance(0.85):
            return [LIM, "\\limits", SUB, *_group([v, "\\rightarrow", target]), *body]
        return [LIM, *body]

    def term(self, budget: int, depth: int) -> list[str]:
        rng = self.rng
        if depth > 3 or budget <= 2:
            return self.scripted(self.atom(), depth) if budget >= 4 and self.chance(.3) else self.atom()
        r = rng.random()
        if r < 0.22:
            return self.atom() + (self.atom() if self.chance(0.25) else [])
        if r < 0.42:
            base = [_pick(rng, LETTERS)] if self.chance(.8) else self.atom()
            return self.scripted(base, depth)
        if r < 0.56:
            half = max(1, (budget - 5) // 2)
            return [FRAC, *_group(self.expr(half, depth + 1)), *_group(self.expr(half, depth + 1))]
        if r < 0.64:
            index = ["[", *self.number()[:1], "]"] if self.chance(0.12) else []
            return [SQRT, *index, *_group(self.expr(max(1, budget - 3), depth + 1))]
        if r < 0.72:
            fn = _pick(rng, FUNCTIONS)
            head = [fn, SUB, *_group(self.atom()[:1])] if fn == "\\log" and self.chance(.3) else [fn]
            if fn != "\\log" and self.chance(0.12):
                head += [SUP, *_group(["2"])]
            arg = ["(", *self.expr(max(1, budget - 4), depth + 1), ")"] if self.chance(.35) else \
                [_pick(rng, FUNCTION_ARGS)]
            return head + arg
        if r < 0.82:
            left = _pick(rng, BRACKET_WEIGHTS)
            inner = self.expr(max(1, budget - 2), depth + 1)
            if left == "\\{":
                inner = [t for a in self.atom_list(3) for t in (a, ",")][:-1]
            out = [left, *inner, BRACKETS[left]]
            return out + [SUP, *_group(self.small())] if left == "(" and self.chance(.25) else out
        if r < 0.9:
            return self.bigop(budget, depth)
        if r < 0.93:
            return [*self.atom()[:1], "!"]
        if r < 0.96:
            f = _pick(rng, PRIMED)
            return [f, SUP, *_group(["\\prime"]), "(", "x", ")"] if self.chance(.5) else [f, "\\prime"]
        if r < 0.985:
            v, dots = _pick(rng, LETTERS), "\\ldots" if self.chance(0.6) else "\\cdots"
            sep = "," if dots == "\\ldots" and self.chance(.5) else "+"
            return [v, SUB, *_group(["1"]), sep, v, SUB, *_group(["2"]), sep, dots, sep, v, SUB, *_group(["n"])]
        q = "\\forall" if self.chance(0.6) else "\\exists"
        return [q, _pick(rng, LETTERS), "\\in", _any(rng, ("A", "R", "N", "S"))]

    def atom_list(self, n: int) -> list[str]:
        return [t for _ in range(1 + self.rng.integers(n)) for t in self.atom()[:1]]

    def expr(self, budget: int, depth: int = 0) -> list[str]:
        out = self.term(budget, depth)
        relations = 0
        while len(out) < budget:
            if depth == 0 and relations < 2 and self.chance(0.3):
                op, relations = _pick(self.rng, RELATIONS), relations + 1
            elif self.chance(0.06):
                op = ","
            else:
                op = _pick(self.rng, BINARY)
            out += [op, *self.term(budget - len(out) - 1, depth)]
        return out


# Tokens the grammar writes itself (not drawn from a weight table).
TEMPLATE_TOKENS = ("{", "}", SUP, SUB, FRAC, SQRT, "[", "]", SUM, INT, LIM, "\\limits", "=", ",", ".", "!", "-", "+",
                   "\\rightarrow", "\\infty", "\\prime", "\\ldots", "\\cdots", "\\forall", "\\exists", "\\in")


def sampler_vocabulary() -> set[str]:
    """Every token the sampler can emit."""
    tables = (LETTERS, DIGITS, GREEK, BINARY, RELATIONS, FUNCTIONS, BRACKET_WEIGHTS, UPPER_LIMITS, DIFFERENTIALS,
              LIMIT_TARGETS, FUNCTION_ARGS, PRIMED, LOWER_LIMITS)
    return ({t for names, _ in tables for t in names} | set(BRACKETS.values()) | set(BOUND_VARS)
            | set(TEMPLATE_TOKENS) | {"A", "R", "N", "S"})


def sample_caption(rng: np.random.Generator) -> str:
    """One CROHME-like caption in the literature's space-separated token format."""
    target = int(min(LENGTH_MAX, max(1, round(LENGTH_MEDIAN * math.exp(LENGTH_SIGMA * rng.standard_normal())))))
    tokens = _Sampler(rng).expr(target)
    if rng.random() < 0.1 and tokens[0] not in ("-", "+"):
        tokens = ["-", *tokens]
    return " ".join(tokens)


def sample_captions(n: int, seed: int = 0) -> list[str]:
    return [sample_caption(np.random.default_rng([seed, i])) for i in range(n)]
