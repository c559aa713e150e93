"""Training-step cost of the tiny Qwen2.5-VL shapes (``unimumer_lib.models.tiny.SIZES``) against this CPU's fp32 peak.

For each shape: parameters, FLOPs of one training step (forward + backward, counted by torch's
``FlopCounterMode``), the step's median wall time (forward, backward, AdamW) on a batch of real-glyph compositions
at the pretraining height, and the achieved GFLOP/s as a share of the fp32 matmul peak measured in the same run
on the same threads (a 1024 x 1024 x 1024 product).

    python benchmarks/bench_shapes.py [--shapes tiny base] [--threads 2] [--batch 8] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from unimumer_lib.data import glyphs
from unimumer_lib.data import handwriting
from unimumer_lib.data import captions
from unimumer_lib.models.images import fit_pixels
from unimumer_lib.models.model import num_parameters
from unimumer_lib.models.tiny import SIZES, tiny_model
from unimumer_lib.data.render import render_ink
from unimumer_lib.tasks.spec import PROMPTS


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of an fp32 n x n x n product, median of ``reps``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def batch_of(processor, n: int, height: int, seed: int = 0) -> dict:
    """A training batch of ``n`` real-glyph compositions with the vanilla prompt (labels = input ids)."""
    bank = glyphs.load_bank()
    images, texts = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        caption = captions.sample_caption(rng)
        ink = handwriting.handwrite(caption, rng, bank=bank)
        images.append(fit_pixels(render_ink(ink, height=height).convert("RGB")))
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPTS["vanilla"]}]},
                    {"role": "assistant", "content": [{"type": "text", "text": caption}]}]
        texts.append(processor.apply_chat_template(messages, tokenize=False))
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    batch["labels"] = batch["input_ids"].clone()
    return dict(batch)


def step_cost(shape: str, batch_size: int, steps: int, height: int) -> dict:
    model, processor = tiny_model(shape)
    batch = batch_of(processor, batch_size, height)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    flops = counter.get_total_flops()
    opt.zero_grad()
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    wall = statistics.median(times[1:])
    return {"shape": shape, "params_M": num_parameters(model) / 1e6, "gflop_step": flops / 1e9, "step_s": wall,
            "gflops": flops / wall / 1e9, "seq": int(batch["input_ids"].shape[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=list(SIZES))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--height", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"fp32 matmul peak on {args.threads} thread(s): {peak:.1f} GFLOP/s")
    print("| shape | parameters (M) | GFLOP / step | step (s) | GFLOP/s | share of peak | tokens |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for shape in args.shapes:
        r = step_cost(shape, args.batch, args.steps, args.height)
        print(f"| {shape} | {r['params_M']:.2f} | {r['gflop_step']:.1f} | {r['step_s']:.3f} | {r['gflops']:.1f} | "
              f"{100 * r['gflops'] / peak:.0f} % | {r['seq']} |", flush=True)
    print(f"fp32 matmul peak again: {matmul_peak():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
