"""Interactive widgets (ipywidgets): the confusion-symbol inspector (the drawing pad is ``drawing``).

Pick a confusion pair (ranked by count) or type a symbol, filter by dataset, error class and ground-truth
length, and page through a gallery of cards. Each card shows the image, the ground truth and the prediction
rendered as math (``ipywidgets.HTMLMath``, typeset by the notebook's MathJax; differing symbols coloured) and
as tokens with the differing ones highlighted, and a "label noise" toggle: flagged ids (a wrong reference, e.g.
a prediction that is right where the ground truth is not) are written to ``label_noise.csv`` in the run folder.

With ``baseline`` (system A's predictions on the same test set) the inspector compares two systems: a
``change`` filter shows the expressions B fixed, broke, or both got wrong (``compare.STATUSES``), and each card
adds A's prediction. Under "fixed by B" the pair and symbol filters match A's errors (the confusions B fixed);
otherwise B's.

Images: the record of the same id in ``data`` (any ``records.load_records`` layout: a prepared or CoMER folder,
an official prompt JSON), else ``<images_dir>/<img_id>`` (png/jpg/bmp), else the prediction's ``image_path``
(absolute, or relative to ``root``); text only when none exists.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

import pandas as pd

from . import analysis, metrics
from ..core import paths
from ..latex.tokens import BIG_OPERATORS, STRUCTURE_TOKENS, braces_balanced
from ..core.files import atomic_write_text
from ..formats.records import find_image, load_records, resolve_image

ALL = "all"
ALL_ERRORS = "(all wrong samples)"
CHANGE_FILTERS = {"fixed by B": "fixed", "broken by B": "broken", "both wrong": "both wrong"}  # label -> status
LABEL_NOISE_FILE = "label_noise.csv"
LABEL_NOISE_COLUMNS = ("img_id", "dataset", "gt", "pred")
_MARK = {"gt": "background:#fdd", "pred": "background:#dfd"}
_MATH_COLOR = {"gt": "red", "pred": "green"}
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp"}


def highlight(tokens: list[str], bad: list[bool], side: str) -> str:
    """Tokens as HTML, the ones in ``bad`` positions marked."""
    parts = []
    for tok, flag in zip(tokens, bad):
        text = html.escape(tok)
        parts.append(f'<span style="{_MARK[side]};font-weight:bold">{text}</span>' if flag else text)
    return " ".join(parts) or "<i>(empty)</i>"


def _colourable(token: str) -> bool:
    # Structure tokens and big operators cannot sit inside a colour group without changing the layout.
    return token not in STRUCTURE_TOKENS and token not in BIG_OPERATORS and not token.startswith("{")


def math_source(tokens: list[str], bad: list[bool], side: str) -> str:
    """The caption as LaTeX with the differing symbols in ``{\\color{..} tok}`` groups."""
    return " ".join(f"{{\\color{{{_MATH_COLOR[side]}}} {tok}}}" if flag and _colourable(tok) else tok
                    for tok, flag in zip(tokens, bad))


def math_html(tokens: list[str], bad: list[bool], side: str) -> str:
    """Inline math (``\\( .. \\)``, HTML-escaped) for HTMLMath, or a note when it cannot be typeset."""
    if not tokens:
        return "<i>(empty)</i>"
    if not braces_balanced(" ".join(tokens)):
        return "<i>(braces do not balance: not rendered)</i>"
    return f"\\({html.escape(math_source(tokens, bad, side))}\\)"


def image_file(img_id: str, images_dir: Path | None = None, image_path: str = "", root: Path | None = None):
    """The image of a sample: ``images_dir/<img_id>.*``, else ``image_path`` (absolute or under ``root``)."""
    if images_dir is not None:
        hit = find_image([Path(images_dir)], img_id)
        if hit is not None:
            return hit
    return resolve_image(image_path, root, absolute_in_root=False) if image_path else None


def image_html(path: Path | None, height: int = 80) -> str:
    """An inline <img> of ``path`` (png/jpg/bmp), or a text placeholder."""
    if path is None or not Path(path).is_file():
        return '<div style="color:#888;font-style:italic">(no image)</div>'
    mime = _MIME.get(Path(path).suffix.lower(), "image/png")
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:{mime};base64,{data}" style="max-height:{height}px;max-width:100%">'


def card_html(row, image: Path | None) -> str:
    """One gallery card: id, class, distance, image, GT and prediction as math and as highlighted tokens."""
    gt, pred = metrics.tokens(row.gt), metrics.tokens(row.pred)
    gt_bad, pred_bad = analysis.diff_mask(gt, pred)
    return (
        '<div style="border:1px solid #ccc;padding:6px;margin:4px">'
        f"<b>{html.escape(row.img_id)}</b> · {html.escape(str(row.dataset))} · {row.error_class} · d={row.distance}"
        f"{image_html(image)}"
        f'<div style="font-size:130%">GT: {math_html(gt, gt_bad, "gt")}</div>'
        f'<div style="font-size:130%">Pred: {math_html(pred, pred_bad, "pred")}</div>'
        f'<div style="font-family:monospace">GT&nbsp;&nbsp;: {highlight(gt, gt_bad, "gt")}</div>'
        f'<div style="font-family:monospace">Pred: {highlight(pred, pred_bad, "pred")}</div>'
        f"{baseline_html(row, gt)}</div>"
    )


def baseline_html(row, gt: list[str]) -> str:
    """System A's prediction on a card of a two-system inspector (its differences from the ground truth
    highlighted), or "" without a baseline."""
    pred_a = getattr(row, "pred_a", None)
    if pred_a is None:
        return ""
    tokens_a = metrics.tokens(pred_a)
    _, bad = analysis.diff_mask(gt, tokens_a)
    return (f'<div style="font-family:monospace;color:#555">A ({html.escape(str(row.change))}): '
            f'{highlight(tokens_a, bad, "pred")}</div>')


def read_label_noise(path: Path | str) -> dict[str, dict]:
    """Flagged samples of a ``label_noise.csv``: {img_id: row}; a wrong header raises naming the file."""
    path = Path(path)
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != LABEL_NOISE_COLUMNS:
            raise ValueError(f"{path}: expected columns {LABEL_NOISE_COLUMNS}, got {reader.fieldnames}")
        return {r["img_id"]: r for r in reader}


def write_label_noise(path: Path | str, flagged: dict[str, dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LABEL_NOISE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flagged[k] for k in sorted(flagged))
    return atomic_write_text(path, buf.getvalue())


class ConfusionInspector:
    """The inspector; ``.widget`` is the ipywidgets box to display.

    ``samples`` is ``analysis.samples_frame`` output. Controls: ``pairs`` (ranked confusion pairs),
    ``symbol`` (overrides the pair when non-empty), ``dataset``, ``error_class``, ``length``, ``prev``/``next``;
    ``gallery`` holds one card per shown sample (``.html`` is their HTML), each with a label-noise toggle
    (``toggles``: {img_id: ToggleButton}) that rewrites ``flags_path``.
    """

    def __init__(self, samples: pd.DataFrame, images_dir: Path | str | None = None, page_size: int = 6,
                 top_pairs: int = 100, root: Path | str | None = None, flags_path: Path | str | None = None,
                 data: Path | str | None = None):
        import ipywidgets as w

        self.samples = samples
        self.images_dir = Path(images_dir) if images_dir else None
        self.root = Path(root) if root else None
        self.record_images = {r.id: Path(r.image_path) for r in (load_records(data, root) if data else [])
                              if r.image_path}
        self.flags_path = Path(flags_path) if flags_path else paths.runs_dir() / LABEL_NOISE_FILE
        self.flagged = read_label_noise(self.flags_path)
        self.page_size = page_size
        self.page = 0
        self.toggles: dict = {}
        table = analysis.confusion_records(analysis.confusion_table(samples, indels=True).head(top_pairs))
        gap = analysis.GAP
        # substitutions first, as ranked above the widget; then the model's deletions and insertions, named so
        options = [(ALL_ERRORS, None)] + [
            (f"{analysis.token_label(a)} → {analysis.token_label(b)}  ({c})", (a, b))
            for a, b, c in table if gap not in (a, b)] + [
            (f"{'missing' if b == gap else 'extra'}: {analysis.token_label(a if b == gap else b)}  ({c})", (a, b))
            for a, b, c in table if gap in (a, b)]
        self.pairs = w.Select(options=options, value=None, rows=12, description="pair")
        self.symbol = w.Text(value="", placeholder=r"e.g. \times", description="symbol")
        datasets = sorted(set(samples["dataset"].astype(str)))
        self.dataset = w.Dropdown(options=[ALL] + datasets, value=ALL, description="dataset")
        self.error_class = w.Dropdown(options=[ALL, *analysis.ERROR_CLASSES], value=ALL, description="class")
        self.change = (w.Dropdown(options=[ALL, *CHANGE_FILTERS], value=ALL, description="B vs A")
                       if "change" in samples.columns else None)
        longest = int(samples["gt_len"].max()) if len(samples) else 1
        self.length = w.IntRangeSlider(value=(0, longest), min=0, max=max(longest, 1), description="gt length")
        self.prev = w.Button(description="◀ prev")
        self.next = w.Button(description="next ▶")
        self.status = w.Label()
        self.gallery = w.VBox()
        controls = [self.pairs, self.symbol, self.dataset, self.error_class, self.length]
        for control in controls + ([self.change] if self.change is not None else []):
            control.observe(self._on_filter, names="value")
        self.prev.on_click(lambda _: self.turn(-1))
        self.next.on_click(lambda _: self.turn(+1))
        filters = w.VBox([self.symbol, self.dataset, self.error_class, self.length]
                         + ([self.change] if self.change is not None else []))
        self.widget = w.VBox([w.HBox([self.pairs, filters]), w.HBox([self.prev, self.next, self.status]),
                              self.gallery])
        self.refresh()

    @property
    def html(self) -> str:
        """The HTML of the cards on the current page."""
        return "".join((card.children[0] if hasattr(card, "children") else card).value
                       for card in self.gallery.children)

    def selection(self) -> pd.DataFrame:
        """The wrong samples (with a baseline and a change filter: the samples of that change) matching the current
        pair/symbol and filters."""
        if self.change is not None and self.change.value != ALL:
            status = CHANGE_FILTERS[self.change.value]
            df = self.samples[self.samples["change"] == status]
            if status == "fixed":  # B is right here: the confusions to match are A's, the ones B fixed
                df = df.assign(ops=df["ops_a"])
        else:
            df = self.samples[~self.samples["correct"]]
        if self.symbol.value.strip():
            df = analysis.samples_with(df, symbol=self.symbol.value.strip())
        elif self.pairs.value is not None:
            df = analysis.samples_with(df, *self.pairs.value)
        if self.dataset.value != ALL:
            df = df[df["dataset"].astype(str) == self.dataset.value]
        if self.error_class.value != ALL:
            df = df[df["error_class"] == self.error_class.value]
        lo, hi = self.length.value
        return df[(df["gt_len"] >= lo) & (df["gt_len"] <= hi)]

    def pages(self, selected: pd.DataFrame | None = None) -> int:
        n = len(self.selection() if selected is None else selected)
        return max(1, -(-n // self.page_size))

    def turn(self, step: int) -> None:
        self.page = min(max(self.page + step, 0), self.pages() - 1)
        self.refresh()

    def _on_filter(self, _change) -> None:
        self.page = 0
        self.refresh()

    def flag(self, row, noisy: bool) -> None:
        """Record (or clear) ``row`` as label noise and rewrite ``flags_path``."""
        if noisy:
            self.flagged[row.img_id] = {"img_id": row.img_id, "dataset": str(row.dataset), "gt": row.gt,
                                        "pred": row.pred}
        else:
            self.flagged.pop(row.img_id, None)
        write_label_noise(self.flags_path, self.flagged)

    def _card(self, row):
        import ipywidgets as w

        image = self.record_images.get(row.img_id) or image_file(row.img_id, self.images_dir,
                                                                 getattr(row, "image_path", "") or "", self.root)
        flagged = row.img_id in self.flagged
        toggle = w.ToggleButton(value=flagged, description="label noise", icon="flag",
                                button_style="danger" if flagged else "", layout=w.Layout(flex="0 0 130px"),
                                tooltip="the ground truth is wrong (recorded in " + self.flags_path.name + ")")

        def on_toggle(change):
            self.flag(row, change["new"])
            toggle.button_style = "danger" if change["new"] else ""

        toggle.observe(on_toggle, names="value")
        self.toggles[row.img_id] = toggle
        return w.HBox([w.HTMLMath(card_html(row, image), layout=w.Layout(flex="1 1 auto")), toggle])

    def refresh(self) -> None:
        import ipywidgets as w

        selected = self.selection()
        start = self.page * self.page_size
        shown = selected.iloc[start:start + self.page_size]
        self.status.value = f"{len(selected)} samples · page {self.page + 1}/{self.pages(selected)}"
        self.toggles = {}
        cards = [self._card(row) for row in shown.itertuples(index=False)]
        self.gallery.children = cards or [w.HTML("<i>no sample matches</i>")]


def inspector(predictions, images_dir: Path | str | None = None, page_size: int = 6, root: Path | str | None = None,
              flags_path: Path | str | None = None, data: Path | str | None = None,
              baseline=None) -> ConfusionInspector:
    """Build the inspector from a prediction file, a list of Prediction, or a samples frame (see the class);
    ``baseline`` (a prediction file or list of system A on the same test set) adds the fixed/broken filter."""
    samples = predictions if isinstance(predictions, pd.DataFrame) else analysis.samples_frame(predictions)
    if baseline is not None:
        from .compare import mark_changes
        from ..formats.predictions import read_predictions

        samples = mark_changes(samples, read_predictions(baseline) if isinstance(baseline, (str, Path))
                               else baseline)
    return ConfusionInspector(samples, images_dir, page_size, root=root, flags_path=flags_path, data=data)
