"""Synthetic handwritten expressions: a CROHME-like caption sampler and a caption -> pen strokes -> InkML synthesiser.

Captions are laid out by matplotlib's mathtext (glyph positions, sizes, fraction and radical rules); each laid-out
glyph is replaced by a single-stroke Hershey glyph (``hershey-fonts``) scaled into its ink box, and the strokes are
then distorted per writer (slant, scale, rotation, baseline drift, smooth wobble) and per symbol (jitter).
Every sample ``i`` of a seed is drawn from its own generator ``default_rng([seed, i])``, so a dataset is the same
whatever the number of workers.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .latex import BIG_OPERATORS, FRAC_LIKE, RADICALS, SCRIPT_TOKENS
from .tally import Tally

SYNTH_SPLIT = "synthetic"
CAPTIONS_TSV = "captions.tsv"
PEN_WIDTH = "penWidth"  # InkML annotation: the writer's pen width, in pixels of a 128-pixel-high image
SUB, SUP = SCRIPT_TOKENS[1], SCRIPT_TOKENS[0]
FRAC = FRAC_LIKE[0]
SQRT = RADICALS[0]
SUM, LIM, INT = BIG_OPERATORS[0], BIG_OPERATORS[1], BIG_OPERATORS[2]

# ---- the caption sampler -------------------------------------------------------------------------------------
# Symbol weights roughly follow CROHME token frequencies (train + test2014).

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


# ---- layout: caption -> mathtext glyph boxes -------------------------------------------------------------------

@dataclass
class Glyph:
    """One laid-out symbol: the character drawn, its token label, and its ink box (x0, y0, x1, y1), y up."""

    char: str
    label: str
    box: tuple[float, float, float, float]
    size: float


FUNCTION_NAMES = ("\\sin", "\\cos", "\\tan", "\\log", "\\lim")
_DROP_FOR_LAYOUT = {"\\limits"}  # mathtext places sum/lim limits below by itself and has no \limits


def to_mathtext(caption: str) -> str:
    """Caption tokens -> a mathtext string (spaces inside ``^ { 2 }`` would become script content there)."""
    out, prev = [], ""
    for tok in caption.split():
        if tok in _DROP_FOR_LAYOUT:
            continue
        if prev[:1] == "\\" and prev[1:].isalpha() and tok[0].isalpha():
            out.append(" ")  # "\\sin x" must not become "\\sinx"
        out.append(tok)
        prev = tok
    return "$" + "".join(out) + "$"


@lru_cache(maxsize=1)
def _parser():
    from matplotlib.mathtext import MathTextParser

    return MathTextParser("path")


@lru_cache(maxsize=None)
def _char_to_token() -> dict[str, str]:
    """The caption token of each non-ASCII character mathtext draws (ASCII characters are their own token)."""
    from matplotlib._mathtext_data import tex2uni

    table = {chr(tex2uni[t[1:]]): t for t in sampler_vocabulary() if t[1:] in tex2uni}
    table.update({"\u2212": "-", "{": "\\{", "}": "\\}", "\u2032": "\\prime", "\u221a": SQRT})
    return table


@lru_cache(maxsize=4096)
def _ink_box(fname: str, size: float, num: int) -> tuple[float, float, float, float]:
    from matplotlib.ft2font import LoadFlags

    font = _font(fname)
    font.set_size(size, 72)
    glyph = font.load_char(num, flags=LoadFlags.NO_HINTING)
    x0, y0, x1, y1 = (v / 64 for v in glyph.bbox)  # 26.6 fixed point
    return x0, y0, x1, y1


@lru_cache(maxsize=None)
def _font(fname: str):
    from matplotlib.ft2font import FT2Font

    return FT2Font(fname)


# Forked workers would share the parent's open font files, hence one file offset: concurrent glyph reads then
# fail ("invalid outline"). matplotlib clears its own font cache at fork in the same way.
os.register_at_fork(after_in_child=_font.cache_clear)


def layout(caption: str) -> tuple[list[Glyph], list[tuple[int | None, tuple[float, float, float, float]]]]:
    """Lay a caption out with mathtext (y up, points): glyphs, and rules as (index of the radical sign whose
    overbar it is, or None for a fraction bar; box)."""
    try:
        parse = _parser().parse(to_mathtext(caption))
    except ValueError as err:
        raise ValueError(f"caption {caption!r}: mathtext cannot lay it out: {str(err).splitlines()[0]}") from None
    glyphs: list[Glyph] = []
    names = _char_to_token()
    for font, size, num, _index, ox, oy in parse.glyphs:
        char = chr(num)
        if char.isspace():
            continue
        if "cmsy" in os.path.basename(font.fname) and char == "0":
            char = "\u2032"  # mathtext draws \prime from Computer Modern's symbol font
        x0, y0, x1, y1 = _ink_box(font.fname, float(size), int(num))
        label = names.get(char, char)
        if char.isalpha() and char.isascii() and "Oblique" not in font.fname:
            label = "roman"
        glyphs.append(Glyph(char, label, (ox + x0, oy + y0, ox + x1, oy + y1), float(size)))
    _merge_function_names(glyphs)
    rules = []
    for x, y, w, h in parse.rects:
        # A radical's overbar starts where its sign ends; it belongs to that sign's symbol.
        owner = next((i for i, g in enumerate(glyphs) if g.char == "\u221a" and abs(g.box[2] - x) < 0.2 * g.size
                      and abs(g.box[3] - (y + h)) < 0.2 * g.size), None)
        rules.append((owner, (x, y, x + w, y + h)))
    return glyphs, rules


def _merge_function_names(glyphs: list[Glyph]) -> None:
    """Label the upright letters of ``\\sin``, ``\\lim``... with the function token (they form one symbol)."""
    i = 0
    while i < len(glyphs):
        if glyphs[i].label != "roman":
            i += 1
            continue
        j = i
        while j < len(glyphs) and glyphs[j].label == "roman":
            j += 1
        k = i
        while k < j:
            name = next((f for f in FUNCTION_NAMES if "".join(g.char for g in glyphs[k:k + 3]) == f[1:]), None)
            if name is None:
                raise ValueError(f"upright letters {''.join(g.char for g in glyphs[i:j])!r} are not a known function")
            for g in glyphs[k:k + 3]:
                g.label = name
            k += 3
        i = j


# ---- glyph shapes: Hershey single-stroke fonts -------------------------------------------------------------------

# unicode char -> (Hershey font, key) for everything that is not plain ASCII from 'futural'.
_HERSHEY = {
    "\u2212": ("futural", "-"), "\u00d7": ("mathlow", "#"), "\u00f7": ("mathlow", "x"), "\u00b1": ("mathlow", "!"),
    "\u2264": ("mathlow", "&"), "\u2265": ("mathlow", "'"), "\u2260": ("mathlow", "?"), "\u2208": ("mathlow", "h"),
    "\u2192": ("mathlow", "i"), "\u221e": ("mathlow", "_"), "\u2203": ("mathlow", "v"), "\u222b": ("mathlow", "p"),
    "\u2211": ("greek", "S"), "\u221a": ("mathlow", "o"), "\u03a0": ("greek", "P"), "\u0394": ("greek", "D"),
    "\u2032": ("futural", "'"),
}
_GREEK_KEYS = dict(zip("αβγδεζηθικλμνξοπρστυφϕχψωΓΔΘΛΞΠΣΦΨΩ", "abgdezhQiklmnxoprstuffcywGDQLXPSFYW"))
MAX_STRETCH = 1.35
_DOTS = {"\u2026": 3, "\u22ef": 3, "\u22c5": 1}


@lru_cache(maxsize=None)
def _hershey_font(name: str):
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(name)
    return font


@lru_cache(maxsize=None)
def glyph_strokes(char: str) -> tuple[np.ndarray, ...]:
    """The Hershey strokes of a character, y up, in Hershey units."""
    if char in _DOTS:
        dot = glyph_strokes(".")[0]
        return tuple(dot + [i * 10.0, 0] for i in range(_DOTS[char]))
    flip = char == "\u2200"  # the Hershey sets have no "for all": an upside-down A
    if flip:
        char = "A"
    font, key = _HERSHEY.get(char) or (("greek", _GREEK_KEYS[char]) if char in _GREEK_KEYS else ("futural", char))
    glyph = _hershey_font(font).all_glyphs.get(key)
    printable = char.isascii() and char.isprintable()
    if glyph is None or char not in _GREEK_KEYS and char not in _HERSHEY and not printable:
        raise ValueError(f"no Hershey glyph for {char!r} (U+{ord(char):04X})")
    strokes = tuple(np.array(s, dtype=np.float64) * [1, 1 if flip else -1] for s in glyph.strokes if len(s) > 0)
    return strokes


def _fit(strokes, box) -> list[np.ndarray]:
    """Scale and move strokes into an ink box, keeping the Hershey glyph's aspect within MAX_STRETCH (a narrow "1"
    in a wide serif box must not become a "7"); a flat glyph ("-") takes its scale from the other side."""
    pts = np.concatenate(strokes)
    lo, hi = pts.min(0), pts.max(0)
    size = hi - lo
    target = np.array([box[2] - box[0], box[3] - box[1]])
    sx, sy = (target[k] / size[k] if size[k] > 1e-6 else 0.0 for k in range(2))
    if sx == 0 or sy == 0:
        sx = sy = sx or sy
    else:
        sx = sy * float(np.clip(sx / sy, 1 / MAX_STRETCH, MAX_STRETCH))
    centre_src, centre_dst = (lo + hi) / 2, np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return [(s - centre_src) * [sx, sy] + centre_dst for s in strokes]


# ---- handwriting: writer style and noise -------------------------------------------------------------------------

@dataclass
class Writer:
    """One synthetic writer's style."""

    scale: float      # ink units per point
    slant: float      # shear of x by y
    rotation: float   # radians
    drift: float      # baseline drift amplitude (points)
    drift_period: float
    drift_phase: float
    wobble: float     # smooth stroke noise amplitude (points)
    jitter: float     # per-symbol displacement (fraction of font size)
    spacing: float    # horizontal stretch
    pen_width: float  # suggested rendering width (pixels at the rendered height)

    @classmethod
    def sample(cls, rng) -> "Writer":
        return cls(scale=rng.uniform(4.0, 9.0), slant=rng.normal(0.12, 0.12), rotation=rng.normal(0, 0.025),
                   drift=rng.uniform(0, 1.2), drift_period=rng.uniform(40, 160), drift_phase=rng.uniform(0, 2 * np.pi),
                   wobble=rng.uniform(0.05, 0.3), jitter=rng.uniform(0.02, 0.09), spacing=rng.uniform(0.95, 1.25),
                   pen_width=rng.uniform(1.5, 3.5))


