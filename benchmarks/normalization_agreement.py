"""Published normalisation: our ``normalize.normalize_caption`` rules vs the published CROHME 2023 / MathWriting pairs.

Prints, per sample file, the kept/removed decision agreement and the caption agreement (both removed, or both
kept with the same caption), the removals per rule, the rewrite speed, and every disagreement with its cause.

    python benchmarks/normalization_agreement.py [--sample DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from unimumer_lib.core import paths
from unimumer_lib.latex.published import compare_with_published

# Why a disagreement is not a rule to add: the published caption holds information the raw caption lacks.
CAUSES = (
    (lambda d: "o b j e c t" in d["raw"],
     "the raw caption lost the root index ([object Object], a conversion bug); the published one has the true "
     "index, which no rule can recover"),
    (lambda d: "{array}" in d["raw"] and (d["ours"] or "").replace("{ c c }", "{ r r }") == d["normalized"],
     "the published array column spec ({ r r }) differs from the raw one ({ c c }), elsewhere in the sample the "
     "raw spec is kept: not derivable from the raw caption"),
    (lambda d: "\\begin{matrix}" in d["raw"] and d["normalized"] and "{pmatrix}" in (d["ours"] or "")
     and "{pmatrix}" not in d["normalized"],
     "the published caption keeps ( matrix ) here, while every other ( matrix ) in the sample becomes pmatrix: "
     "not derivable from the raw caption"),
)


def cause(d: dict) -> str:
    return next((text for test, text in CAUSES if test(d)), "unexplained")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sample", type=Path, default=paths.normalization_sample())
    args = ap.parse_args()
    for path in sorted(args.sample.glob("*.json")):
        items = json.loads(path.read_text(encoding="utf-8"))
        start = time.perf_counter()
        agreement = compare_with_published(items)
        seconds = time.perf_counter() - start
        published_removed = sum(item["normalized"] is None for item in items)
        print(f"{path.name}: {agreement.n} items; decision {agreement.decision}/{agreement.n} = "
              f"{agreement.rate('decision'):.2f} %, caption {agreement.caption}/{agreement.n} = "
              f"{agreement.rate('caption'):.2f} %")
        print(f"  removed: ours {sum(agreement.removed.values())} ({agreement.removed}), "
              f"published {published_removed}; {agreement.n / seconds:,.0f} items/s")
        for d in agreement.disagreements:
            print(f"  - {d['img_id']}: raw       {d['raw']}\n    published {d['normalized']}\n"
                  f"    ours      {d['ours'] if d['ours'] is not None else 'removed: ' + d['our_reason']}\n"
                  f"    cause: {cause(d)}")


if __name__ == "__main__":
    main()
