"""Peak memory of k-fold EDL mining: a 3-fold run against the work of one fold, on the hub-faithful fixture.

Each measurement runs in a fresh process (its own peak RSS, ``peak_memory.peak_rss_mib``). "1 fold"
trains and samples once, exactly what one fold of ``mining.mine_errors`` does; "3 folds" runs ``mine_errors``
with k=3. With every fold's trainer, model and optimizer freed before the next (issue 21) the two peaks agree
within a few percent; before, fold k trained while fold k-1's model and optimizer state were alive.

    PYTHONPATH=$PWD python3 benchmarks/bench_mining_memory.py --images 12 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]), "OMP_NUM_THREADS": "1"}

CHILD = r"""
import json, sys
from peak_memory import peak_rss_mib
from pathlib import Path
from unimumer_lib.core import paths
from unimumer_lib.models import hubfixture
from unimumer_lib.pipeline import mining
from unimumer_lib.tasks.build import caption_items, caption_rows, write_task_files
from unimumer_lib.training.train import train

work, k, images, steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hub = hubfixture.build_fixture()
mining.sample_caption_set(paths.crohme_root() / "train", work / "set", images, min_tokens=3, max_tokens=8, height=64)
opts = dict(model_path=str(hub), preset="cpu-smoke", max_steps=steps, disable_tqdm=True, save_steps=10**6)
if k == 1:
    items, _ = caption_items(work / "set")
    rows, _ = caption_rows(items[: len(items) * 2 // 3], ["vanilla"], progress=False)
    path = write_task_files(work / "data", rows)["vanilla"]
    result = train(path, out_dir=work / "sft", **opts)
    mining.sample_outputs(result.model, result.processor, items[len(items) * 2 // 3:],
                          mining.Mining(samples=2, max_new_tokens=16),
                          progress=False)
else:
    settings = mining.Mining(k=k, samples=2, max_new_tokens=16, model=str(hub), preset="cpu-smoke", max_steps=steps)
    mining.mine_errors(work / "set", work / "out", settings, progress=False, disable_tqdm=True, save_steps=10**6)
print(json.dumps({"k": k, "peak_rss_mib": peak_rss_mib()}))
"""


def measure(k: int, images: int, steps: int) -> float:
    with tempfile.TemporaryDirectory(prefix="mining_mem_") as work:
        out = subprocess.run([sys.executable, "-c", CHILD, work, str(k), str(images), str(steps)], env=ENV,
                             capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=12, help="caption set size (3 folds of 4)")
    ap.add_argument("--steps", type=int, default=4, help="training steps per fold")
    args = ap.parse_args()
    one, three = measure(1, args.images, args.steps), measure(3, args.images, args.steps)
    print("| run | peak RSS |\n| --- | --- |")
    print(f"| 1 fold (train + sample once) | {one:.0f} MiB |\n| mine_errors k=3 | {three:.0f} MiB |")
    print(f"3 folds / 1 fold: {three / one:.3f} (acceptance: <= 1.10)")


if __name__ == "__main__":
    main()
