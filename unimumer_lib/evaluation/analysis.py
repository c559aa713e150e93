"""Error analysis of predictions: token alignment, symbol confusions, error classes, and their figures.

Each sample's prediction is aligned to its ground truth with ``unimumer_lib.latex.align`` (token Levenshtein edit
script). Substitutions give symbol-pair confusions; insertions/deletions appear with GAP ("") on the missing side.
A wrong sample is classified as

- ``symbol``: same structure skeleton (``metrics.skeleton``), only symbol tokens substituted;
- ``structure``: same symbol sequence, only structure tokens (``{ } ^ _ \\frac`` ...) differ;
- ``length``: symbols missing or extra (insertions/deletions of symbol tokens only, no substitution);
- ``both``: anything else (symbols and structure wrong).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..latex import align
from . import metrics
from ..latex.tokens import STRUCTURE_TOKENS
from ..formats.predictions import Prediction, read_predictions

GAP = ""
CORRECT, SYMBOL, STRUCTURE, LENGTH, BOTH = "correct", "symbol", "structure", "length", "both"
ERROR_CLASSES = (SYMBOL, STRUCTURE, LENGTH, BOTH)
CONFUSION_COLUMNS = ("gt_token", "pred_token", "count")
LENGTH_BINS = (0, 5, 10, 15, 20, 30, 40, 60, 10**9)


def edit_ops(gt: Sequence[str], pred: Sequence[str]) -> list[tuple[str, str, str]]:
    """The non-equal steps of the edit script as (tag, gt_token, pred_token); GAP on the missing side.

    A replace block of unequal sides is paired position by position, the rest becoming deletes/inserts.
    """
    ops = []
    for e in align.align(gt, pred):
        if e.tag == "equal":
            continue
        src, dst = gt[e.i1:e.i2], pred[e.j1:e.j2]
        paired = min(len(src), len(dst))
        ops += [("replace", a, b) for a, b in zip(src[:paired], dst[:paired])]
        ops += [("delete", a, GAP) for a in src[paired:]]
        ops += [("insert", GAP, b) for b in dst[paired:]]
    return ops


def diff_mask(gt: Sequence[str], pred: Sequence[str]) -> tuple[list[bool], list[bool]]:
    """Per token of gt and of pred: True where it takes part in an edit (for highlighting)."""
    gt_bad, pred_bad = [False] * len(gt), [False] * len(pred)
    for e in align.align(gt, pred):
        if e.tag != "equal":
            gt_bad[e.i1:e.i2] = [True] * (e.i2 - e.i1)
            pred_bad[e.j1:e.j2] = [True] * (e.j2 - e.j1)
    return gt_bad, pred_bad


def classify(gt: Sequence[str], pred: Sequence[str]) -> str:
    """Error class of one sample (see module docstring); CORRECT when equal."""
    if list(gt) == list(pred):
        return CORRECT
    if metrics.skeleton(gt) == metrics.skeleton(pred):
        return SYMBOL
    symbols = [t for t in gt if t not in STRUCTURE_TOKENS]
    if symbols == [t for t in pred if t not in STRUCTURE_TOKENS]:
        return STRUCTURE
    ops = edit_ops(gt, pred)
    if all(tag != "replace" and (a or b) not in STRUCTURE_TOKENS for tag, a, b in ops):
        return LENGTH
    return BOTH


def samples_frame(preds: Iterable[Prediction] | Path | str, dataset: str | None = None) -> pd.DataFrame:
    """One row per prediction: img_id, dataset, gt, pred, image_path, gt_len, pred_len, distance, correct,
    error_class, ops (list of edit_ops tuples). ``dataset`` defaults to the file's main-table label
    (``families.dataset_label``: crohme_2014_pred.json -> "CROHME 2014"), else its stem."""
    if isinstance(preds, (str, Path)):
        from ..formats.families import dataset_label

        dataset = dataset or dataset_label(Path(preds).stem) or Path(preds).stem
        preds = read_predictions(preds)
    rows = []
    for p in preds:
        gt, pred = metrics.tokens(p.gt), metrics.tokens(p.pred)
        ops = edit_ops(gt, pred)
        rows.append({"img_id": p.img_id, "dataset": p.extra.get("dataset", dataset or ""), "gt": p.gt,
                     "pred": p.pred, "image_path": p.image_path, "gt_len": len(gt), "pred_len": len(pred),
                     "distance": align.distance(gt, pred), "correct": not ops,
                     "error_class": classify(gt, pred), "ops": ops})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- tables

def confusion_table(samples: pd.DataFrame, indels: bool = False) -> pd.DataFrame:
    """Counts of (gt_token, pred_token) over all samples, most frequent first. Substitutions only unless
    ``indels``, which adds deletions (pred_token GAP) and insertions (gt_token GAP)."""
    counts = Counter((a, b) for ops in samples["ops"] for tag, a, b in ops if indels or tag == "replace")
    rows = [(a, b, c) for (a, b), c in counts.most_common()]
    return pd.DataFrame(rows, columns=list(CONFUSION_COLUMNS))


def describe_confusions(table: pd.DataFrame, n: int = 5) -> str:
    """One sentence on the top ``n`` substitutions of a confusion table, from its numbers: how many involve layout
    tokens (scripts, braces, fractions, radicals: ``latex.STRUCTURE_TOKENS``) and how many are two symbols, so the
    text under the table says what this run's table shows."""
    top = confusion_records(table.head(n))
    if not top:
        return "No substitutions: every wrong prediction only adds or drops tokens."
    layout = [(a, b, c) for a, b, c in top if a in STRUCTURE_TOKENS or b in STRUCTURE_TOKENS]
    pairs = ", ".join(f"`{a} → {b}` ({c})" for a, b, c in top)
    verdict = ("mostly layout: the reader gets the glyphs but not where they sit" if len(layout) * 2 > len(top)
               else "mostly symbol for symbol: errors of reading glyphs, which look-alike error injection imitates")
    return (f"The {len(top)} most frequent substitutions here are {pairs}; {len(layout)} of them involve a layout "
            f"token, so this model's confusions are {verdict}.")


