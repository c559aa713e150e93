"""The drawing pad: strokes in -> ink -> image -> prediction, the same as for the ink written as InkML and read
back; undo/clear; saved drawings never overwrite a file; the widget's buttons drive the same logic."""

from __future__ import annotations

import html

import numpy as np
import pytest

from unimumer_lib import pretrain
from unimumer_lib.infer import load_for_inference, recognize
from unimumer_lib.inkml import caption_of, read_inkml, write_inkml
from unimumer_lib.render import render_ink
from unimumer_lib.synth import synthesize
from unimumer_lib.widgets import DrawingPad


@pytest.fixture(scope="module")
def base():
    return load_for_inference("tiny-base")


def write(pad, ink):
    """Feed an ink's strokes to the pad as pen events, point by point."""
    for stroke in ink.traces.values():
        pad.pen_down(*stroke[0])
        for x, y in stroke[1:]:
            pad.pen_move(x, y)
        pad.pen_up()


def test_strokes_give_the_same_prediction_as_the_rendered_inkml(base, tmp_path):
    ink = synthesize(1500, pretrain.HELD_OUT_SEED)  # a held-out synthetic expression: strokes of a real layout
    pad = DrawingPad(model=base, height=pretrain.HEIGHT, save_dir=tmp_path)
    write(pad, ink)
    assert len(pad.strokes) == len(ink.traces)
    assert all(np.array_equal(a, b) for a, b in zip(pad.ink().traces.values(), ink.traces.values()))
    path = write_inkml(tmp_path / "ref.inkml", ink)
    reference = render_ink(read_inkml(path), height=pretrain.HEIGHT)
    assert np.array_equal(np.asarray(pad.image()), np.asarray(reference))
    assert pad.recognize() == recognize([reference], model=base)[0] != ""


def test_undo_clear_and_save_never_overwrites(base, tmp_path):
    pad = DrawingPad(model=base, save_dir=tmp_path)
    with pytest.raises(ValueError, match="nothing drawn"):
        pad.image()
    write(pad, synthesize(1501, pretrain.HELD_OUT_SEED))
    n = len(pad.strokes)
    pad.pen_down(5, 5)
    pad.pen_move(9, 9)
    pad.undo()
    assert len(pad.strokes) == n
    (tmp_path / "drawing_0000.inkml").write_text("a user's file", encoding="utf-8")
    with pytest.raises(ValueError, match="no caption"):
        pad.save()
    first = pad.save("x ^ { 2 }")
    assert first.name == "drawing_0001.inkml" and (tmp_path / "drawing_0000.inkml").read_text() == "a user's file"
    saved = read_inkml(first)
    assert caption_of(saved) == "x ^ { 2 }" and len(saved.traces) == n
    assert pad.save("y").name == "drawing_0002.inkml"
    pad.clear()
    assert pad.strokes == [] and pad.prediction == ""


def test_widget_buttons_drive_the_pad(base, tmp_path):
    pad = DrawingPad(model=base, save_dir=tmp_path)
    ui = pad.widget()
    canvas, buttons, caption, shown, status = ui.children
    recognise, undo, clear, save = buttons.children
    recognise.click()
    assert "draw a formula first" in status.value
    write(pad, synthesize(1502, pretrain.HELD_OUT_SEED))
    recognise.click()
    assert caption.value == pad.prediction != "" and html.escape(caption.value) in shown.value
    caption.value = "a + b"  # the user corrects the caption, then saves
    save.click()
    assert caption_of(read_inkml(tmp_path / "drawing_0000.inkml")) == "a + b" and "saved" in status.value
    undo.click()
    clear.click()
    assert pad.strokes == [] and caption.value == ""