_SMOOTH = np.exp(-0.5 * (np.arange(-6, 7) / 2.5) ** 2)
_SMOOTH /= _SMOOTH.sum()


def _resample(stroke: np.ndarray, step: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    length = seg.sum()
    if length < 1e-9:
        return stroke[:1].copy()
    t = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0.0, length, max(2, int(length / step) + 1))
    return np.stack([np.interp(s, t, stroke[:, 0]), np.interp(s, t, stroke[:, 1])], axis=1)


def _wobble(stroke: np.ndarray, amp: float, rng) -> np.ndarray:
    if len(stroke) < 3 or amp <= 0:
        return stroke
    noise = np.cumsum(rng.standard_normal((len(stroke), 2)), axis=0)
    noise -= np.linspace(0, 1, len(stroke))[:, None] * noise[-1]  # a bridge: the ends stay near the glyph
    padded = np.pad(noise, ((6, 6), (0, 0)), mode="edge")
    noise = np.stack([np.convolve(padded[:, k], _SMOOTH, mode="valid") for k in range(2)], axis=1)
    return stroke + noise * amp / math.sqrt(len(stroke))


def _symbol_jitter(strokes: list[np.ndarray], size: float, writer: Writer, rng) -> list[np.ndarray]:
    pts = np.concatenate(strokes)
    centre = (pts.min(0) + pts.max(0)) / 2
    angle, scale = rng.normal(0, 0.04), 1 + rng.normal(0, 0.06)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * scale
    shift = rng.normal(0, writer.jitter * size, 2)
    return [(s - centre) @ rot.T + centre + shift for s in strokes]


