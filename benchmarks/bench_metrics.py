"""Benchmark: metrics over 1,000,000 CROHME-like prediction pairs, and the per-sample cost of error analysis.

Pairs are synthesised from the real CROHME 2014 captions (the reference predictions' ``gt``) with random token
edits (substitute / insert / delete, 0-4 per prediction). Target: the full ``metrics.score`` under 20 s.

    python benchmarks/bench_metrics.py [--n 1000000] [--align-n 20000] [--nltk-n 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from unimumer_lib.evaluation import analysis, metrics
from unimumer_lib.core import paths
from unimumer_lib.formats.predictions import Prediction

VARIANTS_PER_CAPTION = 64
EDIT_WEIGHTS = (0.55, 0.2, 0.12, 0.08, 0.05)  # P(0..4 edits): harsher than the reference model (84% exact)


def mutate(tokens: list[str], vocab: list[str], rng: random.Random) -> list[str]:
    out = list(tokens)
    for _ in range(rng.choices(range(len(EDIT_WEIGHTS)), EDIT_WEIGHTS)[0]):
        op = rng.choice(("sub", "ins", "del")) if out else "ins"
        i = rng.randrange(len(out) + (op == "ins"))
        if op == "sub":
            out[i] = rng.choice(vocab)
        elif op == "ins":
            out.insert(i, rng.choice(vocab))
        else:
            del out[i]
    return out


def synthesise(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    captions = [r["gt"] for r in json.loads(paths.reference_predictions().read_text(encoding="utf-8"))]
    vocab = sorted({t for c in captions for t in c.split()})
    pools = [[" ".join(mutate(c.split(), vocab, rng)) for _ in range(VARIANTS_PER_CAPTION)] for c in captions]
    picks = [rng.randrange(len(captions)) for _ in range(n)]
    gts = [captions[k] for k in picks]
    preds = [rng.choice(pools[k]) for k in picks]
    return gts, preds


def timed(label: str, fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    print(f"  {label:<28} {time.perf_counter() - start:7.2f} s")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--align-n", type=int, default=20_000)
    p.add_argument("--nltk-n", type=int, default=20_000, help="pairs for the NLTK BLEU comparison (0 = skip)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    t = time.perf_counter()
    gts, preds = synthesise(args.n, args.seed)
    mean_len = sum(len(g.split()) for g in gts[:10000]) / min(10000, len(gts))
    print(f"synthesised {args.n:,} pairs (mean gt length {mean_len:.1f} tokens) in {time.perf_counter() - t:.1f} s")

    print("metrics.score, by stage:")
    total = time.perf_counter()
    ref, hyp, vocab = timed("tokenise + encode", metrics.encode_pairs, gts, preds)
    d = timed("token edit distances", metrics.distances, ref, hyp)
    bleu = timed("corpus BLEU-4 (numpy)", metrics.corpus_bleu, ref, hyp, len(vocab))
    cer = timed("character error rate", metrics.char_error_rate, gts, preds)
    struct = timed("structure rate", metrics.structure_matches, ref, hyp, vocab)
    staged = time.perf_counter() - total
    print(f"  {'sum of stages':<28} {staged:7.2f} s   (ExpRate {metrics.exprate_at(d, 0):.2f}, BLEU-4 "
          f"{100 * bleu:.2f}, CER {cer:.2f}, structure {100 * struct.mean():.2f})")
    start = time.perf_counter()
    metrics.score(gts, preds)
    whole = time.perf_counter() - start
    print(f"metrics.score end to end: {whole:.2f} s for {args.n:,} pairs "
          f"({1e6 * whole / args.n:.2f} us/pair; target < 20 s: {'OK' if whole < 20 else 'MISSED'})")

    if args.nltk_n:
        from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

        k = min(args.nltk_n, args.n)
        start = time.perf_counter()
        expected = corpus_bleu([[g.split()] for g in gts[:k]], [q.split() for q in preds[:k]],
                               smoothing_function=SmoothingFunction().method4)
        nltk_s = time.perf_counter() - start
        sub_ref, sub_hyp, sub_vocab = metrics.encode_pairs(gts[:k], preds[:k])
        ours = metrics.corpus_bleu(sub_ref, sub_hyp, len(sub_vocab))
        print(f"NLTK corpus_bleu on {k:,} pairs: {nltk_s:.2f} s -> {nltk_s * args.n / k:.1f} s extrapolated to "
              f"{args.n:,}; |ours - NLTK| = {abs(ours - expected):.1e}")

    k = min(args.align_n, args.n)
    sample = [Prediction(str(i), g, q) for i, (g, q) in enumerate(zip(gts[:k], preds[:k]))]
    start = time.perf_counter()
    for s in sample:
        analysis.edit_ops(s.gt.split(), s.pred.split())
    ops_s = time.perf_counter() - start
    start = time.perf_counter()
    analysis.samples_frame(sample)
    frame_s = time.perf_counter() - start
    print(f"error analysis on {k:,} pairs: edit script {1e6 * ops_s / k:.1f} us/sample, "
          f"full samples_frame (script + class + row) {1e6 * frame_s / k:.1f} us/sample")


if __name__ == "__main__":
    main()
