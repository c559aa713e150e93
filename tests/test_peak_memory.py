"""The benchmarks' peak-memory reading: a child's own peak, not the RSS its parent had when it started it."""

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from peak_memory import peak_rss_mib  # noqa: E402

CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from peak_memory import peak_rss_mib; "
         "blob = bytearray(int(sys.argv[2]) * 2**20); blob[::4096] = b'x' * len(blob[::4096]); "
         "print(peak_rss_mib())")


def child_peak(parent_holds_mib: int, child_allocates_mib: int) -> float:
    held = bytearray(parent_holds_mib * 2**20)
    held[::4096] = b"x" * len(held[::4096])  # touched: resident in this process
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO_ROOT / "benchmarks"), str(child_allocates_mib)],
                         capture_output=True, text=True, check=True).stdout
    del held
    return float(out)


def test_a_child_started_by_a_large_parent_reports_its_own_peak():
    small = child_peak(0, 0)
    assert child_peak(300, 0) < small + 50  # ru_maxrss here reads >= 300 MiB: the parent's RSS at the start


def test_the_peak_counts_what_the_process_allocates():
    assert child_peak(0, 120) > child_peak(0, 0) + 100
    assert peak_rss_mib() > 0