def _writer_transform(points: np.ndarray, writer: Writer) -> np.ndarray:
    x, y = points[:, 0] * writer.spacing, points[:, 1]
    y = y + writer.drift * np.sin(2 * np.pi * x / writer.drift_period + writer.drift_phase)
    x = x + writer.slant * y
    c, s = math.cos(writer.rotation), math.sin(writer.rotation)
    out = np.stack([c * x - s * y, s * x + c * y], axis=1) * writer.scale
    out[:, 1] *= -1  # InkML y grows downwards
    return out


def _hershey_symbols(glyphs: list[Glyph], rules, rng) -> list[tuple[str, list[np.ndarray], float]]:
    """(token, strokes, font size) per symbol, every glyph a Hershey glyph and every rule a straight stroke."""
    symbols = [(g.label, _fit(glyph_strokes(g.char), g.box), g.size) for g in glyphs]
    for owner, (x0, y0, x1, y1) in rules:
        ym = (y0 + y1) / 2
        stroke = np.array([[x0 - rng.uniform(0, 0.8), ym], [x1 + rng.uniform(0, 0.8), ym + rng.normal(0, 0.3)]])
        if owner is None:
            symbols.append(("-", [stroke], 10.0))
        else:
            symbols[owner][1].append(stroke)
    return symbols


