"""Peak memory of this process: ``VmHWM``, the high-water mark of its own address space.

Not ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: on Linux that figure survives ``exec``, so a process started
by ``subprocess`` (vfork) or by a ``spawn`` pool (fork then exec) reports at least the RSS its parent had when it
was started. A benchmark parent that holds a corpus then inflates the child's "peak" by the corpus's size; this
made ``bench_mathwriting.py`` report 258-653 bytes/file of growth that the prepare run never had.
"""

from __future__ import annotations

import resource


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (``ru_maxrss`` where ``/proc`` is missing, e.g. macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if maxrss > 2**31 else maxrss / 1024  # bytes on macOS, KiB on Linux
