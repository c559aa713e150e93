"""Worker processes for the batch commands: results in input order, stopped at once on Ctrl-C, never orphaned.

Workers ignore SIGINT: the parent gets the KeyboardInterrupt and terminates the whole pool, so one Ctrl-C stops
everything within about a second. Each worker asks Linux to kill it when its parent dies (``PR_SET_PDEATHSIG``),
so a kill -9 of the parent leaves no worker running.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from typing import Callable, Iterable, Iterator

PR_SET_PDEATHSIG = 1


def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's terminate() on exit still stops the workers
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def imap_ordered(fn: Callable, jobs: Iterable, workers: int, chunksize: int = 16) -> Iterator:
    """``map(fn, jobs)`` over ``workers`` processes (in this process when ``workers <= 1``), in input order.

    Leaving early (an exception, Ctrl-C, or the caller closing the generator) terminates the workers.
    """
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    pool = multiprocessing.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(os.getpid(),))
    try:
        yield from pool.imap(fn, jobs, chunksize)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
