"""`prepare mathwriting` speed and memory on one core, on MathWriting-format files made from real CROHME ink.

Writes N MathWriting InkML files (the CROHME test2014 traces with "x y t" points, ``label`` = the raw LaTeX,
``normalizedLabel`` = our caption, metadata annotations) into one flat split folder, then runs
``prepare_crohme(..., workers=1)`` in a fresh process with and without images. Prints files/s, peak RSS, the RSS
growth per file between two corpus sizes (what a 630k-file run would add), and the rate of the same ink read as
CROHME InkML (test2014) for comparison on the same (possibly busy) machine.

    taskset -c 0 python benchmarks/bench_mathwriting.py [--sizes 1000 4000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from unimumer_lib import config
from unimumer_lib.inkml import Ink, caption_of, ink_to_mathwriting_xml, read_inkml_folder
from unimumer_lib.prepare import prepare_crohme
from unimumer_lib.records import CAPTION_FILE, read_captions

FULL_CORPUS = 630_000


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_corpus(folder: Path, n: int) -> dict[str, str]:
    """n MathWriting files under folder/train/; returns {sampleId: normalizedLabel}."""
    inks, _ = read_inkml_folder(config.crohme_root() / "test2014")
    labels = {}
    (folder / "train").mkdir(parents=True)
    for i in range(n):
        ink = inks[i % len(inks)]
        sample_id = f"{i:016x}"
        labels[sample_id] = caption_of(ink)
        meta = {"sampleId": sample_id, "splitTagOriginal": "train", "inkCreationMethod": "human",
                "label": ink.latex or "", "normalizedLabel": labels[sample_id]}
        (folder / "train" / f"{sample_id}.inkml").write_text(
            ink_to_mathwriting_xml(Ink(id=sample_id, traces=ink.traces, annotations=meta)), encoding="utf-8")
    return labels


def run(src: Path, out: Path, images: bool, labels: dict[str, str]) -> tuple[float, float]:
    """(files/s, peak RSS in MiB) of one prepare run, in a fresh process so that its peak is its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_run, src, out, images, labels).result()


def _run(src: Path, out: Path, images: bool, labels: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    summary = prepare_crohme(src, out, workers=1, images=images, height=128)["train"]
    seconds = time.perf_counter() - start
    assert summary == {"read": len(labels), "written": len(labels), "rejected": 0}, summary
    assert read_captions(out / "train" / CAPTION_FILE) == labels
    return len(labels) / seconds, rss_mib()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs=2, default=(1000, 4000))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in args.sizes:
            src = Path(tmp) / f"src{n}"
            labels = write_corpus(src, n)
            captions_rate, rss_captions = run(src, Path(tmp) / f"cap{n}", False, labels)
            images_rate, rss_images = run(src, Path(tmp) / f"img{n}", True, labels)
            rows.append((n, rss_images))
            print(f"{n} files, 1 worker: captions only {captions_rate:,.0f} files/s (peak RSS {rss_captions:.0f} "
                  f"MiB), with 128-px images {images_rate:,.0f} files/s (peak RSS {rss_images:.0f} MiB); "
                  f"captions equal normalizedLabel tokens: {n}/{n}")
        start = time.perf_counter()
        crohme = prepare_crohme(config.crohme_root(), Path(tmp) / "crohme", splits=["test2014"], workers=1)
        print(f"baseline, the same ink as CROHME InkML (test2014, images): "
              f"{crohme['test2014']['read'] / (time.perf_counter() - start):,.0f} files/s")
        (n0, r0), (n1, r1) = rows
        per_file = (r1 - r0) * 2**20 / (n1 - n0)
        print(f"peak RSS growth: {per_file:,.0f} bytes/file -> ~{per_file * FULL_CORPUS / 2**20:,.0f} MiB for "
              f"{FULL_CORPUS:,} files (0 would be constant memory)")


if __name__ == "__main__":
    main()
