"""Offline rendering: pen traces -> grayscale image (white background, dark anti-aliased strokes).

Strokes are drawn with PIL's C line rasteriser on a canvas ``supersample`` times larger and then box-reduced,
which anti-aliases them; the expression is scaled to a fixed height with its aspect ratio preserved.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = 255
INK = 0
MAX_ASPECT = 20.0  # widest content box, in heights, so a lone "-" does not become a kilometre-wide image
MIN_HEIGHT = 4
MAX_HEIGHT = 1024  # the 4x supersampled canvas is then up to 4096 x 81920 pixels (335 MB) per worker


def check_height(height) -> int:
    """``height`` as an int, or ValueError when it is outside [MIN_HEIGHT, MAX_HEIGHT]."""
    if isinstance(height, bool) or not isinstance(height, (int, np.integer)) or not (
            MIN_HEIGHT <= height <= MAX_HEIGHT):
        raise ValueError(f"height must be a whole number of pixels from {MIN_HEIGHT} to {MAX_HEIGHT}, got {height!r}")
    return int(height)


def _as_list(traces) -> list[np.ndarray]:
    items = traces.values() if isinstance(traces, Mapping) else traces
    return [np.asarray(t, dtype=np.float64).reshape(-1, 2) for t in items if len(t)]


def render_traces(traces: Mapping[str, np.ndarray] | Sequence[np.ndarray], height: int = 128,
                  padding: int | None = None, line_width: float | None = None, supersample: int = 4,
                  max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Render traces (each an (n, 2) X, Y array; Y grows downwards as in InkML) as a mode "L" image.

    ``height`` is the image height in pixels; ``padding`` (default height/16) is the white margin on every
    side; ``line_width`` (default height/50) is the stroke width in output pixels. The content keeps its
    aspect ratio: the width follows from the ink's bounding box. Same input -> same pixels.
    """
    check_height(height)
    padding = max(1, round(height / 16)) if padding is None else int(padding)
    line_width = max(1.0, height / 50) if line_width is None else float(line_width)
    inner = height - 2 * padding
    if inner < 1:
        raise ValueError(f"padding {padding} leaves no room in height {height}")
    strokes = _as_list(traces)
    if not strokes:
        return Image.new("L", (height, height), BACKGROUND)
    points = np.concatenate(strokes)
    if not np.isfinite(points).all():
        raise ValueError("traces hold non-finite coordinates (nan or inf)")
    lo, hi = points.min(axis=0), points.max(axis=0)
    w, h = hi - lo
    # Flat or point-like ink (a dash, a dot) keeps its size relative to a box of at least w/max_aspect.
    box_h = max(h, w / max_aspect)
    scale = inner / box_h if box_h > 0 else 1.0
    content_w = w * scale
    box_w = content_w if box_h > 0 else inner  # a lone dot sits in a square
    width = max(1, int(np.ceil(box_w)) + 2 * padding)
    # centre the ink in its box (the box is taller than flat ink, wider than a dot)
    offset = np.array([(width - content_w) / 2, padding + (inner - h * scale) / 2])

    s = supersample
    canvas = Image.new("L", (width * s, height * s), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    stroke_px = max(1, round(line_width * s))
    radius = stroke_px / 2
    for stroke in strokes:
        xy = _drop_close(((stroke - lo) * scale + offset) * s, min_step=max(1.0, radius))
        if len(xy) > 1:
            # PIL's own round joints are computed in Python per vertex; round caps on sharp turns only are
            # indistinguishable after the reduce and several times faster.
            draw.line(xy.ravel().tolist(), fill=INK, width=stroke_px)
        for x, y in xy[_round_vertices(xy)]:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=INK)
    return canvas.reduce(s) if s > 1 else canvas


def _round_vertices(xy: np.ndarray, max_cos: float = 0.9) -> np.ndarray:
    """Mask of the points that need a round cap: both ends, and vertices where the stroke turns sharply."""
    mask = np.zeros(len(xy), dtype=bool)
    mask[[0, -1]] = True
    if len(xy) > 2:
        d = np.diff(xy, axis=0)
        a, b = d[:-1], d[1:]
        cos = (a * b).sum(axis=1) / np.maximum(np.hypot(*a.T) * np.hypot(*b.T), 1e-9)
        mask[1:-1] = cos < max_cos
    return mask


def _drop_close(xy: np.ndarray, min_step: float) -> np.ndarray:
    """Drop points closer than ``min_step`` canvas pixels to their predecessor (keeps the last point)."""
    if len(xy) < 3:
        return xy
    step = np.hypot(*np.diff(xy, axis=0).T)
    keep = np.concatenate([[True], step >= min_step])
    keep[-1] = True
    # A run of tiny steps can add up; keeping every point whose cumulative travel crosses min_step handles it.
    travel = np.cumsum(np.concatenate([[0.0], step]))
    bucket = np.floor(travel / min_step)
    keep |= np.concatenate([[True], bucket[1:] != bucket[:-1]])
    return xy[keep]


def render_ink(ink, height: int = 128, **options) -> Image.Image:
    """Render an :class:`~unimumer_lib.data.inkml.Ink`."""
    return render_traces(ink.traces, height=height, **options)


def _render_job(job) -> Image.Image:
    from .inkml import read_inkml

    item, height, options = job
    traces = read_inkml(item).traces if isinstance(item, (str, os.PathLike)) else item
    return render_traces(traces, height=height, **options)


def default_workers() -> int:
    from ..core.workers import cores

    return cores()


def render_many(items: Iterable, height: int = 128, workers: int | None = None, chunksize: int = 16,
                **options) -> Iterator[Image.Image]:
    """Render many inks, trace collections or InkML paths in parallel, yielding images in input order.

    Paths are read inside the worker processes, so only file names and finished images cross processes.
    """
    from .inkml import Ink

    from ..core.workers import imap_ordered

    workers = default_workers() if workers is None else workers
    jobs = [(i.traces if isinstance(i, Ink) else i, height, options) for i in items]
    yield from imap_ordered(_render_job, jobs, workers, chunksize)


def stroke_width(height: int, stroke: float = 1.0) -> float | None:
    """The pen width in pixels for ``stroke`` times the renderer's default at ``height`` (None: the default)."""
    return None if stroke == 1.0 else stroke * max(1.0, height / 50)


def check_stroke(stroke) -> float:
    if isinstance(stroke, bool) or not isinstance(stroke, (int, float)) or not 0.25 <= stroke <= 8:
        raise ValueError(f"stroke (the pen width as a multiple of the default) must be within 0.25-8, got {stroke!r}")
    return float(stroke)