def _union(boxes) -> tuple[float, float, float, float]:
    b = np.array(boxes, dtype=np.float64)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def _fit_inside(strokes, box, stretch: bool = False) -> list[np.ndarray]:
    """Scale and move strokes into a box: keeping their aspect, as large as fits (``stretch``: filling it)."""
    pts = np.concatenate(strokes)
    lo, hi = pts.min(0), pts.max(0)
    size = np.maximum(hi - lo, 1e-6)
    target = np.array([box[2] - box[0], box[3] - box[1]])
    scale = target / size if stretch else np.full(2, (target / size).min())
    centre_src, centre_dst = (lo + hi) / 2, np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return [(s - centre_src) * scale + centre_dst for s in strokes]


REAL_SPACING = (0.7, 0.95)  # hands write symbols closer than mathtext sets them: box centres move by this factor
REAL_WOBBLE = 0.3  # real strokes carry their own tremor: a little of the synthetic wobble on top


def _squeezed(box, factor: float) -> tuple[float, float, float, float]:
    """``box`` with its centre's x multiplied by ``factor`` (its size kept)."""
    shift = (box[0] + box[2]) / 2 * (factor - 1)
    return box[0] + shift, box[1], box[2] + shift, box[3]


def _bar_box(box, rng) -> tuple[float, float, float, float]:
    """A handwritten bar's box around a typeset rule: a little longer, and a little thick (the pen wavers)."""
    x0, y0, x1, y1 = box
    ym, half = (y0 + y1) / 2, 0.025 * (x1 - x0) + 0.3
    return x0 - rng.uniform(0, 0.8), ym - half, x1 + rng.uniform(0, 0.8), ym + half


def _real_symbols(glyphs: list[Glyph], rules, bank, writer: int, rng) -> list[tuple[str, list[np.ndarray], float]]:
    """(token, strokes, font size) per symbol from real glyphs of ``bank`` (``writer``'s own where that writer
    wrote the token): a function name is one glyph over its letters, a radical one glyph over its sign and bar,
    a fraction bar a real "-" stretched along its rule; a token the bank lacks is drawn from Hershey."""
    runs, i = [], 0
    while i < len(glyphs):  # \sin, \lim ...: its letters share a label and become one glyph
        j = i + 1
        while j < len(glyphs) and glyphs[i].label in FUNCTION_NAMES and glyphs[j].label == glyphs[i].label \
                and j - i < len(glyphs[i].label) - 1:
            j += 1
        runs.append(glyphs[i:j])
        i = j
    bars = {owner: box for owner, box in rules if owner is not None}
    symbols, first = [], 0
    for run in runs:
        g = run[0]
        box = _union([x.box for x in run] + ([bars[first]] if first in bars else []))
        strokes = bank.pick(g.label, writer, rng)
        if strokes is not None:
            symbols.append((g.label, _fit_inside(strokes, box, stretch=first in bars), g.size))
        else:
            hershey = [s for x in run for s in _fit(glyph_strokes(x.char), x.box)]
            if first in bars:
                x0, y0, x1, y1 = bars[first]
                hershey.append(np.array([[x0, (y0 + y1) / 2], [x1, (y0 + y1) / 2]]))
            symbols.append((g.label, hershey, g.size))
        first += len(run)
    for owner, box in rules:
        if owner is None:
            strokes = bank.pick("-", writer, rng)
            bar = _bar_box(box, rng)
            symbols.append(("-", _fit_inside(strokes, bar, stretch=True) if strokes is not None
                            else [np.array([[bar[0], bar[1]], [bar[2], bar[3]]])], 10.0))
    return symbols


