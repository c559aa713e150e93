"""Writing a caption by hand: mathtext lays it out (one box per symbol), then each symbol is written as strokes
of a Hershey glyph or of one writer's real glyph from the glyph bank, with that writer's slant, size, spacing and
wobble (``handwrite``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .captions import SQRT, sampler_vocabulary


PEN_WIDTH = "penWidth"  # InkML annotation: the writer's pen width, in pixels of a 128-pixel-high image
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
