"""Ours against the official Uni-MuMER tools, side by side on this machine: evaluation and symbol counting.

Fetches nothing: give the official files of a checkout of https://github.com/BFlameSwift/Uni-MuMER (Apache-2.0),

    python benchmarks/bench_vs_official.py --official-eval UNIMUMER/scripts/eval_metrics_calculator.py \\
        --official-preprocess UNIMUMER/preprocess/make_unimumer_tree_data.py [--runs 5] [--sizes 986 200000]

- **eval**: whole processes, ``python -m unimumer_lib.pipeline.cli eval FILE --format json`` against the official
  ``evaluate_text_generation(FILE)`` (imported from the given path), the two alternating (ours first in even runs),
  each under ``/usr/bin/time -v`` (wall and peak RSS; ``os.wait4`` where GNU time is missing). Both sides run from
  compiled bytecode (``compileall`` first). Sizes: the published CROHME 2014 predictions (986 records, when the
  reference is here) and synthetic files of N records (``bench_metrics.synthesise``: CROHME 2014 captions with
  0-4 random token edits). Every metric is checked to agree to 4 decimals (the official "Character Error Rate" is
  our ``cer_char`` / 100: character edits, as editdistance computes it today).
- **counting**: ``tree.count_text`` against the official ``get_symbol_counts`` + ``make_count_dict2str`` (their
  two functions taken from the given file by ``ast``, so its other imports are not needed) on every CROHME caption
  (train + test2014 + test2016), best of ``--repeat`` alternating passes, outputs asserted equal.
- **Tree-CoT** as well when the official ``unimumer_tree`` package sits beside the preprocess file.

Prints one row per measure: ours, official, and ours / official (time ratios: < 1 is faster; throughput
ratios: > 1 is faster). Our threads follow ``workers.threads()`` (``--threads`` sets OMP_NUM_THREADS for ours);
the official code runs on one thread.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import json
import os
import py_compile
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

OFFICIAL_RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("official_eval", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
results = module.evaluate_text_generation(sys.argv[2])
print("RESULTS " + json.dumps(results))
"""
# official result key -> (our key, scale)
METRICS = {"exact_match_rate": ("exprate", 1), "error_le_1_rate": ("le1", 1), "error_le_2_rate": ("le2", 1),
           "error_le_3_rate": ("le3", 1), "mean_edit_score": ("edit_score", 1), "bleu4_score": ("bleu4", 1),
           "character_error_rate": ("cer_char", 0.01)}


def timed_process(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one process, under GNU time -v when it is installed.

    Without GNU time the peak is ``wait4``'s ``ru_maxrss``, an upper bound: on Linux it survives ``exec``, so it
    holds this process's RSS at the moment the child was started (see ``peak_memory``)."""
    if Path("/usr/bin/time").exists():
        with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
            done = subprocess.run(["/usr/bin/time", "-v", "-o", report.name, *cmd], capture_output=True, text=True,
                                  env=env, check=True)
            text = report.read()
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
        seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall.split(":"))))
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
        return seconds, rss, done.stdout
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise subprocess.CalledProcessError(status, cmd)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out


def eval_file(folder: Path, n: int, seed: int = 0) -> Path:
    """The published CROHME 2014 predictions for n == 986 (when here), else n synthetic records."""
    from unimumer_lib.core import paths

    if n == 986 and paths.reference_predictions().exists():
        return paths.reference_predictions()
    from bench_metrics import synthesise

    gts, preds = synthesise(n, seed)
    path = folder / f"synthetic_{n}_pred.json"
    rows = [{"gt": g, "pred": p, "image_path": f"./data/CROHME/synthetic/{i}.bmp", "img_id": f"s{i}"}
            for i, (g, p) in enumerate(zip(gts, preds))]
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def compare_eval(official: Path, path: Path, runs: int, env: dict) -> dict:
    """Alternating whole-process runs of both; the metrics checked equal; medians and their ratios."""
    ours_cmd = [sys.executable, "-m", "unimumer_lib.pipeline.cli", "eval", str(path), "--format", "json"]
    official_cmd = [sys.executable, "-c", OFFICIAL_RUNNER, str(official), str(path)]
    times = {"ours": [], "official": []}
    rss = {"ours": [], "official": []}
    for run in range(runs):
        order = (("ours", ours_cmd, env), ("official", official_cmd, None))
        for side, cmd, side_env in order if run % 2 == 0 else order[::-1]:
            seconds, peak, out = timed_process(cmd, side_env)
            times[side].append(seconds)
            rss[side].append(peak)
            if side == "ours":
                ours = json.loads(out)[0]
            else:
                theirs = json.loads(next(line for line in out.splitlines() if line.startswith("RESULTS "))[8:])
    for key, (our_key, scale) in METRICS.items():
        if round(ours[our_key] * scale, 4) != round(theirs[key], 4):
            raise AssertionError(f"{path.name}: {key} official {theirs[key]} != ours {ours[our_key] * scale}")
    med = {side: statistics.median(v) for side, v in times.items()}
    return {"n": ours["n"], "wall": med, "runs": times, "rss": {side: max(v) for side, v in rss.items()}}