def handwrite(caption: str, rng: np.random.Generator, id: str = "synthetic", bank=None):
    """Caption -> an ``inkml.Ink``: one trace group per symbol, labelled with its token; truth = the caption.

    ``bank`` (a ``glyphs.GlyphBank``): each symbol is a real handwritten glyph, one writer's where that writer
    wrote it, laid out closer together as hands write; without it, Hershey glyphs."""
    from .inkml import Ink, SymbolGroup

    glyphs, rules = layout(caption)
    writer = Writer.sample(rng)
    step = 0.35  # points between resampled pen samples
    if bank is None:
        symbols = _hershey_symbols(glyphs, rules, rng)
        wobble = writer.wobble
    else:
        hand = int(bank.writer_ids[rng.integers(len(bank.writer_ids))])
        squeeze, writer.spacing = rng.uniform(*REAL_SPACING), 1.0
        glyphs = [Glyph(g.char, g.label, _squeezed(g.box, squeeze), g.size) for g in glyphs]
        rules = [(owner, (box[0] * squeeze, box[1], box[2] * squeeze, box[3])) for owner, box in rules]
        symbols = _real_symbols(glyphs, rules, bank, hand, rng)
        wobble = writer.wobble * REAL_WOBBLE
    symbols = [(label, _symbol_jitter(strokes, size, writer, rng)) for label, strokes, size in symbols]
    strokes_of = [[_writer_transform(_wobble(_resample(s, step), wobble, rng), writer) for s in strokes]
                  for _, strokes in symbols]
    origin = np.concatenate([s for group in strokes_of for s in group]).min(0) - rng.uniform(10, 100, 2)
    traces: dict[str, np.ndarray] = {}
    groups = []
    for (label, _), strokes in zip(symbols, strokes_of):
        ids = [str(len(traces) + k) for k in range(len(strokes))]
        traces.update((tid, np.round(s - origin).astype(np.float32)) for tid, s in zip(ids, strokes))
        groups.append(SymbolGroup(label=label, trace_ids=ids))
    return Ink(id=id, traces=traces, groups=groups, latex=f"${caption}$",
               annotations={"writer": "synthetic", PEN_WIDTH: f"{writer.pen_width:.2f}"})


# ---- datasets ----------------------------------------------------------------------------------------------------

MAX_TRIES = 20  # a sampled caption mathtext cannot lay out is replaced by the next draw of the same generator


def synth_id(seed: int, index: int) -> str:
    return f"synth_s{seed}_{index:06d}"


def synthesize(index: int, seed: int = 0, bank=None):
    """Sample ``index`` of a seed: an ``Ink`` whose truth is a sampled caption (same output for same arguments);
    ``bank``: written with its real glyphs (``handwrite``). The caption does not depend on ``bank``."""
    rng = np.random.default_rng([seed, index])
    for _ in range(MAX_TRIES):
        caption = sample_caption(rng)
        try:
            return handwrite(caption, rng, id=synth_id(seed, index), bank=bank)
        except ValueError:
            continue
    raise ValueError(f"sample {index} of seed {seed}: no caption could be laid out in {MAX_TRIES} tries")


def glyph_vocabulary() -> list[str]:
    """The sampler's tokens that are a symbol on their own (not ``{``, ``^``, ``\\frac``, ``\\limits``...)."""
    out = []
    for token in sorted(sampler_vocabulary() - {"{", "}", "\\limits"}):
        try:
            layout(token)
        except ValueError:
            continue
        out.append(token)
    return out


