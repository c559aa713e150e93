"""Does a CPU recipe teach the tiny Qwen2.5-VL to read? Train on synthetic handwriting, score on unseen writers.

Train and test are drawn from the caption sampler + handwriting synthesiser of ``unimumer_lib.data.synth`` with
different seeds (test captions that also occur in train are dropped, so nothing is seen twice), rendered by
``unimumer_lib.data.prepare`` exactly as the reproduce pipeline does, turned into task rows by
``unimumer_lib.tasks.build``,
trained with ``unimumer_lib.training.train`` (TRL's SFTTrainer) and recognised greedily with
``unimumer_lib.inference.infer``.
Prints held-out ExpRate / <=1 / CER, the same for a blind control (predictions shuffled across test images: what
a model that ignores the image would score), distinct-prediction ratio, per-length ExpRate, wall and CPU time.

    python benchmarks/bench_generalise.py --train 12000 --steps 1500 [--tasks vanilla] [--size tiny] [--lr 1e-3]

Synthesised + rendered splits are cached under ``--work`` (by seed, size and height), so ablations reuse them.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import torch

from unimumer_lib.inference.infer import predict
from unimumer_lib.evaluation.metrics import exprate_by_length, sample_distances, score
from unimumer_lib.models.model import num_parameters
from unimumer_lib.models.tiny import SIZES, tiny_model
from unimumer_lib.data.prepare import load_split, prepare_split
from unimumer_lib.training.callbacks import curve_callback
from unimumer_lib.data.synth import synthesize_dataset
from unimumer_lib.tasks.build import caption_rows, write_task_files
from unimumer_lib.training.train import train
from unimumer_lib.training.sftconfig import PRESETS
from unimumer_lib.training.sftdata import load_sharegpt_dataset, mixture_counts


def synthetic_split(work: Path, n: int, seed: int, height: int) -> list:
    """Records of ``n`` synthetic samples of ``seed`` rendered at ``height`` (cached in ``work``)."""
    raw, prepared = work / f"raw_s{seed}_n{n}", work / f"prep_s{seed}_n{n}_h{height}"
    if not (raw / "synthetic").is_dir():
        synthesize_dataset(n=n, seed=seed, out=raw)
    prepare_split(raw / "synthetic", prepared, height=height)
    return load_split(prepared)


def held_out(train_records, test_records, limit: int) -> list:
    """Test records whose caption never occurs in train (at most ``limit``)."""
    seen = {r.caption for r in train_records}
    return [r for r in test_records if r.caption not in seen][:limit]


def blind_control(gts: list[str], preds: list[str], seed: int = 0) -> dict:
    """Metrics with predictions shuffled across images: the score of a model that ignores the image."""
    shuffled = preds[:]
    random.Random(seed).shuffle(shuffled)
    return score(gts, shuffled).as_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=4000, help="synthetic training expressions (seed --seed)")
    ap.add_argument("--test", type=int, default=200, help="held-out test expressions (seed --seed + 1)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--tasks", nargs="+", default=["vanilla"])
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--preset", default="cpu-read", choices=sorted(PRESETS))
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--scheduler", default=None)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--vision-init", type=float, default=None)
    ap.add_argument("--clip-norm", action="store_true", help="CLIP normalisation (white paper not 0), as before")
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--rope-theta", type=float, default=None)
    ap.add_argument("--mrope", type=int, nargs=2, default=None, help="temporal and height rotary sections")
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--work", default="runs/bench_generalise")
    ap.add_argument("--max-tokens", type=int, default=None,
                    help="diagnostic only: keep train and test captions of at most this many tokens")
    ap.add_argument("--curve", type=int, default=0, help="score the held-out set every N steps (0: at the end only)")
    ap.add_argument("--tag", default="run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    t0, c0 = time.perf_counter(), time.process_time()

    train_records = synthetic_split(work / "data", args.train, args.seed, args.height)
    test_records = held_out(train_records, synthetic_split(work / "data", args.test, args.seed + 1, args.height),
                            args.test)
    if args.max_tokens:
        train_records = [r for r in train_records if len(r.caption.split()) <= args.max_tokens]
        test_records = [r for r in test_records if len(r.caption.split()) <= args.max_tokens]
    data_wall = time.perf_counter() - t0
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in train_records], args.tasks, progress=False)
    files = write_task_files(work / args.tag / "tasks", rows)
    dataset = load_sharegpt_dataset([files[t] for t in args.tasks], seed=args.seed)

    kw = {} if args.vision_init is None else {"vision_init": args.vision_init}
    if args.clip_norm:
        kw["clip_norm"] = True
    variant = {k: v for k, v in (("rope_theta", args.rope_theta), ("mrope", args.mrope), ("patch", args.patch))
               if v is not None}
    if variant:  # a variant of the size preset, registered under the run's tag
        SIZES[args.tag] = dict(SIZES[args.size], **variant)
        args.size = args.tag
    model, processor = tiny_model(args.size, seed=args.seed, **kw)
    overrides = dict(learning_rate=args.lr, lr_scheduler_type=args.scheduler, warmup_steps=args.warmup)
    if args.batch:
        overrides.update(per_device_train_batch_size=args.batch, gradient_accumulation_steps=1)
    curve = curve_callback(processor, test_records, work / args.tag, args.curve, args.max_new_tokens)
    c1 = time.process_time()
    result = train(dataset, model=model, processor=processor, preset=args.preset, out_dir=work / args.tag / "sft",
                   max_steps=args.steps, seed=args.seed, save_steps=10**6, disable_tqdm=True, callbacks=[curve],
                   **{k: v for k, v in overrides.items() if v is not None})
    train_cpu = time.process_time() - c1
    t2 = time.perf_counter()
    preds = predict(result.model, processor, test_records, work / args.tag / "pred.json", batch_size=16,
                    max_new_tokens=args.max_new_tokens, progress=False)
    infer_wall = time.perf_counter() - t2
    gts, hyps = [p.gt for p in preds], [p.pred for p in preds]
    m, blind = score(gts, hyps).as_dict(), blind_control(gts, hyps)
    distinct_caps = len(set(gts))
    seen_batches = result.global_step * (args.batch or PRESETS[args.preset]["per_device_train_batch_size"])

    print(f"recipe {args.tag}: size {args.size} ({num_parameters(model) / 1e6:.2f} M params), preset {args.preset}, "
          f"lr {args.lr or PRESETS[args.preset]['learning_rate']}, tasks {mixture_counts(dataset)}, "
          f"height {args.height}, steps {result.global_step} ({seen_batches} samples seen, "
          f"{seen_batches / len(dataset):.2f} epochs of {len(dataset)})")
    print(f"final logged loss {result.last_loss:.3f}")
    print(f"held-out ({len(preds)} unseen expressions): ExpRate {m['exprate']:.1f}%  <=1 {m['le1']:.1f}%  "
          f"<=2 {m['le2']:.1f}%  CER {m['cer']:.1f}%")
    print(f"blind control (shuffled):          ExpRate {blind['exprate']:.1f}%  <=1 {blind['le1']:.1f}%  "
          f"<=2 {blind['le2']:.1f}%  CER {blind['cer']:.1f}%")
    print(f"distinct predictions: {len(set(hyps))} for {distinct_caps} distinct captions "
          f"({100 * len(set(hyps)) / max(1, distinct_caps):.0f}%)")
    print("ExpRate by length: " + ", ".join(f"{lab}: {er:.0f}% (n={n})" for lab, n, er in
                                            exprate_by_length(gts, sample_distances(gts, hyps)) if n))
    print(f"wall: data {data_wall:.0f} s, train {result.wall_s:.0f} s, inference {infer_wall:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s; CPU time: train {train_cpu:.0f} s, "
          f"total {time.process_time() - c0:.0f} s; load average {os.getloadavg()[0]:.1f}")
    for p in preds[:4]:
        print(f"  {p.gt!r} -> {p.pred!r}")


if __name__ == "__main__":
    main()
