"""`prepare mathwriting` speed and memory on one core, on MathWriting-format files made from real CROHME ink.

Writes N MathWriting InkML files (the CROHME test2014 traces with "x y t" points, ``label`` = the raw LaTeX,
``normalizedLabel`` = our caption, metadata annotations) into one flat split folder, then runs
``prepare_crohme(..., workers=1)`` in a fresh process with and without images. Prints files/s, the child's own
peak RSS (``VmHWM``: see ``peak_memory``), the RSS growth per file between consecutive corpus sizes (what a
630k-file run would add; the child holds nothing but the prepare run, the captions are checked in this process
afterwards), and the rate of the same ink read as CROHME
InkML (test2014) for comparison on the same (possibly busy) machine.

    taskset -c 0 python benchmarks/bench_mathwriting.py [--sizes 10000 100000] [--no-images]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from peak_memory import peak_rss_mib
from unimumer_lib.core import paths
from unimumer_lib.data.inkml import Ink, caption_of, ink_to_mathwriting_xml, read_inkml_folder
from unimumer_lib.data.prepare import prepare_crohme
from unimumer_lib.formats.records import CAPTION_FILE, read_captions

FULL_CORPUS = 630_000


def write_corpus(folder: Path, n: int) -> dict[str, str]:
    """n MathWriting files under folder/train/; returns {sampleId: normalizedLabel}."""
    inks, _ = read_inkml_folder(paths.crohme_root() / "test2014")
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
    """(files/s, peak RSS in MiB) of one prepare run, in a fresh process so that its peak is its own; the captions
    are compared with ``normalizedLabel`` here, after the child has gone."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        rate, rss = pool.submit(_run, src, out, images, len(labels)).result()
    assert read_captions(out / "train" / CAPTION_FILE) == labels
    return rate, rss


def _run(src: Path, out: Path, images: bool, n: int) -> tuple[float, float]:
    start = time.perf_counter()
    summary = prepare_crohme(src, out, workers=1, images=images, height=128)["train"]
    seconds = time.perf_counter() - start
    assert summary == {"read": n, "written": n, "rejected": 0}, summary
    return n / seconds, peak_rss_mib()  # the child's own peak: not ru_maxrss (see peak_memory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=(1000, 4000), help="corpus sizes (two or more)")
    ap.add_argument("--no-images", action="store_true", help="captions only (skip the runs with images)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in args.sizes:
            src = Path(tmp) / f"src{n}"
            labels = write_corpus(src, n)
            captions_rate, rss_captions = run(src, Path(tmp) / f"cap{n}", False, labels)
            line = f"{n} files, 1 worker: captions only {captions_rate:,.0f} files/s (peak RSS {rss_captions:.0f} MiB)"
            rss_images = None
            if not args.no_images:
                images_rate, rss_images = run(src, Path(tmp) / f"img{n}", True, labels)
                line += f", with 128-px images {images_rate:,.0f} files/s (peak RSS {rss_images:.0f} MiB)"
            rows.append((n, rss_captions, rss_images))
            print(f"{line}; captions equal normalizedLabel tokens: {n}/{n}", flush=True)
            shutil.rmtree(Path(tmp) / f"img{n}", ignore_errors=True)
            shutil.rmtree(src, ignore_errors=True)
        start = time.perf_counter()
        crohme = prepare_crohme(paths.crohme_root(), Path(tmp) / "crohme", splits=["test2014"], workers=1)
        print(f"baseline, the same ink as CROHME InkML (test2014, images): "
              f"{crohme['test2014']['read'] / (time.perf_counter() - start):,.0f} files/s")
        for (n0, c0, i0), (n1, c1, i1) in zip(rows, rows[1:]):
            for what, r0, r1 in (("captions only", c0, c1), ("with images", i0, i1)):
                if r0 is not None:
                    per_file = (r1 - r0) * 2**20 / (n1 - n0)
                    print(f"peak RSS growth {n0:,} -> {n1:,} files, {what}: {per_file:,.0f} bytes/file -> "
                          f"~{per_file * FULL_CORPUS / 2**20:,.0f} MiB more for {FULL_CORPUS:,} files")


if __name__ == "__main__":
    main()