def glyph_images(folder, symbols: list[str], n: int, seed: int, height: int) -> list:
    """``n`` one-symbol images (PNG in ``folder``), each by its own writer of ``seed``: records for reading checks."""
    from .records import Record
    from .render import render_ink

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        symbol = symbols[rng.integers(len(symbols))]
        path = folder / f"g{seed}_{i}.png"
        render_ink(handwrite(symbol, rng), height=height).save(path)
        records.append(Record(id=path.stem, caption=symbol, image_path=str(path)))
    return records


def _write_one(job: tuple) -> tuple[str, str, str | None]:
    """(index, seed, folder, glyph bank, writer group) -> (id, caption, None) or (id, "", reason)."""
    from .glyphs import bank_for
    from .inkml import write_inkml

    index, seed, folder, bank, group = job
    try:
        ink = synthesize(index, seed, bank=bank_for(bank, group))
    except ValueError as err:
        return synth_id(seed, index), "", str(err)
    write_inkml(Path(folder) / f"{ink.id}.inkml", ink)
    return ink.id, ink.latex.strip("$"), None


SYNTH_MARKER = ".unimumer-synth.json"  # the --n/--seed of the run that filled the folder


def _targets(out: Path, n: int, seed: int) -> list[Path]:
    """The files a run of ``n`` samples of ``seed`` writes into ``out`` (besides its marker)."""
    return [out / CAPTIONS_TSV, *(out / SYNTH_SPLIT / f"{synth_id(seed, i)}.inkml" for i in range(n))]


def _synth_files(out: Path) -> list[Path]:
    """What an earlier synth run wrote into ``out``, as its marker records (n, seed): the marker, captions.tsv and
    its synthetic/synth_s<seed>_<index>.inkml files; nothing without a marker."""
    try:
        held = json.loads((out / SYNTH_MARKER).read_text(encoding="utf-8"))
        made = [out / SYNTH_MARKER, *_targets(out, int(held["n"]), int(held["seed"]))]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [p for p in made if p.exists()]


def _check_out(out: Path, settings: dict, force: bool) -> None:
    """Refuse a non-empty ``out`` unless it holds a run of the same settings (a rerun resumes) or ``force``."""
    from .outdir import is_empty_dir

    if is_empty_dir(out):
        return
    try:
        same = json.loads((out / SYNTH_MARKER).read_text(encoding="utf-8")) == settings
    except (OSError, ValueError):
        same = False
    if same:
        return
    if not force:
        raise ValueError(f"{out}: not empty and not a synth run with n={settings['n']} seed={settings['seed']}; "
                         f"choose an empty --out, or --force to clear what synth made there (other files are kept)")
    ours = set(_synth_files(out))
    clash = [p for p in _targets(out, settings["n"], settings["seed"]) if p.exists() and p not in ours]
    if clash:
        raise FileExistsError(f"{clash[0]}: a file synth did not write (its record {SYNTH_MARKER} does not name it)"
                              f"{f' and {len(clash) - 1} more' if len(clash) > 1 else ''}; --force replaces only "
                              f"synth's own files: move it away, or choose another --out")
    for path in ours:
        path.unlink()


