"""A drawing pad (ipycanvas) to write a formula with the mouse or a pen and see it read by a model (``draw``):
Recognise puts the reading into an editable caption box, typeset below it; Save writes the strokes as InkML with
the caption a person checked (or, unchecked, annotated as the model's reading: ``UNCONFIRMED``). Its static copy
(``DrawingPad.static_html``) keeps strokes, buttons and the last reading in a notebook saved without a kernel.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..core import paths
from .widgets import math_html

DRAWINGS_DIR = "drawings"  # default save folder, under the runs folder


UNCONFIRMED = "truthUnconfirmed"  # InkML annotation of a drawing saved with the model's prediction as its truth
MAX_COORDINATE = 1e6  # canvas pixels: a stroke beyond this is not a drawing


PAD_BUTTONS = ("Recognise", "Undo", "Clear", "Save InkML")


class DrawingPad:
    """Draw a formula with the mouse or a pen, see it recognised, save it as InkML with its caption.

    The logic works without a browser: ``pen_down``/``pen_move``/``pen_up`` collect strokes (canvas pixels,
    y downwards, as InkML), ``ink()`` makes an ``inkml.Ink``, ``image()`` renders it with the renderer every
    InkML file goes through (``render.render_ink``), ``recognize()`` reads it with ``model`` (the shipped
    ``tiny-base`` on CPU, a trained ``final/``, a hub id, or a loaded ``(model, processor)``), ``save()`` writes
    ``<save_dir>/drawing_NNNN.inkml`` with the caption as its truth, never over a file (the bare prediction is
    marked unconfirmed). ``widget()`` puts it on an ipycanvas canvas with Recognise / Undo / Clear / Save buttons;
    Recognise fills the caption with the prediction, and Save writes only once a person has corrected it or ticked
    "caption is right".
    """

    def __init__(self, model="tiny-base", height: int = 64, save_dir: Path | str | None = None,
                 canvas_size: tuple[int, int] = (900, 260), line_width: float = 3.0):
        self.model, self.height, self.canvas_size, self.line_width = model, height, canvas_size, line_width
        self.save_dir = Path(save_dir) if save_dir else paths.runs_dir() / DRAWINGS_DIR
        self.strokes: list[list[tuple[float, float]]] = []
        self.prediction = ""
        self._pen: list | None = None
        self._loaded = None
        self._ui = None

    def pen_down(self, x: float, y: float) -> None:
        self._pen = [(float(x), float(y))]
        self.strokes.append(self._pen)

    def pen_move(self, x: float, y: float) -> None:
        if self._pen is not None and self._pen[-1] != (x, y):
            self._pen.append((float(x), float(y)))

    def pen_up(self, x: float | None = None, y: float | None = None) -> None:
        if self._pen is not None and x is not None:
            self.pen_move(x, y)
        self._pen = None

    def undo(self) -> None:
        if self.strokes:
            self.strokes.pop()
        self._pen = None

    def clear(self) -> None:
        self.strokes.clear()
        self._pen = None
        self.prediction = ""

    def ink(self, id: str = "drawing", caption: str | None = None):
        """The strokes as an ``Ink`` (one trace per stroke); ``caption`` becomes its truth annotation."""
        import numpy as np

        from ..data.inkml import Ink

        traces = {str(i): np.asarray(s, dtype=np.float32).reshape(-1, 2) for i, s in enumerate(self.strokes) if s}
        return Ink(id=id, traces=traces, latex=f"${caption}$" if caption else None,
                   annotations={"writer": "unimumer drawing pad"})

    def image(self):
        from ..data.render import render_ink

        if not self.strokes:
            raise ValueError("nothing drawn yet")
        return render_ink(self.ink(), height=self.height)

    def recognize(self) -> str:
        from ..inference.infer import load_for_inference, recognize

        if self._loaded is None:
            self._loaded = self.model if isinstance(self.model, tuple) else load_for_inference(self.model)
        self.prediction = recognize([self.image()], model=self._loaded)[0]
        return self.prediction

    def save(self, caption: str | None = None) -> Path:
        """Write the drawing as ``drawing_NNNN.inkml`` (the next free number, claimed atomically so that two pads
        saving into one folder never take the same name) with ``caption`` as its truth. Without ``caption`` the
        model's prediction is written, annotated as unconfirmed (``UNCONFIRMED``): a reading, not a ground
        truth. Strokes that are not finite or lie far off any canvas are refused. Returns the path."""
        import os

        import numpy as np

        from ..data.inkml import write_inkml

        given = caption is not None
        caption = " ".join((caption if given else self.prediction).split())
        if not caption:
            raise ValueError("no caption: recognise the drawing first or type its LaTeX")
        if not self.strokes:
            raise ValueError("nothing drawn yet: an empty drawing is not saved")
        points = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in self.strokes if s])
        if not np.isfinite(points).all() or np.abs(points).max() > MAX_COORDINATE:
            raise ValueError(f"the strokes hold coordinates that are not finite or beyond {MAX_COORDINATE:g} "
                             f"pixels: not saved")
        self.save_dir.mkdir(parents=True, exist_ok=True)
        ink = self.ink("drawing", caption)
        if not given:
            ink.annotations[UNCONFIRMED] = "the model's prediction, not checked by a person"
        for i in range(len(list(self.save_dir.glob("drawing_*.inkml"))), 10**6):
            path = self.save_dir / f"drawing_{i:04d}.inkml"
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))  # the name is ours now
            except FileExistsError:
                continue
            ink.id = path.stem
            return write_inkml(path, ink)
        raise OSError(f"{self.save_dir}: no free drawing_NNNN.inkml name")

    def static_html(self) -> str:
        """The pad as a saved notebook can show it without a kernel (widget views are not saved): the canvas with
        the strokes drawn so far (SVG), the buttons greyed out, the last prediction, and how to get the live pad."""
        width, height = self.canvas_size
        lines = "".join(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in stroke)}"/>'
                        for stroke in self.strokes if len(stroke) > 1)
        buttons = "".join(f"<button disabled>{label}</button> " for label in PAD_BUTTONS)
        read = f"<br>read: <code>{html.escape(self.prediction)}</code>" if self.prediction else ""
        return (f'<p><i>Drawing pad, as saved</i> ({html.escape(str(self.model))}): run this cell in JupyterLab to '
                f'draw with the mouse or a pen.</p><svg width="{width}" height="{height}" '
                f'style="border:1px solid #999;background:#fff"><g fill="none" stroke="black" '
                f'stroke-width="{self.line_width}" stroke-linecap="round">{lines}</g></svg><br>{buttons}{read}')

    def _recognise_into(self, caption, confirm, shown, status, filling: list) -> None:
        """Run: read the strokes and put the reading into the caption box (unchecked) and typeset below it."""
        if not self.strokes:
            status.value = "<i>draw a formula first</i>"
            return
        status.value = "<i>recognising…</i>"
        try:
            prediction = self.recognize()
        except (ValueError, OSError) as err:  # a missing model, an unreadable checkpoint
            status.value = f"<i>{html.escape(str(err))}</i>"
            return
        filling.append(True)
        caption.value, confirm.value = prediction, False
        filling.clear()
        tokens = prediction.split()
        shown.value = math_html(tokens, [False] * len(tokens), "pred") + "<br><code>" + html.escape(
            prediction) + "</code>"
        status.value = "<i>the caption is the model's reading: correct it or tick the box, then Save</i>"

    def _save_message(self, caption: str, confirmed: bool) -> str:
        """Save: the status line after saving the drawing with ``caption``, or why it was not saved."""
        if not confirmed:
            return ("<i>not saved: the caption is the model's unchecked reading; correct it or tick "
                    "'caption is right' first</i>")
        try:
            return f"saved {html.escape(str(self.save(caption)))}"
        except (ValueError, OSError) as err:  # no caption, bad strokes, a save_dir that is a file, a full disk
            return f"<i>{html.escape(str(err))}</i>"

    def widget(self):
        """The pad in a notebook: canvas, buttons, the caption (editable) and the prediction typeset."""
        import ipywidgets as w
        from ipycanvas import Canvas, hold_canvas

        canvas = Canvas(width=self.canvas_size[0], height=self.canvas_size[1],
                        layout=w.Layout(border="1px solid #999"))
        canvas.line_width, canvas.line_cap, canvas.stroke_style = self.line_width, "round", "black"
        caption = w.Text(description="LaTeX", placeholder="recognised or typed caption",
                         layout=w.Layout(width=f"{self.canvas_size[0]}px"))
        confirm = w.Checkbox(description="caption is right (checked by me)", value=False, indent=False)
        shown, status = w.HTMLMath(), w.HTML()
        filling = []  # set while the pad itself fills the caption (a prediction is not a person's check)

        def edited(change):
            if not filling and change["new"] != change["old"]:
                confirm.value = True  # typed or corrected by the user

        def redraw():
            with hold_canvas():
                canvas.clear()
                for stroke in self.strokes:
                    if len(stroke) > 1:
                        canvas.stroke_lines(stroke)

        def move(x, y):
            if self._pen is not None:
                last = self._pen[-1]
                self.pen_move(x, y)
                canvas.stroke_line(last[0], last[1], x, y)

        def run(_=None):
            self._recognise_into(caption, confirm, shown, status, filling)

        def undo(_):
            self.undo()
            redraw()

        def clear(_):
            self.clear()
            filling.append(True)
            caption.value, confirm.value = "", False
            filling.clear()
            shown.value = status.value = ""
            redraw()

        def save(_):
            status.value = self._save_message(caption.value, confirm.value)

        caption.observe(edited, names="value")

        canvas.on_mouse_down(lambda x, y: self.pen_down(x, y))
        canvas.on_mouse_move(move)
        canvas.on_mouse_up(lambda x, y: self.pen_up(x, y))
        canvas.on_mouse_out(lambda x, y: self.pen_up())
        buttons = [w.Button(description=label) for label in PAD_BUTTONS]
        for button, handler in zip(buttons, (run, undo, clear, save)):
            button.on_click(handler)
        self._ui = w.VBox([canvas, w.HBox(buttons), caption, confirm, shown, status])
        return self._ui


def draw(model="tiny-base", **options) -> DrawingPad:
    """Show a drawing pad in the notebook (see ``DrawingPad``) and return it."""
    from IPython.display import display

    pad = DrawingPad(model, **options)
    display(pad.widget())
    return pad
