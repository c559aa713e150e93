"""Result tables: metrics of prediction files (the ``unimumer eval`` backend) and the paper's main table.

``evaluate_files`` gives one row per file with ``metrics.RESULT_KEYS`` (rates in percent, unrounded);
``format_results`` prints them as table / csv / md / latex / json; ``results_text`` writes one row in the layout
of the official Uni-MuMER ``<name>_results.txt`` files. ``main_table`` lays results out as in the
paper (datasets as columns) next to the published rows of ``resources/published.csv``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from . import metrics
from ..latex.published import check_style, normalize_texts
from ..formats.predictions import Prediction, read_columns, read_predictions, scored_preds
from ..core.files import atomic_write_text
from ..tasks.spec import BASELINE_ARM, MAIN_ARM, MATCHED_ARM



if TYPE_CHECKING:  # pandas is imported where a table needs it, so that `unimumer eval` starts without it
    import pandas as pd
FORMATS = ("table", "csv", "md", "latex", "json")
HEADERS = {"file": "File", "n": "N", "exprate": "ExpRate", "le1": "≤1", "le2": "≤2", "le3": "≤3",
           "edit_score": "Edit score", "bleu4": "BLEU-4", "cer": "CER", "cer_char": "CER_char",
           "structure_rate": "Structure rate", "unbalanced": "Unbalanced", "removed": "Removed"}
CER_NOTE = ("CER: the published 'Character Error Rate', token edits / reference characters (a fraction); "
            "CER_char: character edits / reference characters (%).")
UNBALANCED = "unbalanced"  # with normalize: texts left as they are because their braces do not balance
REMOVED = "removed"  # with normalize="unimumer": items the published protocol leaves out of the scores
RESULTS_SUFFIX = "_results.txt"
_RULE = "=" * 60
DATASETS = ("CROHME 2014", "CROHME 2016", "CROHME 2019", "HME100K")
MAIN_METRICS = ("exprate", "le1", "le2")
PUBLISHED_CSV = "published.csv"


def score_predictions(preds: list[Prediction], normalize: str | None = None) -> dict:
    """Metrics of a list of predictions. ``normalize`` names a ``normalize.STYLES`` style applied to gt and pred
    first (None: none): ``crohme`` maps them through ``latex.normalize`` and adds ``unbalanced``, how many gt + pred
    texts were left as they are (see ``normalize_texts``); ``unimumer`` is the published CROHME 2023 /
    MathWriting protocol (``normalize.py``) and adds ``removed``, how many items it leaves out of the scores."""
    if normalize is not None:  # (None: no normalisation)
        check_style(normalize)
    if normalize == "unimumer":
        from ..latex.published import normalize_predictions

        kept, removed = normalize_predictions(preds, normalize)
        return {**metrics.score([p.gt for p in kept], [p.pred for p in kept]).as_dict(), REMOVED: len(removed)}
    gts = [p.gt for p in preds]
    hyps = [p.pred for p in preds]
    if not normalize:
        return metrics.score(gts, hyps).as_dict()
    (gts, bad_gt), (hyps, bad_pred) = normalize_texts(gts), normalize_texts(hyps)
    return {**metrics.score(gts, hyps).as_dict(), UNBALANCED: bad_gt + bad_pred}


def evaluate_files(paths: list[Path], normalize: str | None = None, by_dataset: bool = False) -> list[dict]:
    """One row per prediction file: ``{"file", **metrics.score}`` (``normalize``: as :func:`score_predictions`).
    With ``by_dataset``, files whose records carry a ``dataset`` key also get one row per dataset, ``file`` being
    ``PATH#DATASET``."""
    if normalize is not None:  # (None: no normalisation)
        check_style(normalize)
    rows = []
    for path in paths:
        if normalize:
            preds = [replace(p, pred=p.scored_pred) for p in read_predictions(path)]
            rows.append({"file": str(path), **score_predictions(preds, normalize)})
            columns = {"gt": [p.gt for p in preds], "pred": [p.pred for p in preds],
                       "dataset": [p.extra.get("dataset") for p in preds]}
        else:  # the plain scores need the texts only: no Prediction per record
            columns = read_columns(path, ("gt", "pred", "dataset", "error"))
            columns["pred"] = scored_preds(columns["pred"], columns["error"])  # an unreadable image is never right
            rows.append({"file": str(path), **metrics.score(columns["gt"], columns["pred"]).as_dict()})
        if not any(g.strip() for g in columns["gt"]):
            raise ValueError(f"{path}: every ground truth (gt) is empty, so nothing can be scored: these are "
                             f"predictions of unlabelled images (recognise a split with its captions to evaluate)")
        groups = set(columns["dataset"]) - {None}
        if by_dataset and groups:
            for group in sorted(groups, key=str):
                keep = [i for i, g in enumerate(columns["dataset"]) if g == group]
                if normalize:
                    result = score_predictions([preds[i] for i in keep], normalize)
                else:
                    result = metrics.score([columns["gt"][i] for i in keep],
                                           [columns["pred"][i] for i in keep]).as_dict()
                rows.append({"file": f"{path}#{group}", "dataset": group, **result})
    return rows


