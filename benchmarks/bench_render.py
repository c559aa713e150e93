"""Rendering speed on CROHME test2014 and peak memory of rendering the whole train split to disk.

    python benchmarks/bench_render.py [--workers N] [--height 128] [--skip-train]

Prints expressions/second for test2014 (InkML read + render in the worker pool, both cores by default; and
render-only on one core), then renders train through `prepare_split` into a temporary folder (images are
streamed to disk, nothing is held) while sampling the summed RSS of this process and its workers.
Targets (issue 2): >= 300 expressions/s with both cores; peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from unimumer_lib.core.paths import crohme_root
from unimumer_lib.data.inkml import find_inkml, read_inkml
from unimumer_lib.data.prepare import prepare_split
from unimumer_lib.data.render import default_workers, render_ink, render_many


def _tree_rss_bytes(root_pid: int) -> int:
    """Summed resident memory of ``root_pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = int(statm[1]) * page
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class PeakRss:
    """Context manager sampling the process-tree RSS every ``interval`` seconds; ``.peak`` in bytes."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=default_workers())
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args()
    root = crohme_root()

    paths = find_inkml(root / "test2014")
    t = time.perf_counter()
    sizes = [im.size for im in render_many(paths, height=args.height, workers=args.workers)]
    dt = time.perf_counter() - t
    print(f"test2014: {len(sizes)} expressions read+rendered at height {args.height} with {args.workers} workers "
          f"in {dt:.2f}s = {len(sizes) / dt:.0f} expressions/s (target >= 300)")

    inks = [read_inkml(p) for p in paths]
    t = time.perf_counter()
    for ink in inks:
        render_ink(ink, height=args.height)
    dt = time.perf_counter() - t
    print(f"test2014: render only, 1 core: {len(inks) / dt:.0f} expressions/s")

    if args.skip_train:
        return
    with tempfile.TemporaryDirectory() as tmp, PeakRss() as mem:
        t = time.perf_counter()
        m = prepare_split(root / "train", Path(tmp) / "train", images=True, height=args.height,
                          workers=args.workers, root=root)
        dt = time.perf_counter() - t
    print(f"train: {m['written']} images (+{m['rejected']} rejected) written in {dt:.1f}s "
          f"= {m['written'] / dt:.0f} expressions/s incl. captions and PNG encoding")
    print(f"train: peak RSS (process + workers) {mem.peak / 2**20:.0f} MiB (target < 2048 MiB)")


if __name__ == "__main__":
    main()
