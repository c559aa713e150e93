"""Synthetic data benchmark: inks/s (synth), images/s (prepare), read-back caption equality, CROHME token coverage.

    python benchmarks/bench_synth.py [--n 2000] [--check 10000] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from unimumer_lib.core import paths
from unimumer_lib.data import synth
from unimumer_lib.data.inkml import caption_of, read_inkml_folder
from unimumer_lib.data.prepare import prepare_crohme
from unimumer_lib.formats.records import CAPTION_FILE, read_captions


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def throughput(n: int, workers: int | None, tmp: Path) -> None:
    summary, t_synth = _timed(synth.synthesize_dataset, n, seed=0, out=tmp / "src", workers=workers)
    _, t_prep = _timed(prepare_crohme, tmp / "src", tmp / "out", workers=workers)
    print(f"synth:    {summary['written']} inks in {t_synth:.1f}s = {n / t_synth:.0f} inks/s")
    print(f"prepare:  {n} images in {t_prep:.1f}s = {n / t_prep:.0f} images/s")
    print(f"end to end (ink + image): {n / (t_synth + t_prep):.0f} samples/s "
          f"(inks + images: {2 * n / (t_synth + t_prep):.0f}/s)")


def read_back(n: int, workers: int | None, tmp: Path) -> None:
    summary = synth.synthesize_dataset(n, seed=1, out=tmp / "check", workers=workers)
    prepare_crohme(tmp / "check", tmp / "check_out", images=False, workers=workers)
    written = dict(line.split("\t") for line in (tmp / "check" / synth.CAPTIONS_TSV).read_text().splitlines())
    read = read_captions(tmp / "check_out" / synth.SYNTH_SPLIT / CAPTION_FILE)
    equal = sum(read.get(k) == v for k, v in written.items())
    print(f"read-back: {equal} / {n} inks read back with caption equality ({100 * equal / n:.2f}%); "
          f"synth rejected {summary['rejected']}")


def coverage() -> None:
    captions = []
    if paths.reference_predictions().exists():
        captions += [r["gt"] for r in json.loads(paths.reference_predictions().read_text(encoding="utf-8"))]
    train = paths.crohme_root() / "train"
    if train.is_dir():
        inks, _ = read_inkml_folder(train)
        captions += [caption_of(ink) for ink in inks]
    if not captions:
        print("coverage: no CROHME captions found")
        return
    r = synth.token_coverage(captions, n=20000, seed=0)
    print(f"coverage: {r['covered']} / {r['distinct']} distinct CROHME caption tokens = {100 * r['coverage']:.1f}%")
    print(f"  missing: {' '.join(r['missing']) or '-'}")
    print(f"  emitted but not in CROHME: {' '.join(r['extra']) or '-'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="samples for the throughput run")
    ap.add_argument("--check", type=int, default=10000, help="samples for the read-back equality count")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        throughput(args.n, args.workers, Path(tmp))
        read_back(args.check, args.workers, Path(tmp))
    coverage()


if __name__ == "__main__":
    main()
