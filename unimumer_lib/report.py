"""Result tables: metrics of prediction files (the ``unimumer eval`` backend) and the paper's main table.

``evaluate_files`` gives one row per file with ``metrics.RESULT_KEYS`` (rates in percent, unrounded);
``format_results`` prints them as table / csv / md / latex / json. ``main_table`` lays results out as in the
paper (datasets as columns) next to the published rows of ``resources/published.csv``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Mapping

import pandas as pd

from . import metrics
from .predictions import Prediction, read_predictions

FORMATS = ("table", "csv", "md", "latex", "json")
HEADERS = {"file": "File", "n": "N", "exprate": "ExpRate", "le1": "≤1", "le2": "≤2", "le3": "≤3",
           "edit_score": "Edit score", "bleu4": "BLEU-4", "cer": "CER", "structure_rate": "Structure rate"}
DATASETS = ("CROHME 2014", "CROHME 2016", "CROHME 2019", "HME100K")
MAIN_METRICS = ("exprate", "le1", "le2")
PUBLISHED_CSV = "published.csv"


def score_predictions(preds: list[Prediction], normalize: bool | str | None = False) -> dict:
    """Metrics of a list of predictions; ``normalize`` names a ``normalize.STYLES`` style (True: ``crohme``,
    ``latex.normalize``) applied to gt and pred first; ``unimumer`` also drops the items that protocol removes."""
    if normalize:
        from .normalize import normalize_predictions
        preds, _ = normalize_predictions(preds, "crohme" if normalize is True else normalize)
    return metrics.score([p.gt for p in preds], [p.pred for p in preds])


def evaluate_files(paths: list[Path], normalize: bool | str | None = False, by_dataset: bool = False) -> list[dict]:
    """One row per prediction file: ``{"file", **metrics.score}``. With ``by_dataset``, files whose records carry
    a ``dataset`` key also get one row per dataset, ``file`` being ``PATH#DATASET``."""
    rows = []
    for path in paths:
        preds = read_predictions(path)
        rows.append({"file": str(path), **score_predictions(preds, normalize)})
        groups = {p.extra.get("dataset") for p in preds} - {None}
        if by_dataset and groups:
            for group in sorted(groups, key=str):
                subset = [p for p in preds if p.extra.get("dataset") == group]
                rows.append({"file": f"{path}#{group}", **score_predictions(subset, normalize)})
    return rows


def results_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["file", *metrics.RESULT_KEYS])


def format_results(rows: list[dict], fmt: str = "table") -> str:
    """Render result rows: ``json`` is the unrounded list of dicts; the others round to 2 decimals (4 in csv)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if fmt == "json":
        return json.dumps([{k: row[k] for k in ("file", *metrics.RESULT_KEYS)} for row in rows], indent=1)
    df = results_frame(rows)
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.4f")
    shown = df.rename(columns=HEADERS)
    if fmt == "table":
        return shown.to_string(index=False, float_format=lambda v: f"{v:.2f}")
    if fmt == "latex":
        return _latex_symbols(shown.to_latex(index=False, float_format="%.2f", escape=True))
    return markdown(shown, "{:.2f}")


def _latex_symbols(text: str) -> str:
    return text.replace("≤", r"$\leq$")


def markdown(df: pd.DataFrame, float_format: str = "{:.2f}") -> str:
    """A GitHub Markdown table (pandas' to_markdown needs tabulate, which we do not depend on)."""
    def cell(v):
        if isinstance(v, float):
            return "–" if pd.isna(v) else float_format.format(v)
        return str(v).replace("|", "\\|")

    header = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def published() -> pd.DataFrame:
    """Published numbers: columns model, dataset, metric, value, source."""
    with resources.files("unimumer_lib.resources").joinpath(PUBLISHED_CSV).open(encoding="utf-8") as fh:
        return pd.read_csv(fh)


def main_table(results: Mapping[str, Path | str | dict], model: str = "ours", include_published: bool = True,
               metric_keys: tuple[str, ...] = MAIN_METRICS) -> pd.DataFrame:
    """The paper's main table: one row per model, columns (dataset, metric).

    ``results`` maps a dataset name (e.g. "CROHME 2014") to a prediction file or an ``evaluate_files`` row.
    Published rows (``resources/published.csv``) come first; missing cells are NaN.
    """
    long = []
    for dataset, result in results.items():
        row = result if isinstance(result, dict) else evaluate_files([Path(result)])[0]
        long += [{"model": model, "dataset": dataset, "metric": k, "value": row[k]} for k in metric_keys]
    frame = pd.DataFrame(long, columns=["model", "dataset", "metric", "value"])
    if include_published:
        pub = published()
        frame = pd.concat([pub[pub.metric.isin(metric_keys)][frame.columns], frame], ignore_index=True)
    table = frame.pivot_table(index="model", columns=["dataset", "metric"], values="value", sort=False)
    datasets = [d for d in DATASETS if d in table.columns.get_level_values(0)]
    datasets += [d for d in dict.fromkeys(table.columns.get_level_values(0)) if d not in datasets]
    columns = [(d, m) for d in datasets for m in metric_keys if (d, m) in table.columns]
    table = table.reindex(columns=pd.MultiIndex.from_tuples(columns, names=["dataset", "metric"]))
    return table.rename(columns=HEADERS, level=1)


def main_table_text(table: pd.DataFrame, fmt: str = "md") -> str:
    """The main table as Markdown or LaTeX (2 decimals, '–' for a missing cell)."""
    if fmt == "latex":
        return _latex_symbols(table.to_latex(float_format="%.2f", na_rep="--", multicolumn_format="c", escape=True))
    flat = table.reset_index()
    flat.columns = ["Model"] + [f"{d} {m}" for d, m in table.columns]
    return markdown(flat)

