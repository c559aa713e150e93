"""Threads and worker processes, measured: 1 against 2 for training, inference and prepare, on an idle machine and
with one other busy process (a second user, or a job already running).

Each measurement is one whole ``unimumer`` command in a fresh process (``OMP_NUM_THREADS`` sets the torch threads;
``--workers`` the prepare processes), the configurations alternating, best of ``--runs``:

- train: ``unimumer train`` of the shipped ``tiny-base`` (preset cpu-smoke) for ``--steps`` steps on CROHME
  test2014 tasks (prepared once, not timed);
- infer: ``unimumer infer --model tiny-base`` over ``--images`` CROHME test2014 images;
- prepare: ``unimumer prepare crohme --splits test2014`` with 128-px images.

``--load`` adds the busy case: a pure-Python loop on its own process for the whole measurement.

    python benchmarks/bench_threads.py [--runs 3] [--steps 40] [--images 200] [--no-load]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unimumer_lib.core import paths
from unimumer_lib.core.workers import cores


def busy(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def run(cmd: list[str], threads: int | None = None) -> float:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def measure(name: str, configs: dict[str, tuple[list[str], int | None]], runs: int, before=None) -> dict[str, float]:
    best = {label: float("inf") for label in configs}
    for i in range(runs):
        for label in (list(configs) if i % 2 == 0 else list(configs)[::-1]):
            if before:
                before()
            cmd, threads = configs[label]
            best[label] = min(best[label], run(cmd, threads))
    print(f"  {name}: " + ", ".join(f"{label} {t:.1f} s" for label, t in best.items()), flush=True)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="training steps per run")
    ap.add_argument("--images", type=int, default=200, help="images per inference run")
    ap.add_argument("--no-load", action="store_true", help="skip the runs beside a busy process")
    args = ap.parse_args()
    unimumer = [sys.executable, "-m", "unimumer_lib.pipeline.cli"]
    root = paths.crohme_root()
    print(f"{cores()} cores; load average {os.getloadavg()[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([*unimumer, "prepare", "crohme", "--src", str(root), "--out", str(tmp / "data"), "--splits",
                        "test2014", "--limit", str(args.images), "--height", "64"], check=True, capture_output=True)
        subprocess.run([*unimumer, "tasks", "--captions", str(tmp / "data" / "test2014" / "caption.txt"), "--out",
                        str(tmp / "tasks"), "--tasks", "vanilla", "--allow-test-images"], check=True,
                       capture_output=True)

        def train(label):
            return [*unimumer, "train", "--data", str(tmp / "tasks"), "--model", "tiny-base", "--preset", "cpu-smoke",
                    "--max-steps", str(args.steps), "--out", str(tmp / f"sft-{label}"), "--force",
                    "--allow-test-images"]

        def infer(label):
            return [*unimumer, "infer", "--model", "tiny-base", "--data", str(tmp / "data" / "test2014"), "--out",
                    str(tmp / f"pred-{label}.json"), "--force"]

        def prepare(label, workers):
            return [*unimumer, "prepare", "crohme", "--src", str(root), "--out", str(tmp / f"prep-{label}"),
                    "--splits", "test2014", "--workers", str(workers), "--force"]

        def clean():
            for path in tmp.glob("pred-*.json*"):
                path.unlink()

        table = {}
        cases = [("idle", None)] + ([] if args.no_load else [("one busy process", "load")])
        for case, load in cases:
            stop = multiprocessing.Event()
            hog = multiprocessing.Process(target=busy, args=(stop,)) if load else None
            if hog:
                hog.start()
            try:
                print(f"{case}:", flush=True)
                table[case, "train"] = measure("train", {"1 thread": (train("1"), 1), "2 threads": (train("2"), 2)},
                                               args.runs)
                table[case, "infer"] = measure("infer", {"1 thread": (infer("1"), 1), "2 threads": (infer("2"), 2)},
                                               args.runs, before=clean)
                table[case, "prepare"] = measure("prepare", {"1 worker": (prepare("1", 1), None),
                                                             "2 workers": (prepare("2", 2), None)}, args.runs)
            finally:
                if hog:
                    stop.set()
                    hog.join()
    print("\n| machine | job | 1 | 2 | 2 / 1 (time) |\n| --- | --- | --- | --- | --- |")
    for (case, job), best in table.items():
        one, two = best.values()
        print(f"| {case} | {job} | {one:.1f} s | {two:.1f} s | {two / one:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
