"""Learning is real: a tiny Qwen2.5-VL trained on 32 CROHME training images reads them back (ExpRate).

The 32 images are a seeded choice among CROHME train expressions of 3-12 tokens (short captions keep the
CPU run to minutes), rendered at height 64. Trains with the `cpu-smoke` preset of unimumer_lib.training.train, then
recognises the same 32 images greedily with unimumer_lib.inference.infer. Prints model size, steps, wall time, peak
memory, ExpRate and how many distinct predictions there are (a model that ignores the image emits one).

    python benchmarks/bench_learning.py [--n 32] [--steps 400] [--size tiny] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from peak_memory import peak_rss_mib
from unimumer_lib.core.paths import crohme_root
from unimumer_lib.inference.infer import predict
from unimumer_lib.evaluation.metrics import score
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.models.model import num_parameters
from unimumer_lib.models.tiny import tiny_model
from unimumer_lib.tasks.build import caption_rows, write_task_files
from unimumer_lib.training.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--size", default="tiny", choices=["tiny", "small"])
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_learning_"))

    records = sample_caption_set(crohme_root() / "train", work / "set", args.n, min_tokens=3, max_tokens=12,
                                 height=args.height)
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in records], ["vanilla"], progress=False)
    data = write_task_files(work / "tasks", rows)["vanilla"]
    model, processor = tiny_model(args.size)
    print(f"model: {args.size}, {num_parameters(model) / 1e6:.2f} M parameters; data: {args.n} CROHME train images, "
          f"height {args.height}, captions {min(len(r.caption.split()) for r in records)}-"
          f"{max(len(r.caption.split()) for r in records)} tokens")

    cpu0 = time.process_time()
    result = train(data, model=model, processor=processor, preset="cpu-smoke", out_dir=work / "sft",
                   max_steps=args.steps, learning_rate=args.lr, save_steps=10**6, disable_tqdm=True)
    train_cpu = time.process_time() - cpu0
    start = time.perf_counter()
    preds = predict(result.model, processor, records, work / "pred.json", batch_size=16, max_new_tokens=64,
                    progress=False)
    infer_wall = time.perf_counter() - start
    metrics = score([p.gt for p in preds], [p.pred for p in preds]).as_dict()
    peak = peak_rss_mib()
    print(f"steps: {result.global_step} (batch 8), final logged loss {result.last_loss:.4f}")
    print(f"train wall: {result.wall_s:.1f} s, train CPU time: {train_cpu:.1f} s ({args.threads} threads); "
          f"inference wall: {infer_wall:.1f} s")
    print(f"peak memory (max RSS): {peak:.0f} MB")
    print(f"ExpRate on the {args.n} training images: {metrics['exprate']:.1f}% "
          f"(<=1: {metrics['le1']:.1f}%), distinct predictions: {len({p.pred for p in preds})}/{len(preds)}")
    for p in preds[:5]:
        print(f"  {p.gt!r} -> {p.pred!r}")


if __name__ == "__main__":
    main()
