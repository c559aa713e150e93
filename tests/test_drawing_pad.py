"""The drawing pad: strokes in -> ink -> image -> prediction, the same as for the ink written as InkML and read
back; undo/clear; saved drawings never overwrite a file; the widget's buttons drive the same logic."""

from __future__ import annotations

import html

import numpy as np
import pytest

from unimumer_lib.training import stream
from unimumer_lib.inference.infer import load_for_inference, recognize
from unimumer_lib.data.inkml import caption_of, read_inkml, write_inkml
from unimumer_lib.data.render import render_ink
from unimumer_lib.data.synth import synthesize
from unimumer_lib.evaluation import drawing
from unimumer_lib.evaluation.drawing import DrawingPad


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
    ink = synthesize(1500, stream.HELD_OUT_SEED)  # a held-out synthetic expression: strokes of a real layout
    pad = DrawingPad(model=base, height=stream.HEIGHT, save_dir=tmp_path)
    write(pad, ink)
    assert len(pad.strokes) == len(ink.traces)
    assert all(np.array_equal(a, b) for a, b in zip(pad.ink().traces.values(), ink.traces.values()))
    path = write_inkml(tmp_path / "ref.inkml", ink)
    reference = render_ink(read_inkml(path), height=stream.HEIGHT)
    assert np.array_equal(np.asarray(pad.image()), np.asarray(reference))
    assert pad.recognize() == recognize([reference], model=base)[0] != ""


def test_undo_clear_and_save_never_overwrites(base, tmp_path):
    pad = DrawingPad(model=base, save_dir=tmp_path)
    with pytest.raises(ValueError, match="nothing drawn"):
        pad.image()
    write(pad, synthesize(1501, stream.HELD_OUT_SEED))
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
    canvas, buttons, caption, confirm, shown, status = ui.children
    recognise, undo, clear, save = buttons.children
    recognise.click()
    assert "draw a formula first" in status.value
    write(pad, synthesize(1502, stream.HELD_OUT_SEED))
    recognise.click()
    assert caption.value == pad.prediction != "" and html.escape(caption.value) in shown.value
    assert not confirm.value and "model's reading" in status.value  # pre-filled, not yet a ground truth
    save.click()  # the prediction as it stands is not saved as the truth
    assert "not saved" in status.value and not list(tmp_path.glob("*.inkml"))
    confirm.value = True  # accepted as it is
    save.click()
    assert caption_of(read_inkml(tmp_path / "drawing_0000.inkml")) == pad.prediction and "saved" in status.value
    recognise.click()
    assert not confirm.value
    caption.value = "a + b"  # the user corrects the caption: that is a check
    assert confirm.value
    save.click()
    assert caption_of(read_inkml(tmp_path / "drawing_0001.inkml")) == "a + b"
    undo.click()
    clear.click()
    assert pad.strokes == [] and caption.value == "" and not confirm.value


def test_a_prediction_saved_without_a_caption_is_marked_unconfirmed(base, tmp_path):
    from unimumer_lib.evaluation.drawing import UNCONFIRMED

    pad = DrawingPad(model=base, save_dir=tmp_path)
    write(pad, synthesize(1503, stream.HELD_OUT_SEED))
    pad.recognize()
    assert UNCONFIRMED in read_inkml(pad.save()).annotations
    assert UNCONFIRMED not in read_inkml(pad.save("x")).annotations


@pytest.mark.parametrize("stroke", [[], [(1.0, float("nan")), (2.0, 3.0)], [(1e12, 5.0), (2.0, 3.0)]])
def test_empty_and_broken_drawings_are_not_saved(tmp_path, stroke):
    pad = DrawingPad(model="tiny-base", save_dir=tmp_path)
    pad.strokes = [list(stroke)] if stroke else []
    with pytest.raises(ValueError, match="nothing drawn|not finite"):
        pad.save("x")
    assert not list(tmp_path.glob("*.inkml"))


def test_two_pads_saving_into_one_folder_keep_every_drawing(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    pads = [DrawingPad(model="tiny-base", save_dir=tmp_path) for _ in range(2)]
    for pad in pads:
        pad.strokes = [[(0.0, 0.0), (10.0, 5.0)]]
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda i: pads[i % 2].save(f"x ^ {i}"), range(200)))
    assert len(set(paths)) == 200 == len(list(tmp_path.glob("drawing_*.inkml")))
    assert len({caption_of(read_inkml(p)) for p in paths}) == 200  # each save kept its own caption


def test_save_into_a_file_and_a_missing_model_are_shown_not_raised(tmp_path):
    (tmp_path / "taken").write_text("a file")
    pad = DrawingPad(model=str(tmp_path / "no-model"), save_dir=tmp_path / "taken")
    ui = pad.widget()
    canvas, buttons, caption, confirm, shown, status = ui.children
    recognise, undo, clear, save = buttons.children
    pad.strokes = [[(0.0, 0.0), (10.0, 5.0)]]
    recognise.click()
    assert "no-model" in status.value
    caption.value = "x"
    save.click()
    assert "taken" in status.value and "saved" not in status.value


def test_the_static_copy_shows_the_strokes_and_the_reading_without_a_kernel():
    """Issue 32 item 3: a saved notebook holds no widget view; the pad's static copy draws its strokes as SVG,
    its buttons greyed out, and the last reading (escaped)."""
    pad = drawing.DrawingPad(model="tiny-base")
    empty = pad.static_html()
    assert "<polyline" not in empty and empty.count("<button disabled>") == len(drawing.PAD_BUTTONS)
    pad.pen_down(10, 20)
    pad.pen_move(30, 40)
    pad.pen_up(50, 45)
    pad.prediction = "x < y"
    shown = pad.static_html()
    assert shown.count("<polyline") == 1 and 'points="10.0,20.0 30.0,40.0 50.0,45.0"' in shown
    assert "<code>x &lt; y</code>" in shown