def results_text(row: dict) -> str:
    """One result row in the layout of the official ``*_results.txt``: its sections and labels, every value
    rounded to 4 decimals first as the official script does, then ``{:>8.4f}`` rates, ``{:,}`` / ``{:>6,}``
    counts (thousands separators) and ``{:>6.2f}`` percentages. CER is the published one (``metrics``)."""
    n = row["n"]
    r = {key: round(row[key], 4) for key in ("edit_score", "bleu4", "cer", "exprate", "le1", "le2", "le3")}
    lines = ["", _RULE, f"{'EVALUATION RESULTS':>38}", _RULE, "", "Dataset Statistics:", f"  Total Samples: {n:,}", "",
             "Core Metrics:", f"  Mean Edit Score:       {r['edit_score']:>8.4f}%",
             f"  BLEU-4 Score:          {r['bleu4']:>8.4f}%", f"  Character Error Rate:  {r['cer']:>8.4f}", "",
             "Error Threshold Analysis:", f"  Exact Match Rate:      {r['exprate']:>8.4f}% (0 errors)"]
    lines += [f"  Error ≤ {k}:             {r[key]:>8.4f}%" for k, key in ((1, "le1"), (2, "le2"), (3, "le3"))]
    lines += ["", "Detailed Error Distribution:"]
    for k, key in enumerate(("exprate", "le1", "le2", "le3")):
        lines.append(f"  Errors ≤ {k}: {round(row[key] * n / 100):>6,} samples ({r[key]:>6.2f}%)")
    return "\n".join(lines + ["", _RULE, ""])


def results_path(prediction_file: Path, folder: Path | None = None) -> Path:
    """``<name>_results.txt`` beside the prediction file (or in ``folder``); a ``_pred`` suffix is dropped,
    as in the official layout (``crohme_2014_pred.json`` -> ``crohme_2014_results.txt``)."""
    prediction_file = Path(prediction_file)
    stem = prediction_file.stem.removesuffix("_pred")
    return Path(folder or prediction_file.parent) / f"{stem}{RESULTS_SUFFIX}"


def write_results_files(rows: list[dict], folder: Path | None = None, force: bool = False) -> list[Path]:
    """Write ``results_text`` of each whole-file row (not the per-dataset rows) to ``results_path``. An existing
    results file (the authors' own beside an official prediction file) is never replaced unless ``force``;
    every target is checked before the first is written."""
    targets = [(row, results_path(Path(row["file"]), folder)) for row in rows if "dataset" not in row]
    seen: dict[Path, str] = {}
    for row, target in targets:
        if target.resolve() in seen:
            raise ValueError(f"{target}: the results of {seen[target.resolve()]} and {row['file']} would both be "
                             f"written there (one would be lost); write each beside its file (no --results-dir) "
                             f"or give the files distinct names")
        seen[target.resolve()] = row["file"]
        if target.resolve() == Path(row["file"]).resolve():
            raise ValueError(f"{target}: refusing to overwrite the prediction file with its results")
        if target.exists() and not force:
            raise FileExistsError(f"{target}: a results file is already there (beside an official prediction file "
                                  f"it is the authors' own); write into another folder with --results-dir, or "
                                  f"--force to replace it")
    return [atomic_write_text(target, results_text(row)) for row, target in targets]


def _columns(rows: list[dict]) -> list[str]:
    return ["file", *metrics.RESULT_KEYS, *(k for k in (UNBALANCED, REMOVED) if any(k in r for r in rows))]


