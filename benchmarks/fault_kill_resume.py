"""Fault check for `unimumer train --resume` and `unimumer infer`: kill -9 at random points, then finish the run.

train: a reference run, then ``--trials`` runs killed with SIGKILL, each resumed with ``--resume`` to the end.
Half the trials are killed at a random time, half while a checkpoint is being saved (the first moment a
``checkpoint-N`` folder exists without its ``trainer_state.json``, which the Trainer writes last). The final
weights must equal the reference tensor for tensor. infer: a run killed twice in a row at random times, then
finished; its prediction file must equal an uninterrupted run byte for byte. Prints one line per trial and a
summary; exits 1 on any failure. Data: 16 synthetic expressions (``synth``), rendered at height 64.

    PYTHONPATH=$PWD python3 benchmarks/fault_kill_resume.py --trials 5
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unimumer_lib.data.render import render_ink  # noqa: E402
from unimumer_lib.training.runfolder import checkpoint_problem, checkpoints  # noqa: E402
from unimumer_lib.data.synth import synthesize  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "unimumer_lib.pipeline.cli", *map(str, args)]


def make_data(work: Path, n: int) -> Path:
    split = work / "split"
    (split / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        ink = synthesize(i, seed=7)
        render_ink(ink, height=64).save(split / "images" / f"s{i:02d}.png")
        lines.append(f"s{i:02d}\t{ink.latex.strip('$')}\n")
    (split / "caption.txt").write_text("".join(lines))
    subprocess.run(cli("tasks", "--captions", split, "--tasks", "vanilla,can", "--out", work / "tasks"), env=ENV,
                   check=True, capture_output=True)
    return split


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "final" / "model.safetensors")


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kill_during_save(proc: subprocess.Popen, out: Path, limit: float) -> str:
    """SIGKILL at the first sight of a checkpoint without its trainer_state.json; what was torn."""
    deadline = time.time() + limit
    while proc.poll() is None and time.time() < deadline:
        for ckpt in checkpoints(out) if out.is_dir() else []:
            if not (ckpt / "trainer_state.json").exists():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return f"during the save of {ckpt.name} ({checkpoint_problem(ckpt) or 'complete after all'})"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return "no save caught; killed at the limit"


def train_trials(work: Path, trials: int, steps: int, rng: random.Random) -> list[bool]:
    config = work / "save.yaml"
    config.write_text("save_steps: 2\nlogging_steps: 1\n")
    base = ["train", "--data", work / "tasks", "--max-steps", steps, "--config", config, "--preset", "cpu-smoke"]
    t0 = time.time()
    subprocess.run(cli(*base, "--out", work / "ref"), env=ENV, check=True, capture_output=True)
    ref_wall = time.time() - t0
    reference = weights(work / "ref")
    results = []
    for t in range(trials):
        out = work / f"train{t}"
        proc = subprocess.Popen(cli(*base, "--out", out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if t % 2:
            what = kill_during_save(proc, out, ref_wall)
        else:
            at = rng.uniform(0.3, 0.9) * ref_wall
            time.sleep(at)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            what = f"at {at:.1f} s of {ref_wall:.1f} s"
        done = [c.name for c in checkpoints(out)] if out.is_dir() else []
        resumed = subprocess.run(cli(*base, "--out", out, "--resume"), env=ENV, capture_output=True, text=True)
        ok = resumed.returncode == 0 and same_weights(weights(out), reference)
        notes = " ".join(line for line in resumed.stderr.splitlines() if line.startswith("resume:"))
        print(f"train trial {t}: killed {what}; checkpoints then {done}; --resume rc {resumed.returncode}; "
              f"final weights {'equal' if ok else 'DIFFER'} to the uninterrupted run. {notes}", flush=True)
        results.append(ok)
    return results


def infer_trials(work: Path, split: Path, trials: int, rng: random.Random) -> list[bool]:
    images = work / "many"
    images.mkdir()
    for i in range(240):
        (images / f"i{i:03d}.png").write_bytes((split / "images" / f"s{i % 16:02d}.png").read_bytes())
    base = ["infer", "--model", "tiny-base", "--data", images, "--batch-size", "4", "--max-new-tokens", "48"]
    t0 = time.time()
    subprocess.run(cli(*base, "--out", work / "ref.json"), env=ENV, check=True, capture_output=True)
    ref_wall = time.time() - t0
    reference = (work / "ref.json").read_bytes()
    results = []
    for t in range(trials):
        out = work / f"infer{t}.json"
        seen = []
        partial = out.with_name(out.name + ".partial.jsonl")
        rows = lambda: len(partial.read_bytes().splitlines()) if partial.exists() else 0  # noqa: E731
        for kill in range(2):  # two kills in a row, each once the run has written new rows
            proc = subprocess.Popen(cli(*base, "--out", out), env=ENV, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            before = rows()
            while rows() <= before and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3 if kill else 0.5) * ref_wall)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            seen.append(rows())
        final = subprocess.run(cli(*base, "--out", out), env=ENV, capture_output=True, text=True)
        ok = final.returncode == 0 and out.read_bytes() == reference
        print(f"infer trial {t}: partial rows after kill 1 / kill 2: {seen[0]} / {seen[1]}; rerun rc "
              f"{final.returncode}; prediction file {'identical' if ok else 'DIFFERS'}", flush=True)
        results.append(ok)
    return results


def concurrent_trials(work: Path, split: Path) -> list[bool]:
    """Two runs of each command into one --out, the second started once the first holds its lock: the first
    finishes (rc 0), the second exits 2 naming the holder."""
    runs = {"train": (["train", "--data", work / "tasks", "--max-steps", "6", "--out", work / "c_train"],
                      work / "c_train" / ".unimumer.lock"),
            "infer": (["infer", "--model", "tiny-base", "--data", work / "many", "--out", work / "c_infer" / "p.json"],
                      work / "c_infer" / ".p.json.unimumer.lock"),
            "reproduce": (["reproduce", "--profile", "ci", "--out", work / "c_rep"],
                          work / "c_rep" / ".unimumer-reproduce.lock")}
    big = work / "big"  # tasks is fast: 3,000 images keep the first run busy while the second starts
    (big / "images").mkdir(parents=True, exist_ok=True)
    captions = (split / "caption.txt").read_text().splitlines()
    for i in range(3000):
        (big / "images" / f"b{i:04d}.png").write_bytes((split / "images" / f"s{i % 16:02d}.png").read_bytes())
    (big / "caption.txt").write_text("".join(f"b{i:04d}\t{captions[i % 16].split(chr(9), 1)[1]}\n"
                                             for i in range(3000)))
    runs["tasks"] = (["tasks", "--captions", big, "--tasks", "vanilla,tree,can", "--out", work / "c_tasks"],
                     work / "c_tasks" / ".unimumer.lock")
    results = []
    for name, (args, lock) in runs.items():
        first = subprocess.Popen(cli(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not lock.exists() and first.poll() is None:
            time.sleep(0.01)
        second = subprocess.run(cli(*args), env=ENV, capture_output=True, text=True)
        first.wait()
        ok = first.returncode == 0 and second.returncode == 2 and f"pid {first.pid}" in second.stderr
        print(f"concurrent {name}: first rc {first.returncode}, second rc {second.returncode}: "
              f"{second.stderr.strip().splitlines()[-1][:160] if second.stderr.strip() else ''}", flush=True)
        results.append(ok)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--steps", type=int, default=12, help="training steps of each run (checkpoint every 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--parts", default="train,infer,concurrent", help="which checks (comma-separated)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="kill_resume_"))
    parts = args.parts.split(",")
    split = make_data(work, 16)
    train_ok = train_trials(work, args.trials, args.steps, rng) if "train" in parts else []
    infer_ok = infer_trials(work, split, args.trials, rng) if "infer" in parts or "concurrent" in parts else []
    lock_ok = concurrent_trials(work, split) if "concurrent" in parts else []
    print(f"summary: train {sum(train_ok)}/{len(train_ok)} resumed runs equal the uninterrupted weights; "
          f"infer {sum(infer_ok)}/{len(infer_ok)} twice-killed runs equal the uninterrupted file; "
          f"concurrent runs {sum(lock_ok)}/{len(lock_ok)} with exactly one writer")
    return 0 if all(train_ok + infer_ok + lock_ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