def synthesize_dataset(n: int, seed: int = 0, out=".", workers: int | None = None, force: bool = False,
                       glyphs: str | None = None, writers: str | None = None) -> dict:
    """Write ``out/synthetic/<id>.inkml`` and ``out/captions.tsv`` for ``n`` samples of ``seed``; ``glyphs``: in
    real glyphs of that bank (``glyphs.bank_for``: ``"shipped"`` or a path), only its ``writers`` group if given.

    Returns ``{"read": n, "written": k, "rejected": n - k, "rejects": [(id, reason)], "folder": ...}``
    (``read`` counts requested samples). Same files for a seed whatever ``workers`` is. A non-empty ``out`` is
    refused unless it holds an earlier run with the same ``n`` and ``seed`` (which this run then completes) or
    ``force`` is given, which first deletes what synth made there (and nothing else).
    """
    from contextlib import closing

    from tqdm.auto import tqdm

    from .files import atomic_write_text, remove_temp_files
    from .outdir import OutputLock
    from .render import default_workers
    from .workers import imap_ordered

    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out is a file, not a folder")
    folder = out / SYNTH_SPLIT
    settings = {"n": n, "seed": seed}
    if glyphs:
        from .glyphs import SHIPPED_NAME

        settings.update(glyphs=glyphs if glyphs == SHIPPED_NAME else str(Path(glyphs).resolve()), writers=writers)
    elif writers:
        raise ValueError("--writers picks writers of a glyph bank: give --glyphs too")
    with OutputLock(out, "unimumer synth"):
        _check_out(out, settings, force)
        remove_temp_files(out, folder)
        atomic_write_text(out / SYNTH_MARKER, json.dumps(settings) + "\n")
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(i, seed, str(folder), settings.get("glyphs"), writers) for i in range(n)]
        workers = default_workers() if workers is None else workers
        try:
            with closing(imap_ordered(_write_one, jobs, workers, chunksize=16)) as results:
                results = list(tqdm(results, total=n, desc="synth", unit="ink", mininterval=1.0))
        except BaseException:
            remove_temp_files(out, folder)
            raise
        written = [(key, caption) for key, caption, reason in results if reason is None]
        rejects = [(key, reason) for key, _, reason in results if reason is not None]
        atomic_write_text(out / CAPTIONS_TSV, "".join(f"{key}\t{caption}\n" for key, caption in written))
    return {**Tally(n, len(written), len(rejects)).as_dict(), "rejects": rejects, "folder": str(folder)}


def token_coverage(captions, n: int = 20000, seed: int = 0) -> dict:
    """How many of the distinct tokens of ``captions`` (e.g. CROHME's) ``n`` sampled captions contain.

    Returns ``{"coverage": share, "covered": k, "distinct": m, "missing": [tokens by frequency], "extra": [...]}``,
    ``extra`` being sampled tokens absent from ``captions``.
    """
    target = Counter(t for c in captions for t in c.split())
    emitted = {t for c in sample_captions(n, seed) for t in c.split()}
    missing = [t for t, _ in target.most_common() if t not in emitted]
    return {"coverage": 1 - len(missing) / max(1, len(target)), "covered": len(target) - len(missing),
            "distinct": len(target), "missing": missing, "extra": sorted(emitted - set(target))}


def plot_synthetic_vs_crohme(path=None, crohme=None, n: int = 5, seed: int = 0, height: int = 96):
    """Figure: ``n`` synthetic inks (left) beside ``n`` real CROHME inks (right, when a CROHME split folder is given,
    e.g. ``config.crohme_root() / "test2014"``), each rendered by ``render.render_traces`` and titled with its caption.
    Saved (and closed) when ``path`` is given; returns the figure."""
    import matplotlib.pyplot as plt

    from .inkml import caption_of, find_inkml, read_inkml
    from .render import render_traces

    columns = [("synthetic", [synthesize(i, seed) for i in range(n)])]
    if crohme is not None:
        files = find_inkml(crohme)
        picks = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
        columns.append((f"CROHME {Path(crohme).name}", [read_inkml(files[i]) for i in sorted(picks)]))
    fig, axes = plt.subplots(n, len(columns), figsize=(6 * len(columns), 1.5 * n), squeeze=False)
    for col, (title, inks) in enumerate(columns):
        for row, ax in enumerate(axes[:, col]):
            ax.axis("off")
            if row >= len(inks):
                continue
            ink = inks[row]
            width = float(ink.annotations.get(PEN_WIDTH, height / 50)) * height / 128
            ax.imshow(render_traces(ink.traces, height=height, line_width=width), cmap="gray", vmin=0, vmax=255)
            caption = caption_of(ink)
            caption = caption if len(caption) < 70 else caption[:67] + "..."
            ax.set_title(f"{title}\n{caption}" if row == 0 else caption, fontsize=7)
    fig.tight_layout()
    if path is not None:
        from .files import save_figure
        save_figure(fig, path)  # shown inline in a notebook, then closed
    return fig
