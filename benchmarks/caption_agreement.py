"""Caption agreement: our canonical CROHME captions vs the literature's, and MathML- vs raw-LaTeX-derived captions.

Prints, for test2014, the exact-match rate against the `gt` captions of the published Uni-MuMER predictions
(canonical caption, raw-LaTeX-only normalisation, naive tokenisation) and the residual mismatches grouped into
classes; for every split, read = records + rejects, caption failures, and the share of files whose MathML-derived
caption equals the raw-LaTeX-derived one, with the disagreements grouped into classes.

    python benchmarks/caption_agreement.py [--splits test2014 test2016 train] [--show 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from unimumer_lib.core import paths
from unimumer_lib.latex.align import align
from unimumer_lib.data.inkml import read_inkml_folder
from unimumer_lib.latex.tokens import GROUP_TOKENS, SCRIPT_TOKENS, canonical_caption, mathml_tokens, normalize, tokenize

REASONS = {
    "literature follows raw LaTeX (structure)":
        "same symbols, different layout: the literature caption is the raw LaTeX's layout, the MathML "
        "(revised in the 2016 package, matching the symbol labels of the traces) places a script differently",
    "literature follows raw LaTeX (symbols)":
        "the MathML and the traces' symbol labels name a different or extra symbol than the raw LaTeX; the "
        "literature caption was made from the raw LaTeX (pre-revision ground truth)",
    "neither annotation":
        "the literature caption equals neither the MathML nor the raw LaTeX (e.g. raw `_ {=}`, MathML drops `=`): "
        "a manual fix in the literature's ground truth",
    "function name as letters":
        "raw LaTeX types a function name as letters (`log`, `tg`); MathML has the command or vice versa",
    "layout differs (same symbols)":
        "MathML and raw LaTeX hold the same symbols in a different layout (mostly scripts nested or "
        "closed at a different place in the MathBrush/expressmatch MathML)",
    "symbols differ":
        "MathML and raw LaTeX disagree on a symbol (relabelled or mistyped in one of them)",
}


def leaves(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in GROUP_TOKENS and t not in SCRIPT_TOKENS and t != "\\limits"]


def naive(latex: str) -> str:
    return " ".join(tokenize(latex.replace("$", "")))


def diff(a: list[str], b: list[str]) -> str:
    return "; ".join(f"{' '.join(a[e.i1:e.i2]) or '∅'} -> {' '.join(b[e.j1:e.j2]) or '∅'}"
                     for e in align(a, b) if e.tag != "equal")


def letter_runs(tokens: list[str]) -> set[str]:
    """Runs of two or more single letters, joined (``l o g 5`` -> ``log``)."""
    runs, run = set(), ""
    for t in tokens + [" "]:
        if len(t) == 1 and t.isalpha():
            run += t
        else:
            runs.update([run] if len(run) > 1 else [])
            run = ""
    return runs


def commands(tokens: list[str]) -> Counter:
    return Counter(t[1:] for t in tokens if t.startswith("\\") and t[1:].isalpha())


def split_class(ours: list[str], raw: list[str]) -> str:
    if Counter(leaves(ours)) == Counter(leaves(raw)):
        return "layout differs (same symbols)"
    if (set(commands(ours) - commands(raw)) & letter_runs(raw)
            or set(commands(raw) - commands(ours)) & letter_runs(ours)):
        return "function name as letters"
    return "symbols differ"


def test2014_report(inks, reference: Path, show: int) -> None:
    gt = {r["img_id"]: " ".join(r["gt"].split()) for r in json.loads(reference.read_text())}
    by_id = {ink.id: ink for ink in inks}
    ours = {k: canonical_caption(by_id[k].mathml, by_id[k].latex) for k in gt}
    raw = {k: normalize(by_id[k].latex or "") for k in gt}
    n = len(gt)
    for name, captions in (("canonical caption", ours), ("raw LaTeX normalised", raw),
                           ("naive raw tokenizer", {k: naive(by_id[k].latex or "") for k in gt})):
        agree = sum(captions[k] == gt[k] for k in gt)
        print(f"test2014 agreement, {name:22s}: {agree}/{n} = {100 * agree / n:.2f}%")
    classes = defaultdict(list)
    for k in gt:
        if ours[k] == gt[k]:
            continue
        if raw[k] == gt[k]:
            same = leaves(ours[k].split()) == leaves(gt[k].split())
            classes[f"literature follows raw LaTeX ({'structure' if same else 'symbols'})"].append(k)
        else:
            classes["neither annotation"].append(k)
    print(f"\ntest2014 residual mismatches: {sum(map(len, classes.values()))}")
    for name, keys in classes.items():
        print(f"- {name}: {len(keys)} -- {REASONS[name]}")
        for k in keys:
            print(f"    {k}: ours -> literature: {diff(ours[k].split(), gt[k].split())}")


def split_report(split: str, folder: Path, show: int):
    start = time.perf_counter()
    inks, rejects = read_inkml_folder(folder)
    failures, fallback, agree = [], 0, 0
    classes = defaultdict(list)
    sources = Counter()
    for ink in inks:
        try:
            ours = canonical_caption(ink.mathml, ink.latex)
        except ValueError as err:
            failures.append((ink.id, str(err)))
            continue
        raw = normalize(ink.latex) if ink.latex else None
        try:
            fallback += ours != " ".join(mathml_tokens(ink.mathml or ""))
        except ValueError:
            fallback += 1
        if ours == raw:
            agree += 1
        elif raw is not None:
            classes[split_class(ours.split(), raw.split())].append((ink, ours, raw))
            sources[Path(ink.path).parent.name] += 1
    seconds = time.perf_counter() - start
    read = len(inks) + len(rejects)
    print(f"\n{split}: read {read} = {len(inks)} records + {len(rejects)} rejects; caption failures "
          f"{len(failures)}; captions differing from the plain MathML conversion {fallback}; {seconds:.1f} s")
    for path, _, reason in rejects:
        print(f"    reject {path}: {reason}")
    for key, reason in failures:
        print(f"    FAILED {key}: {reason}")
    n = len(inks) - len(failures)
    print(f"{split}: MathML-derived caption == raw-LaTeX-derived caption: {agree}/{n} = {100 * agree / n:.2f}%")
    if sources:
        print(f"    disagreements by source folder: {dict(sources.most_common())}")
    for name, items in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        print(f"- {name}: {len(items)} -- {REASONS[name]}")
        for ink, ours, raw in items[:show]:
            print(f"    {ink.id}: ours -> raw: {diff(ours.split(), raw.split())}")
    return inks


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=["test2014", "test2016", "train"])
    parser.add_argument("--show", type=int, default=5, help="examples printed per disagreement class")
    args = parser.parse_args(argv)
    root = paths.crohme_root()
    for split in args.splits:
        inks = split_report(split, root / split, args.show)
        if split == "test2014" and paths.reference_predictions().exists():
            print()
            test2014_report(inks, paths.reference_predictions(), args.show)


if __name__ == "__main__":
    main()
