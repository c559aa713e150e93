"""Tree-CoT + symbol-counting throughput over all CROHME train captions, on one core (target >= 20,000/s).

Run: python benchmarks/bench_tree.py [--repeat N]. Captions come from the InkML files via the inkml reader
(reading them is not timed).
"""

from __future__ import annotations

import argparse
import time

from unimumer_lib import config
from unimumer_lib.inkml import caption_of, read_inkml_folder
from unimumer_lib.tasks import caption_row
from unimumer_lib.tree import count_text, tree_text


def train_captions() -> list[str]:
    inks, _ = read_inkml_folder(config.crohme_root() / "train")
    captions = []
    for ink in inks:
        try:
            captions.append(caption_of(ink))
        except ValueError:
            pass
    return captions


def best_rate(fn, captions, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(captions)
        best = min(best, time.perf_counter() - start)
    return len(captions) / best


def targets(captions):
    for c in captions:
        tree_text(c)
        count_text(c)


def rows(captions):
    for c in captions:
        caption_row("tree", c, "images/x.png")
        caption_row("can", c, "images/x.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    captions = train_captions()
    tokens = sum(len(c.split()) for c in captions)
    print(f"CROHME train: {len(captions)} captions, {tokens / len(captions):.1f} tokens on average")
    print(f"Tree-CoT + counting targets: {best_rate(targets, captions, args.repeat):,.0f} captions/s "
          f"(target >= 20,000)")
    print(f"Tree-CoT + counting sharegpt rows: {best_rate(rows, captions, args.repeat):,.0f} captions/s")


if __name__ == "__main__":
    main()
