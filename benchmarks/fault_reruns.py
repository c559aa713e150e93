"""Fault check for `unimumer prepare` on real CROHME: kill -9 at random points, a killed run at another height,
and two concurrent runs into one --out.

For each trial a `prepare` subprocess is killed with SIGKILL once a random number of its images exist, then
rerun normally; the output must be byte-identical to a clean run (every file: captions, images, manifest,
rejects), with no temporary files, no lock file and no process of the killed run left. Prints one line per
trial and a summary; exits 1 on any failure.

    PYTHONPATH=$PWD nice -n 10 python3 benchmarks/fault_reruns.py --splits test2014,test2016 --trials 5
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unimumer_lib.core import paths  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def prepare_cmd(src, out, splits, height, workers) -> list[str]:
    return [sys.executable, "-m", "unimumer_lib.pipeline.cli", "prepare", "crohme", "--src", str(src),
            "--out", str(out),
            "--splits", splits, "--height", str(height), "--workers", str(workers)]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def descendants(pid: int) -> list[int]:
    """Live (non-zombie) processes below ``pid``, from /proc."""
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parent_of[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent_of.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def images_written(out: Path) -> int:
    return sum(len(os.listdir(d)) for d in out.glob("*/images"))


def kill_at(cmd: list[str], out: Path, after: int) -> tuple[bool, list[int]]:
    """Run ``cmd``, SIGKILL it once ``after`` images are in ``out``; -> (it was still running, its worker pids
    still alive 2 s later)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    while proc.poll() is None and (not out.exists() or images_written(out) < after):
        workers.update(descendants(proc.pid))
        time.sleep(0.05)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)
    return running, [w for w in workers if alive(w)]


def check(label: str, out: Path, clean: dict[str, bytes], leftovers: list[int], extra: str = "") -> bool:
    got = tree(out)
    temps = [p for p in got if p.endswith(".tmp") or p.endswith(".lock") or ".prepare-items" in p]
    same = got == clean
    diff = sorted(set(got) ^ set(clean)) + [k for k in got if k in clean and got[k] != clean[k]]
    ok = same and not temps and not leftovers
    print(f"{label}: {'OK' if ok else 'FAIL'} identical={same} files={len(got)} temp_files={len(temps)} "
          f"processes_left={len(leftovers)} {extra}{' diff=' + str(diff[:5]) if diff else ''}", flush=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=str(paths.crohme_root()))
    ap.add_argument("--splits", default="test2014,test2016")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="fault_reruns_"))
    ok = True
    try:
        t0 = time.monotonic()
        subprocess.run(prepare_cmd(args.src, tmp / "clean", args.splits, 128, args.workers), env=ENV, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        duration = time.monotonic() - t0
        clean = tree(tmp / "clean")
        n_images = images_written(tmp / "clean")
        print(f"clean run: {len(clean)} files in {duration:.1f} s (splits {args.splits}, height 128)", flush=True)

        trials = [(f"kill -9 trial {i + 1}", 128) for i in range(args.trials)] + [("killed at height 64", 64)]
        for label, height in trials:
            out = tmp / label.replace(" ", "_")
            after = rng.randrange(1, n_images)
            running, left = kill_at(prepare_cmd(args.src, out, args.splits, height, args.workers), out, after)
            subprocess.run(prepare_cmd(args.src, out, args.splits, 128, args.workers), env=ENV, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ok &= check(label, out, clean, left, f"killed_after={after}/{n_images}_images was_running={running}")

        out = tmp / "concurrent"
        cmds = [prepare_cmd(args.src, out, args.splits, 128, args.workers),
                prepare_cmd(args.src, out, args.splits, 64, args.workers)]
        procs = [subprocess.Popen(c, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
        results = [(p.pid, p.wait(), p.stderr.read()) for p in procs]
        winners = [r for r in results if r[1] == 0]
        losers = [r for r in results if r[1] != 0]
        named = len(losers) == 1 and f"pid {winners[0][0]}" in losers[0][2] if len(winners) == 1 else False
        print(f"concurrent: exit codes {[r[1] for r in results]}; refused run said: "
              f"{losers[0][2].strip().splitlines()[-1] if losers else '-'}", flush=True)
        if winners and winners[0][0] == procs[0].pid:
            ok &= check("concurrent (winner at 128)", out, clean, [], f"holder_named={named}") and named
        else:
            ok &= named
            print(f"concurrent: the 64-pixel run won; holder_named={named}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ALL OK" if ok else "FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
