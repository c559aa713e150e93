"""Worker processes and threads for the batch commands: how many (``cores``, ``threads``), results in input
order, stopped at once on Ctrl-C, never orphaned.

``threads`` is the one thread policy: a count given wins, else ``OMP_NUM_THREADS``, else the cores left per
worker process; never more threads x workers than cores (``benchmarks/bench_threads.py`` measures it).

Workers ignore SIGINT: the parent gets the KeyboardInterrupt and terminates the whole pool, so one Ctrl-C stops
everything within about a second. Each worker asks Linux to kill it when its parent dies (``PR_SET_PDEATHSIG``),
so a kill -9 of the parent leaves no worker running.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from itertools import islice
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

    Jobs are taken from the iterable a block at a time (never all of them at once), so a generator of jobs keeps
    memory constant. Leaving early (an exception, Ctrl-C, or the caller closing the generator) terminates the
    workers.
    """
    jobs = iter(jobs)
    if workers <= 1:
        yield from map(fn, jobs)
        return
    block = max(1, workers * chunksize * 8)
    first = list(islice(jobs, block))
    if len(first) <= 1:
        yield from map(fn, first)
        return
    pool = multiprocessing.Pool(min(workers, len(first)), initializer=_init_worker, initargs=(os.getpid(),))
    try:
        while first:
            yield from pool.imap(fn, first, chunksize)
            first = list(islice(jobs, block))
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, which a container or ``taskset`` narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads(requested: int | None = None, workers: int = 1) -> int:
    """Threads for each of ``workers`` processes: ``requested`` when given, else ``OMP_NUM_THREADS`` when set,
    else the cores per worker; capped so that threads x workers never exceeds the cores (at least 1)."""
    if requested is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        requested = int(env) if env.isdigit() and int(env) > 0 else cores()
    if requested < 1:
        raise ValueError(f"threads must be >= 1, got {requested}")
    return max(1, min(requested, cores() // max(1, workers)))


def set_torch_threads(requested: int | None = None, workers: int = 1) -> int:
    """Give torch ``threads(requested, workers)`` intra-op threads (its own default counts the machine's cores,
    not this process's share); returns the count."""
    import torch

    count = threads(requested, workers)
    torch.set_num_threads(count)
    return count


def gpu_processes(processes: int | None = None) -> int:
    """Processes for a data-parallel job: ``processes`` when given, else one per visible GPU (1 without one)."""
    if processes is not None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        return processes
    import torch

    return max(1, torch.cuda.device_count())


def shard_device(index: int, gpus: int, environ=None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of shard ``index``: the ``index``-th (mod the count) of the devices this process
    may use, as its own ``CUDA_VISIBLE_DEVICES`` lists them (``2,3`` -> shards on 2 and 3, never on someone else's
    0 and 1); without that variable, device ``index % gpus``."""
    visible = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    listed = [d.strip() for d in visible.split(",") if d.strip()] if visible is not None else []
    if listed:
        return listed[index % len(listed)]
    return str(index % max(1, gpus))


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first), read from /proc (empty where there is none)."""
    parent_of = {}
    for stat in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat", encoding="utf-8") as fh:
                    parent_of[int(stat)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parent_of.items() if parent in frontier and p not in found]
        found += kids
        frontier = kids
    return found


def stop_at_once(command: str) -> None:
    """Make Ctrl-C end this process within a fraction of a second: kill every process below it (a notebook
    kernel and what it started) and exit 130. For console commands whose children (papermill's kernel) take
    seconds to wind down; state files are written atomically, so nothing is left half-written."""
    import sys

    def handler(signum, frame):
        print(f"{command}: interrupted", file=sys.stderr, flush=True)
        for child in descendants(os.getpid()):
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        os._exit(130)

    signal.signal(signal.SIGINT, handler)
