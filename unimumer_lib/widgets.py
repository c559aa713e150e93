"""Interactive inspection (ipywidgets): the confusion-symbol inspector.

Pick a confusion pair (ranked by count) or type a symbol, filter by dataset, error class and ground-truth
length, and page through a gallery of the samples: image (``<images_dir>/<img_id>.png``, text only when
missing), ground truth and prediction with the differing tokens highlighted.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from . import analysis, metrics
from .records import IMAGE_SUFFIX

ALL = "all"
ALL_ERRORS = "(all wrong samples)"
_MARK = {"gt": "background:#fdd", "pred": "background:#dfd"}


def highlight(tokens: list[str], bad: list[bool], side: str) -> str:
    """Tokens as HTML, the ones in ``bad`` positions marked."""
    parts = []
    for tok, flag in zip(tokens, bad):
        text = html.escape(tok)
        parts.append(f'<span style="{_MARK[side]};font-weight:bold">{text}</span>' if flag else text)
    return " ".join(parts) or "<i>(empty)</i>"


def image_html(img_id: str, images_dir: Path | None, height: int = 80) -> str:
    """An inline <img> of ``images_dir/<img_id>.png``, or a text placeholder."""
    path = Path(images_dir) / f"{img_id}{IMAGE_SUFFIX}" if images_dir else None
    if path is None or not path.is_file():
        return '<div style="color:#888;font-style:italic">(no image)</div>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" style="max-height:{height}px;max-width:100%">'


def card_html(row, images_dir: Path | None) -> str:
    """One gallery card: id, class, distance, image, highlighted GT and prediction."""
    gt, pred = metrics.tokens(row.gt), metrics.tokens(row.pred)
    gt_bad, pred_bad = analysis.diff_mask(gt, pred)
    return (
        '<div style="border:1px solid #ccc;padding:6px;margin:4px;font-family:monospace">'
        f"<b>{html.escape(row.img_id)}</b> · {html.escape(str(row.dataset))} · {row.error_class} · d={row.distance}"
        f"{image_html(row.img_id, images_dir)}"
        f"<div>GT&nbsp;&nbsp;: {highlight(gt, gt_bad, 'gt')}</div>"
        f"<div>Pred: {highlight(pred, pred_bad, 'pred')}</div></div>"
    )


class ConfusionInspector:
    """The inspector; ``.widget`` is the ipywidgets box to display.

    ``samples`` is ``analysis.samples_frame`` output. Controls: ``pairs`` (ranked confusion pairs),
    ``symbol`` (overrides the pair when non-empty), ``dataset``, ``error_class``, ``length``, ``prev``/``next``.
    """

    def __init__(self, samples: pd.DataFrame, images_dir: Path | str | None = None, page_size: int = 6,
                 top_pairs: int = 100):
        import ipywidgets as w

        self.samples = samples
        self.images_dir = Path(images_dir) if images_dir else None
        self.page_size = page_size
        self.page = 0
        table = analysis.confusion_table(samples, indels=True).head(top_pairs)
        options = [(ALL_ERRORS, None)] + [
            (f"{analysis.token_label(a)} → {analysis.token_label(b)}  ({c})", (a, b))
            for a, b, c in analysis.confusion_records(table)]
        self.pairs = w.Select(options=options, value=None, rows=12, description="pair")
        self.symbol = w.Text(value="", placeholder=r"e.g. \times", description="symbol")
        datasets = sorted(set(samples["dataset"].astype(str)))
        self.dataset = w.Dropdown(options=[ALL] + datasets, value=ALL, description="dataset")
        self.error_class = w.Dropdown(options=[ALL, *analysis.ERROR_CLASSES], value=ALL, description="class")
        longest = int(samples["gt_len"].max()) if len(samples) else 1
        self.length = w.IntRangeSlider(value=(0, longest), min=0, max=max(longest, 1), description="gt length")
        self.prev = w.Button(description="◀ prev")
        self.next = w.Button(description="next ▶")
        self.status = w.Label()
        self.gallery = w.HTML()
        for control in (self.pairs, self.symbol, self.dataset, self.error_class, self.length):
            control.observe(self._on_filter, names="value")
        self.prev.on_click(lambda _: self.turn(-1))
        self.next.on_click(lambda _: self.turn(+1))
        filters = w.VBox([self.symbol, self.dataset, self.error_class, self.length])
        self.widget = w.VBox([w.HBox([self.pairs, filters]), w.HBox([self.prev, self.next, self.status]),
                              self.gallery])
        self.refresh()

    def selection(self) -> pd.DataFrame:
        """The wrong samples matching the current pair/symbol and filters."""
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

    def refresh(self) -> None:
        selected = self.selection()
        start = self.page * self.page_size
        shown = selected.iloc[start:start + self.page_size]
        self.status.value = f"{len(selected)} samples · page {self.page + 1}/{self.pages(selected)}"
        cards = "".join(card_html(row, self.images_dir) for row in shown.itertuples(index=False))
        self.gallery.value = cards or "<i>no sample matches</i>"


def inspector(predictions, images_dir: Path | str | None = None, page_size: int = 6) -> ConfusionInspector:
    """Build the inspector from a prediction file, a list of Prediction, or a samples frame."""
    samples = predictions if isinstance(predictions, pd.DataFrame) else analysis.samples_frame(predictions)
    return ConfusionInspector(samples, images_dir, page_size)