def results_frame(rows: list[dict]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=_columns(rows))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _result_columns(rows: list[dict]) -> list[tuple[str, list, str]]:
    """(column, values, kind) of result rows; kind is what pandas infers for them: ``int``, ``float`` (numbers,
    an int column with a missing cell included) or ``object`` (text)."""
    columns = []
    for name in _columns(rows):
        values = [row.get(name) for row in rows]
        present = [v for v in values if not _missing(v)]
        if any(isinstance(v, str) or isinstance(v, bool) for v in present):
            kind = "object"
        elif len(present) == len(values) and all(isinstance(v, int) for v in present):
            kind = "int"
        else:
            kind = "float"
        columns.append((name, values, kind))
    return columns


def _cells(values: list, kind: str, float_format: str, missing: str) -> list[str]:
    if kind == "float":
        return [missing if _missing(v) else float_format.format(float(v)) for v in values]
    return [missing if _missing(v) else str(v) for v in values]


def format_results(rows: list[dict], fmt: str = "table") -> str:
    """Render result rows: ``json`` is the unrounded list of dicts; the others round to 2 decimals (4 in csv).
    table / csv / md are written without pandas (what pandas' ``to_string`` / ``to_csv`` print); latex uses it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if fmt == "json":
        return json.dumps([{k: row[k] for k in _columns(rows)} for row in rows], indent=1)
    columns = _result_columns(rows)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([name for name, _, _ in columns])
        writer.writerows(zip(*(_cells(v, kind, "{:.4f}", "") for _, v, kind in columns)))
        return buf.getvalue() if rows else buf.getvalue()
    shown = [(HEADERS.get(name, name), [f"{v:.4f}" for v in values], "object") if name == "cer"
             else (HEADERS.get(name, name), values, kind) for name, values, kind in columns]  # cer: a fraction
    if fmt == "latex":
        import pandas as pd

        frame = pd.DataFrame({name: values for name, values, _ in shown})
        return _latex_symbols(frame.to_latex(index=False, float_format="%.2f", escape=True))
    if fmt == "table":
        cells = [[name, *_cells(values, kind, "{:.2f}", "NaN")] for name, values, kind in shown]
        widths = [max(map(len, column)) for column in cells]
        lines = [" ".join(c.rjust(w) for c, w in zip(line, widths)) for line in zip(*cells)]
        return "\n".join(lines) + "\n" + CER_NOTE
    cells = [_cells(values, kind, "{:.2f}", "–") for _, values, kind in shown]
    lines = ["| " + " | ".join(name for name, _, _ in shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") if kind != "float" else c for c, (_, _, kind) in zip(row, shown))
              + " |" for row in zip(*cells)]
    return "\n".join(lines) + "\n\n" + CER_NOTE


def _latex_symbols(text: str) -> str:
    return text.replace("≤", r"$\leq$")


def is_p_value(column) -> bool:
    """A column of p-values ("McNemar p"): printed in scientific notation when small, never as 0.00."""
    return str(column).endswith(" p") or str(column) == "p"


def format_p(v) -> str:
    """A p-value as text: ``1.0e-15`` below 0.001, else three decimals; '–' when missing."""
    import pandas as pd

    return "–" if pd.isna(v) else f"{v:.1e}" if v < 1e-3 else f"{v:.3f}"


def markdown(df: pd.DataFrame, float_format: str = "{:.2f}") -> str:
    """A GitHub Markdown table (pandas' to_markdown needs tabulate, which we do not depend on); p-value columns
    (``is_p_value``) in ``format_p``."""
    import pandas as pd

    def cell(v, p: bool):
        if isinstance(v, float):
            return format_p(v) if p else "–" if pd.isna(v) else float_format.format(v)
        return str(v).replace("|", "\\|")

    header = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    ps = [is_p_value(h) for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v, p) for v, p in zip(row, ps)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def published() -> pd.DataFrame:
    """Published numbers: columns model, dataset, metric, value, source."""
    import pandas as pd

    with resources.files("unimumer_lib.resources").joinpath(PUBLISHED_CSV).open(encoding="utf-8") as fh:
        return pd.read_csv(fh)


def main_table(results: Mapping[str, Path | str | dict], model: str = "ours", include_published: bool = True,
               metric_keys: tuple[str, ...] = MAIN_METRICS) -> pd.DataFrame:
    """The paper's main table: one row per model, columns (dataset, metric).

    ``results`` maps a dataset name (e.g. "CROHME 2014") to a prediction file or an ``evaluate_files`` row.
    Published rows (``resources/published.csv``) come first; missing cells are NaN.
    """
    import pandas as pd

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


TABLE_FORMATS = {"csv": "csv", "md": "md", "tex": "latex"}


def prediction_path(root: Path | str, arm: str, test: str) -> Path:
    """``<root>/<arm>/<test>.json``: where the paper run keeps an arm's predictions on a test split."""
    return Path(root) / arm / f"{test}.json"


def arm_results(root: Path | str, arms: list[str], tests: Mapping[str, str]) -> dict[str, dict[str, dict]]:
    """{arm: {dataset label: metrics row}} of every arm's prediction file on every test split (``tests`` maps
    the split name to its label, e.g. test2014 -> CROHME 2014)."""
    return {arm: {label: evaluate_files([prediction_path(root, arm, test)])[0] for test, label in tests.items()}
            for arm in arms}


def paper_main_table(results: Mapping[str, Mapping[str, dict]], names: Mapping[str, str]) -> pd.DataFrame:
    """The main table of a paper run: published rows, then one row ``names[arm]`` per arm (ExpRate/≤1/≤2 per
    test set)."""
    import pandas as pd

    tables = [main_table(dict(rows), model=names[arm], include_published=i == 0)
              for i, (arm, rows) in enumerate(results.items())]
    columns = list(dict.fromkeys(c for table in tables for c in table.columns))  # an arm may have more test sets
    return pd.concat(tables)[columns]


def for_display(table: pd.DataFrame):
    """A table as a notebook shows it: two decimals, p-values in ``format_p``, '–' for a missing cell (not NaN),
    the missing side of an insertion or deletion in a ``*token`` column as ∅ (``analysis.token_label``)."""
    from .analysis import token_label

    ps = [c for c in table.columns if is_p_value(c)]
    tokens = [c for c in table.columns if str(c).endswith("token")]
    styled = table.style.format(precision=2, na_rep="–", subset=[c for c in table.columns if c not in ps + tokens])
    styled = styled.format(token_label, subset=tokens) if tokens else styled
    return styled.format(format_p, subset=ps) if ps else styled


def split_published(table: pd.DataFrame, ours: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(the table, None) when our rows and the published rows share a column with values (a CROHME run: one
    table to read across); else (our rows, the published rows), each with only its own columns (a synthetic run
    beside CROHME numbers would be 13 columns with nothing in common)."""
    mine, pub = table.loc[ours], table.drop(index=ours)
    if pub.empty or (mine.notna().any() & pub.notna().any()).any():
        return table, None
    return mine.loc[:, mine.notna().any()], pub.loc[:, pub.notna().any()]


def write_main_table(results: Mapping[str, Path | str | dict], model: str, out: Path | str) -> list[str]:
    """``out/main_table.md|tex``: ``model``'s row in the main table, beside the published rows when they share a
    test set (``split_published``). Returns the Markdown to show: that table, then the published rows apart when
    they share none."""
    table, published_rows = split_published(main_table(results, model=model), [model])
    for fmt, suffix in (("md", "md"), ("latex", "tex")):
        atomic_write_text(Path(out) / f"main_table.{suffix}", main_table_text(table, fmt))
    shown = [main_table_text(table)]
    if published_rows is not None:
        shown.append("**Published** (no test set in common with ours)\n\n" + main_table_text(published_rows))
    return shown


def ablation_table(results: Mapping[str, Mapping[str, dict]]) -> pd.DataFrame:
    """Rows: arms; columns: ExpRate, ≤1, ≤2 per test set. ``published.csv`` holds no ablation rows, so none are
    added."""
    import pandas as pd

    table = pd.DataFrame({arm: {f"{label} {HEADERS[key]}": row[key] for label, row in rows.items()
                                for key in MAIN_METRICS} for arm, rows in results.items()}).T
    table.index.name = "arm"
    return table


def paired_table(root: Path | str, base: str, arm: str, tests: Mapping[str, str], seed: int = 0) -> pd.DataFrame:
    """``arm`` − ``base`` per test set and metric (ExpRate, ≤1, ≤2) over the same expressions: both rates, the
    difference in points with its paired bootstrap 95 % interval, fixed/broken counts, McNemar's exact p."""
    import pandas as pd

    from .compare import compare

    rows = []
    for test, label in tests.items():
        a, b = (read_predictions(prediction_path(root, x, test)) for x in (base, arm))
        for key in MAIN_METRICS:
            rows.append({"test set": label, **compare(a, b, key, seed=seed).as_row(), "metric": HEADERS[key]})
    table = pd.DataFrame(rows).set_index("test set")
    return table.rename(columns={"A": base, "B": arm, "B - A": f"{arm} - {base}"})


def flat_columns(table: pd.DataFrame) -> pd.DataFrame:
    """(dataset, metric) columns -> "dataset metric" strings, for CSV."""
    import pandas as pd

    out = table.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [f"{d} {m}" for d, m in out.columns]
    return out


def write_table(table: pd.DataFrame, out: Path | str, name: str) -> dict[str, Path]:
    """``out/<name>.csv`` (4 decimals), ``.md`` and ``.tex`` (2 decimals); returns {format: path}."""
    import pandas as pd

    from ..core.files import atomic_write_text

    flat = flat_columns(table)
    exact_p = flat.assign(**{c: flat[c].map(lambda v: f"{v:.4g}") for c in flat.columns if is_p_value(c)})
    texts = {"csv": exact_p.to_csv(float_format="%.4f"),  # (a p-value keeps its digits: 1.03e-15, not 0.0000)
             "md": (main_table_text(table) if isinstance(table.columns, pd.MultiIndex)
                    else markdown(flat.reset_index())) + "\n",
             "tex": main_table_text(table, "latex") if isinstance(table.columns, pd.MultiIndex)
             else _latex_symbols(flat.to_latex(float_format="%.2f", na_rep="--", escape=True,
                                               formatters={c: format_p for c in flat.columns if is_p_value(c)}))}
    return {fmt: atomic_write_text(Path(out) / f"{name}.{fmt}", text) for fmt, text in texts.items()}


def write_paper_tables(root: Path | str, arms: list[str], tests: Mapping[str, str], names: Mapping[str, str],
                       out: Path | str, main_tests: Mapping[str, str] | None = None,
                       main_arm: str = MAIN_ARM, base_arm: str = BASELINE_ARM,
                       matched_arm: str = MATCHED_ARM) -> dict[str, dict[str, Path]]:
    """``main`` and ``ablation`` tables (csv, md, tex) of a paper run from its prediction files. ``main_tests``
    ({split: label}, e.g. hme100k -> HME100K): test sets only ``main_arm`` has, in the main table only. With both
    ``base_arm`` and ``main_arm`` among the arms, ``ablation_paired``: main − base with its paired bootstrap
    interval (``paired_table``); with ``matched_arm`` (the compute-matched control) too,
    ``ablation_paired_matched``: main − matched."""
    results = arm_results(root, arms, tests)
    main = {arm: dict(rows) for arm, rows in results.items()}
    if main_tests:
        main[main_arm].update(arm_results(root, [main_arm], main_tests)[main_arm])
    ours, published_rows = split_published(paper_main_table(main, names), [names[a] for a in main])
    written = {"main": write_table(ours, out, "main"),
               "ablation": write_table(ablation_table(results), out, "ablation")}
    if published_rows is not None:  # no test set in common (a synthetic run): the published rows apart
        written["published"] = write_table(published_rows, out, "published")
    if base_arm in arms and main_arm in arms and base_arm != main_arm:
        written["ablation_paired"] = write_table(paired_table(root, base_arm, main_arm, tests), out, "ablation_paired")
    if matched_arm in arms and main_arm in arms:
        written["ablation_paired_matched"] = write_table(paired_table(root, matched_arm, main_arm, tests), out,
                                                         "ablation_paired_matched")
    return written


def write_gate_table(paths: Mapping[str, Path | str], out: Path | str) -> dict[str, Path]:
    """``gates.csv|md|tex``: each arm's learnability gates (``gates.GATES_FILE`` of its results, {arm: path}): per
    auxiliary task the share of well-formed outputs, the ExpRate read from them beside the vanilla-prompt
    ExpRate, error_fix's exact rate, and whether the gate holds (``gates.BARS``)."""
    from .gates import read_gates, table

    return write_table(table({arm: read_gates(p) for arm, p in paths.items()}).set_index(["arm", "task"]), out,
                       "gates")


def read_table_csv(path: Path | str) -> pd.DataFrame:
    """A table written by ``write_table`` (first column = row names)."""
    import pandas as pd

    return pd.read_csv(path, index_col=0)
