"""Renderer properties: size, aspect, determinism, anti-aliased ink, degenerate inputs, parallel batches."""

from __future__ import annotations

import numpy as np
import pytest

from unimumer_lib.data.inkml import find_inkml, read_inkml
from unimumer_lib.data.render import BACKGROUND, MAX_ASPECT, render_ink, render_many, render_traces

BOX = [np.array([[0, 0], [300, 0], [300, 100], [0, 100], [0, 0]], np.float32)]  # 3:1 rectangle outline


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.uint8)


def test_height_mode_and_white_background():
    image = render_traces(BOX, height=128, padding=8)
    assert image.mode == "L" and image.height == 128
    a = pixels(image)
    assert a[0, 0] == a[-1, -1] == BACKGROUND
    assert (a[:4] == BACKGROUND).all() and (a[-4:] == BACKGROUND).all()  # padding stays white
    assert a.min() < 40  # dark ink


def test_aspect_ratio_preserved():
    for height, padding in ((128, 8), (64, 4), (256, 0)):
        image = render_traces(BOX, height=height, padding=padding, line_width=1)
        inner_w, inner_h = image.width - 2 * padding, height - 2 * padding
        assert abs(inner_w / inner_h - 3.0) < 2 / inner_h, (height, image.size)


def test_ink_lies_on_the_strokes():
    horizontal_mid = [np.array([[0, 0], [0, 100]], np.float32), np.array([[0, 50], [200, 50]], np.float32)]
    a = pixels(render_traces(horizontal_mid, height=100, padding=10, line_width=2))
    dark_rows = np.where((a < 128).sum(axis=1) > a.shape[1] // 2)[0]
    assert set(dark_rows) <= {48, 49, 50, 51}
    assert (a[:, 8:13] < 128).any(axis=1)[10:90].all()  # the vertical stroke at x = padding


def test_anti_aliased_edges():
    diagonal = [np.array([[0, 0], [100, 37]], np.float32)]
    a = pixels(render_traces(diagonal, height=64))
    grey = ((a > 30) & (a < 225)).sum()
    assert grey > 20


def test_deterministic_and_independent_of_coordinate_scale():
    rng = np.random.default_rng(1)
    strokes = [rng.uniform(0, 50, size=(30, 2)).astype(np.float32) for _ in range(4)]
    first, second = render_traces(strokes), render_traces([s.copy() for s in strokes])
    assert first.tobytes() == second.tobytes()
    scaled = render_traces([s * 10 + 1000 for s in strokes])
    assert scaled.size == first.size
    assert np.abs(pixels(scaled).astype(int) - pixels(first)).mean() < 2


def test_line_width_controls_ink_amount():
    thin = (pixels(render_traces(BOX, line_width=1)) < 128).sum()
    thick = (pixels(render_traces(BOX, line_width=6)) < 128).sum()
    assert thick > 3 * thin


def test_single_point_traces_are_dots():
    image = render_traces({"0": np.array([[5, 5]], np.float32)}, height=128)
    a = pixels(image)
    assert image.size == (128, 128) and a.min() < 64
    dot = np.argwhere(a < 128).mean(axis=0)
    assert abs(dot[0] - 64) < 2 and abs(dot[1] - 64) < 2
    two_dots = render_traces([np.array([[0, 0]]), np.array([[10, 0]])], height=64)
    assert two_dots.width >= 64  # flat content: box height follows width / MAX_ASPECT


def test_flat_ink_width_is_capped():
    dash = [np.array([[0, 0], [1000, 0]], np.float32)]
    image = render_traces(dash, height=128, padding=8)
    assert image.width == pytest.approx(112 * MAX_ASPECT + 16, abs=2)
    assert (pixels(image) < 128).any()


def test_empty_and_invalid_inputs():
    blank = render_traces([], height=32)
    assert blank.size == (32, 32) and (pixels(blank) == BACKGROUND).all()
    with pytest.raises(ValueError, match="height"):
        render_traces(BOX, height=2)
    with pytest.raises(ValueError, match="padding"):
        render_traces(BOX, height=32, padding=16)


def test_render_many_parallel_matches_serial(crohme_root):
    paths = find_inkml(crohme_root / "test2014")[:12]
    serial = [render_ink(read_inkml(p), height=64) for p in paths]
    parallel = list(render_many(paths, height=64, workers=2, chunksize=3))
    from_inks = list(render_many([read_inkml(p) for p in paths[:3]], height=64, workers=1))
    assert [i.tobytes() for i in parallel] == [i.tobytes() for i in serial]
    assert [i.tobytes() for i in from_inks] == [i.tobytes() for i in serial[:3]]


def test_real_expression_renders(crohme_root):
    ink = read_inkml(crohme_root / "test2014" / "18_em_0.inkml")
    image = render_ink(ink, height=128)
    a = pixels(image)
    assert image.height == 128 and 3 < image.width / image.height < 12
    assert 0.02 < (a < 128).mean() < 0.3