def confusion_records(table: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The confusion table as plain (gt_token, pred_token, count) tuples."""
    return [(a, b, int(c)) for a, b, c in table[list(CONFUSION_COLUMNS)].itertuples(index=False)]


def write_confusions(path: Path | str, table: pd.DataFrame) -> Path:
    """CSV with header gt_token,pred_token,count; an empty token is a GAP (insertion/deletion)."""
    import io

    from ..core.files import atomic_write_text

    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(CONFUSION_COLUMNS)
    writer.writerows(confusion_records(table))
    return atomic_write_text(path, buf.getvalue())


def read_confusions(path: Path | str) -> list[tuple[str, str, int]]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CONFUSION_COLUMNS:
            raise ValueError(f"{path}: expected header {','.join(CONFUSION_COLUMNS)}, got {reader.fieldnames}")
        return [(r["gt_token"], r["pred_token"], int(r["count"])) for r in reader]


def symbol_error_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per gt token: occurrences, times involved in an edit (substituted or deleted), error share in percent."""
    seen = Counter(t for text in samples["gt"] for t in metrics.tokens(text))
    wrong = Counter(a for ops in samples["ops"] for tag, a, _ in ops if a)
    df = pd.DataFrame({"token": list(seen), "count": list(seen.values())})
    df["errors"] = df["token"].map(wrong).fillna(0).astype(int)
    df["error_rate"] = 100.0 * df["errors"] / df["count"]
    return df.sort_values(["errors", "count"], ascending=False, ignore_index=True)


def error_class_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Number and share of wrong samples per error class."""
    wrong = samples[~samples["correct"]]
    counts = wrong["error_class"].value_counts().reindex(list(ERROR_CLASSES), fill_value=0)
    total = max(1, len(wrong))
    return pd.DataFrame({"error_class": counts.index, "n": counts.values,
                         "percent_of_errors": 100.0 * counts.values / total})


def length_table(samples: pd.DataFrame, bins: Sequence[int] = LENGTH_BINS) -> pd.DataFrame:
    """ExpRate per ground-truth length bucket (columns bucket, n, exprate)."""
    rows = metrics.exprate_by_length(samples["gt"].tolist(), samples["distance"].to_numpy(), bins)
    return pd.DataFrame(rows, columns=["bucket", "n", "exprate"])


def write_csv(path: Path | str, table: pd.DataFrame) -> Path:
    """A table (e.g. ``length_table``) as CSV, atomically."""
    from ..core.files import atomic_write_text

    return atomic_write_text(path, table.to_csv(index=False))


def confusion_matrix(table: pd.DataFrame, top: int = 15) -> pd.DataFrame:
    """Square gt x pred count matrix over the ``top`` tokens most involved in substitutions."""
    subs = table[(table.gt_token != GAP) & (table.pred_token != GAP)]
    involved = Counter()
    for a, b, c in confusion_records(subs):
        involved[a] += c
        involved[b] += c
    # Sorted case-insensitively so look-alikes (x/X, c/C) sit side by side.
    tokens = sorted((t for t, _ in involved.most_common(top)), key=lambda t: (t.lstrip("\\").lower(), t))
    matrix = pd.DataFrame(0, index=pd.Index(tokens, name="gt"), columns=pd.Index(tokens, name="pred"))
    for a, b, c in confusion_records(subs):
        if a in matrix.index and b in matrix.columns:
            matrix.loc[a, b] = c
    return matrix


def samples_with(samples: pd.DataFrame, gt_token: str | None = None, pred_token: str | None = None,
                 symbol: str | None = None) -> pd.DataFrame:
    """Samples with an edit gt_token -> pred_token (either may be None = any), or touching ``symbol`` on either side."""
    def hit(ops):
        for _, a, b in ops:
            if symbol is not None:
                if symbol in (a, b):
                    return True
            elif (gt_token is None or a == gt_token) and (pred_token is None or b == pred_token):
                return True
        return False

    return samples[samples["ops"].map(hit)]


# ---------------------------------------------------------------- figures

def token_label(token: str) -> str:
    """A token for display: GAP as ∅, dollars escaped for matplotlib."""
    return "∅" if token == GAP else token.replace("$", r"\$")


def plot_top_confusions(table: pd.DataFrame, k: int = 20, ax=None):
    """Horizontal bar chart of the k most frequent confusion pairs."""
    import matplotlib.pyplot as plt

    top = table.head(k).iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.3 * max(len(top), 3) + 1))
    ax.barh([f"{token_label(a)} → {token_label(b)}" for a, b in zip(top.gt_token, top.pred_token)], top["count"])
    ax.set_xlabel("count")
    ax.set_title(f"Top {len(top)} confusions (ground truth → prediction)")
    ax.figure.tight_layout()
    return ax.figure


def plot_confusion_heatmap(table: pd.DataFrame, top: int = 15, ax=None):
    """Heat-map of substitution counts among the most confused symbols."""
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(table, top)
    if ax is None:
        size = 0.4 * max(len(matrix), 4) + 2
        _, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(matrix.to_numpy(), cmap="Reds")
    labels = [token_label(t) for t in matrix.index]
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    for (i, j), v in np.ndenumerate(matrix.to_numpy()):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.figure.colorbar(im, ax=ax, shrink=0.7)
    ax.set_title("Symbol confusions")
    ax.figure.tight_layout()
    return ax.figure


def plot_exprate_by_length(samples: pd.DataFrame, bins: Sequence[int] = LENGTH_BINS, ax=None):
    """ExpRate per ground-truth length bucket, with the sample count per bucket."""
    import matplotlib.pyplot as plt

    table = length_table(samples, bins)
    table = table[table.n > 0]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(table.bucket, table.exprate, marker="o")
    for x, y, n in zip(table.bucket, table.exprate, table.n):
        ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xlabel("ground-truth length (tokens)")
    ax.set_ylabel("ExpRate (%)")
    ax.set_ylim(0, 105)
    ax.set_title("ExpRate vs expression length")
    ax.figure.tight_layout()
    return ax.figure


def plot_error_classes(samples: pd.DataFrame, ax=None):
    import matplotlib.pyplot as plt

    table = error_class_table(samples)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    ax.bar(table.error_class, table.n)
    ax.set_ylabel("wrong samples")
    ax.set_title("Error classes")
    ax.figure.tight_layout()
    return ax.figure


def save_figures(samples: pd.DataFrame, figures_dir: Path | str, prefix: str = "",
                 show: bool | None = None) -> dict[str, Path]:
    """Write the standard figures (PNG) and return {name: path}; each is shown inline in a notebook (or as
    ``show`` says) and closed (``files.save_figure``)."""
    from ..core.files import save_figure

    out = Path(figures_dir)
    table = confusion_table(samples)
    makers = {"top_confusions": lambda: plot_top_confusions(table),
              "confusion_heatmap": lambda: plot_confusion_heatmap(table),
              "exprate_by_length": lambda: plot_exprate_by_length(samples),
              "error_classes": lambda: plot_error_classes(samples)}
    return {name: save_figure(make(), out / f"{prefix}{name}.png", show=show) for name, make in makers.items()}


def render_images(out_dir: Path | str, split: str = "test2014", src: Path | str | None = None) -> Path | None:
    """Render a CROHME split with ``prepare.prepare_crohme`` into ``out_dir`` (it reuses images already there)
    and return its images folder; None when the renderer is not available."""
    from ..core import paths
    from ..formats.records import IMAGES_DIR

    try:
        from ..data.prepare import prepare_crohme
    except ImportError as err:
        print(f"no renderer ({err}); the inspector shows text only")
        return None
    prepare_crohme(Path(src) if src else paths.crohme_root(), Path(out_dir), splits=[split])
    return Path(out_dir) / split / IMAGES_DIR