def official_functions(preprocess: Path, names: tuple[str, ...]) -> dict:
    """The named top-level functions of the official file, compiled on their own (its imports are not run)."""
    tree = ast.parse(preprocess.read_text(encoding="utf-8"))
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = set(names) - {node.name for node in found}
    if missing:
        raise SystemExit(f"{preprocess}: no function(s) {', '.join(sorted(missing))}")
    namespace: dict = {}
    exec(compile(ast.Module(body=found, type_ignores=[]), str(preprocess), "exec"), namespace)
    return namespace


def best_rate(fn, items: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def compare_per_caption(ours, theirs, captions: list[str], repeat: int) -> tuple[float, float]:
    """(ours, official) captions/s, alternating passes; every output asserted equal first."""
    differ = [c for c in captions if ours(c) != theirs(c)]
    if differ:
        raise AssertionError(f"{len(differ)} captions differ, e.g. {differ[0]!r}")
    rates = {"ours": [], "official": []}
    for i in range(repeat):
        for side, fn in ((("ours", ours), ("official", theirs)) if i % 2 == 0 else
                         (("official", theirs), ("ours", ours))):
            rates[side].append(best_rate(fn, captions, 1))
    return max(rates["ours"]), max(rates["official"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-eval", type=Path, required=True, help="the official scripts/eval_metrics_calculator.py")
    ap.add_argument("--official-preprocess", type=Path, help="the official preprocess/make_unimumer_tree_data.py")
    ap.add_argument("--sizes", type=int, nargs="+", default=[986, 200_000], help="records per eval file")
    ap.add_argument("--runs", type=int, default=5, help="alternating whole-process runs per side and size")
    ap.add_argument("--repeat", type=int, default=7, help="alternating passes over the captions (counting)")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for our eval (default: our thread policy)")
    args = ap.parse_args()
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    compileall.compile_dir(str(REPO / "unimumer_lib"), quiet=1)
    py_compile.compile(str(args.official_eval))
    from unimumer_lib.core.workers import threads

    print(f"machine: {os.cpu_count()} cores; ours eval threads {threads(args.threads)}, official 1; "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            result = compare_eval(args.official_eval, eval_file(Path(tmp), n), args.runs, env)
            w, r = result["wall"], result["rss"]
            rows.append((f"eval, {result['n']:,} records, whole process (median of {args.runs})",
                         f"{w['ours']:.2f} s", f"{w['official']:.2f} s", f"{w['ours'] / w['official']:.3f}x time",
                         f"{w['official'] / w['ours']:.1f}x faster"))
            rows.append((f"eval, {result['n']:,} records, peak RSS", f"{r['ours']:.0f} MiB", f"{r['official']:.0f} MiB",
                         f"{r['ours'] / r['official']:.2f}x memory", ""))
            print(f"  {n:,}: ours {['%.2f' % t for t in result['runs']['ours']]} s, official "
                  f"{['%.2f' % t for t in result['runs']['official']]} s; metrics agree", flush=True)
    if args.official_preprocess:
        from bench_tree import crohme_captions
        from unimumer_lib.latex.tree import count_text, tree_text

        captions, _ = crohme_captions()
        fns = official_functions(args.official_preprocess, ("get_symbol_counts", "make_count_dict2str"))
        official = lambda c: fns["make_count_dict2str"](fns["get_symbol_counts"](c))  # noqa: E731
        ours, theirs = compare_per_caption(count_text, official, captions, args.repeat)
        rows.append((f"symbol counting, {len(captions):,} CROHME captions", f"{ours:,.0f}/s", f"{theirs:,.0f}/s",
                     f"{ours / theirs:.2f}x throughput", "outputs equal"))
        package = args.official_preprocess.parent / "unimumer_tree" / "latex2tree.py"
        if package.exists():
            sys.path.insert(0, str(args.official_preprocess.parent))
            from unimumer_tree.latex2tree import latex_to_tree_str

            accepted = [c for c in captions if _tree_or_none(tree_text, c) is not None]
            ours, theirs = compare_per_caption(tree_text, latex_to_tree_str, accepted, args.repeat)
            rows.append((f"Tree-CoT, {len(accepted):,} captions", f"{ours:,.0f}/s", f"{theirs:,.0f}/s",
                         f"{ours / theirs:.2f}x throughput", "outputs equal"))
        else:
            print(f"(Tree-CoT skipped: no {package})")
    print("\n| measure | ours | official | ours / official | |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


def _tree_or_none(fn, caption):
    try:
        return fn(caption)
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
