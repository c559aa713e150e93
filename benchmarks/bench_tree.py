"""Tree-CoT and symbol counting over all CROHME captions (train + test2014 + test2016), on one core.

Run: taskset -c 0 python benchmarks/bench_tree.py [--repeat N]

Prints the accepted / rejected-by-reason / round-trip counts of Tree-CoT, then throughputs on the same
captions: Tree-CoT alone (target >= 150,000 captions/s), our symbol counting next to a plain-Python ``Counter``
of the non-brace tokens in first-appearance order (what the official preprocessing does; target: ours >= it),
and whole tree+can sharegpt rows.  Captions come from the InkML files via the inkml reader (not timed).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

from unimumer_lib.core import paths
from unimumer_lib.data.inkml import caption_of, read_inkml_folder
from unimumer_lib.tasks.build import caption_row
from unimumer_lib.latex.tree import COUNT_EXCLUDED, count_text, survey, tree_text

SPLITS = ("train", "test2014", "test2016")


def crohme_captions() -> tuple[list[str], int]:
    """All captions of SPLITS and the number of files without one."""
    captions, missing = [], 0
    for split in SPLITS:
        inks, rejects = read_inkml_folder(paths.crohme_root() / split)
        missing += len(rejects)
        for ink in inks:
            try:
                captions.append(caption_of(ink))
            except ValueError:
                missing += 1
    return captions, missing


def counter_baseline(caption: str) -> str:
    """The plain-Python reference: Counter over the non-brace tokens, first-appearance order."""
    counts = Counter(t for t in caption.split() if t not in COUNT_EXCLUDED)
    return ", ".join(f"{t}: {n}" for t, n in counts.items())


def rows(caption: str) -> None:
    caption_row("tree", caption, "images/x.png")
    caption_row("can", caption, "images/x.png")


def best_rates(fns: dict, captions, repeat: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) captions/s of each function, best of ``repeat`` rounds.

    Rounds interleave the functions so that load from other processes hits them alike; the CPU-time rate
    (``time.process_time``) is what one core gives when the machine is shared."""
    wall, cpu = dict.fromkeys(fns, float("inf")), dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for c in captions:
                fn(c)
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    return {name: (len(captions) / wall[name], len(captions) / cpu[name]) for name in fns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    captions, missing = crohme_captions()
    tokens = sum(len(c.split()) for c in captions)
    cores = len(os.sched_getaffinity(0))
    print(f"CROHME {' + '.join(SPLITS)}: {len(captions)} captions ({missing} files without one), "
          f"{tokens / len(captions):.1f} tokens on average; {cores} core(s) available")
    report = survey(captions)
    print(f"Tree-CoT: {report['accepted']} accepted, {sum(report['rejected'].values())} rejected, "
          f"round trip {report['round_trip']}/{report['accepted']} accepted")
    for reason, n in sorted(report["rejected"].items(), key=lambda kv: -kv[1]):
        print(f"  rejected {n}: {reason}")
    differ = sum(count_text(c) != counter_baseline(c) for c in captions)
    if differ:
        raise SystemExit(f"symbol counting differs from the Counter baseline on {differ} captions")
    timed = [c for c in captions if _accepted(c)]
    rates = best_rates({"tree": tree_text, "count": count_text, "baseline": counter_baseline, "rows": rows},
                       timed, args.repeat)
    print(f"on {len(timed)} accepted captions, best of {args.repeat} (load average {os.getloadavg()[0]:.1f}):")
    print(f"{'captions/s':<28}{'wall':>10}{'CPU time':>10}")
    labels = {"tree": "Tree-CoT text", "count": "symbol counting, ours", "baseline": "Counter baseline",
              "rows": "tree + can sharegpt rows"}
    for name, label in labels.items():
        print(f"{label:<28}{rates[name][0]:>10,.0f}{rates[name][1]:>10,.0f}")
    print("targets: Tree-CoT >= 150,000/s; counting ours / baseline = "
          f"{rates['count'][0] / rates['baseline'][0]:.2f} (wall), "
          f"{rates['count'][1] / rates['baseline'][1]:.2f} (CPU) >= 1")


def _accepted(caption: str) -> bool:
    try:
        tree_text(caption)
    except ValueError:
        return False
    return True


if __name__ == "__main__":
    main()
