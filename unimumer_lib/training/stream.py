"""The pretraining sample stream: unique synthetic expressions drawn from seeded shards (``PRETRAIN_SEED`` + i), in
Hershey or real glyphs, plus (where a recipe asks) the CROHME-train expressions of the pretraining writers, leaving
out every caption of the held-out pool (the synthetic test sets) and of the CROHME test splits; and the record sets
a pretraining curve reads (held-out compositions, Hershey, CROHME 2014); and the lists of captions a base was
trained on (synthetic ones as text, CROHME-train ones as hashes), which the disjointness tests read.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path

from ..core.files import atomic_write_text


PRETRAIN_SEED = 1_000_000  # shard i of the pretraining stream: seed PRETRAIN_SEED + i
SHARD_SIZE = 10_000
HELD_OUT_SEED = 1  # the synthetic test seed of every profile (train uses seed 0)
HELD_OUT_POOL = 3_000  # samples 0..HELD_OUT_POOL-1 of HELD_OUT_SEED: the held-out pool
HEIGHT = 64  # what the smoke/cpu profiles prepare their images at (``prepare --height 64``)
CROHME_STREAM = "crohme_train"  # in a pretraining --work: the CROHME-train part of the stream
CAPTION_LIST = "pretraining_captions.txt.gz"  # beside the weights: every synthetic caption trained on, one per line
CAPTION_HASHES = "pretraining_captions_crohme.sha256.gz"  # and the CROHME-train ones, as caption_hash values


def check_seed(seed: int, what: str = "a synthetic split") -> int:
    """Raise unless ``seed`` is outside the pretraining seed range (so no sample is trained on twice)."""
    if seed >= PRETRAIN_SEED:
        raise ValueError(f"seed {seed} of {what} lies in the pretraining range (>= {PRETRAIN_SEED}): its samples "
                         f"would be the tiny base's pretraining samples")
    return seed


def shard_seeds(n: int, first: int = 0) -> list[int]:
    """Seeds of the shards holding ``n`` pretraining samples, from shard ``first`` on."""
    return [PRETRAIN_SEED + first + i for i in range((n + SHARD_SIZE - 1) // SHARD_SIZE)]


def held_out_captions(n: int = HELD_OUT_POOL, workers: int | None = None) -> frozenset[str]:
    """Captions of the held-out pool (the synthetic test sets of every profile are drawn from it); computed once
    per process."""
    return _held_out_captions(n, workers)


@lru_cache(maxsize=2)
def _held_out_captions(n: int, workers: int | None) -> frozenset[str]:
    from ..data.render import default_workers
    from ..core.workers import imap_ordered

    jobs = [(HELD_OUT_SEED, i) for i in range(n)]
    return frozenset(c for c in imap_ordered(_caption_job, jobs, workers or default_workers(), chunksize=32) if c)


def _caption_job(job: tuple[int, int]) -> str:
    from ..data.synth import synthesize

    seed, index = job
    try:
        return synthesize(index, seed).latex.strip("$")
    except ValueError:
        return ""


def crohme_test_captions(root: Path | None = None) -> set[str]:
    """Captions of the CROHME test splits under ``root`` (default ``paths.crohme_root()``); empty if absent."""
    from ..core.paths import crohme_root
    from ..data.inkml import InkmlError, caption_of, find_inkml, read_inkml

    root = Path(root) if root else crohme_root()
    out = set()
    for split in sorted(root.glob("test*")) if root.is_dir() else []:
        for path in find_inkml(split):
            try:
                out.add(caption_of(read_inkml(path)))
            except (InkmlError, ValueError, RecursionError):
                continue
    return out


def uses_glyphs(seed: int, index: int, share: float) -> bool:
    """Whether sample ``index`` of ``seed`` is written with real glyphs (a draw of its own, so the same whatever
    the order or the workers)."""
    import numpy as np

    return share > 0 and np.random.default_rng([seed, index, 7]).random() < share


def _sample_job(job: tuple) -> tuple[str, str, str | None]:
    """(seed, index, folder, height[, glyph share, writer group]) -> (id, caption, None) with the PNG written, or
    (id, "", reason).

    The ink goes through InkML text and back, as ``synth`` + ``prepare`` do, so images equal the pipeline's."""
    from ..data.inkml import caption_of, ink_from_xml, ink_to_xml
    from ..data.prepare import PNG_OPTIONS
    from ..data.render import render_ink
    from ..data.glyphs import SHIPPED_NAME, bank_for
    from ..data.synth import synth_id, synthesize

    seed, index, folder, height, share, group = (*job, 0.0, None)[:6]
    key = synth_id(seed, index)
    try:
        bank = bank_for(SHIPPED_NAME, group) if uses_glyphs(seed, index, share) else None
        ink = ink_from_xml(ink_to_xml(synthesize(index, seed, bank=bank)).encode(), key)
        buf = io.BytesIO()
        render_ink(ink, height=height).save(buf, format="PNG", **PNG_OPTIONS)
    except ValueError as err:
        return key, "", str(err)
    (Path(folder) / f"{key}.png").write_bytes(buf.getvalue())
    return key, caption_of(ink), None


OTHER_WRITER = "a writer of another group"  # (the reason ``_crohme_job`` leaves a file out: not a reject)


def _render_stream(out: Path, job, jobs: list, exclude: set[str], label: tuple[str, str], workers: int | None,
                   progress: bool, settings: dict, others: bool = False) -> dict:
    """Run ``job`` over ``jobs`` (each -> (id, caption, None) with ``out/images/<id>.png`` written, or (id, "",
    reason)), leave out captions in ``exclude`` (their images deleted), and write ``out/caption.txt`` and the
    marker ``out/stream.json``; ``others``: count files of ``OTHER_WRITER`` apart. Returns the summary, whose
    counts reconcile: read = written + excluded (+ other writers) + rejected."""
    from contextlib import closing

    from tqdm.auto import tqdm

    from ..core.workers import imap_ordered
    from ..data.render import default_workers

    kept, excluded, other, rejects = [], 0, 0, []
    with closing(imap_ordered(job, jobs, workers or default_workers(), chunksize=32)) as results:
        for key, caption, reason in tqdm(results, total=len(jobs), desc=label[0], unit=label[1], mininterval=2.0,
                                         disable=not progress):
            if reason == OTHER_WRITER:
                other += 1
            elif reason is not None:
                rejects.append((key, reason))
            elif caption in exclude:
                excluded += 1
                (out / "images" / f"{key}.png").unlink()
            else:
                kept.append((key, caption))
    atomic_write_text(out / "caption.txt", "".join(f"{k}\t{c}\n" for k, c in kept))
    summary = {"settings": settings, "read": len(jobs), "written": len(kept), "excluded_held_out": excluded,
               **({"other_writers": other} if others else {}), "rejected": len(rejects), "rejects": rejects}
    assert summary["read"] == summary["written"] + excluded + other + len(rejects)
    atomic_write_text(out / "stream.json", json.dumps(summary, indent=1) + "\n")
    return summary


def make_stream(out: Path, n: int, height: int = HEIGHT, exclude: set[str] = frozenset(),
                workers: int | None = None, progress: bool = True, glyph_share: float = 0.0,
                writer_group: str = "pretrain", first_shard: int = 0) -> dict:
    """Render ``n`` pretraining samples into ``out/images`` and write ``out/caption.txt`` (samples whose caption
    is in ``exclude`` are left out and counted); ``glyph_share`` of them in real glyphs of the shipped bank's
    ``writer_group``; shards from ``first_shard`` on. A finished stream (its ``stream.json``) is reused."""



    out = Path(out)
    marker = out / "stream.json"
    settings = {"n": n, "height": height, "seeds": shard_seeds(n, first_shard), "shard_size": SHARD_SIZE}
    if glyph_share:
        settings.update(glyph_share=glyph_share, writer_group=writer_group)
    if marker.exists():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done["settings"] == settings:
            return done
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, str(images), height, glyph_share, writer_group) for k, seed in enumerate(settings["seeds"])
            for i in range(min(SHARD_SIZE, n - k * SHARD_SIZE))]
    return _render_stream(out, _sample_job, jobs, exclude, ("pretraining stream", "sample"), workers, progress,
                          settings)


def _crohme_job(job: tuple) -> tuple[str, str, str | None]:
    """(InkML path, split folder, image folder, height, writer group) -> (id, caption, None) with the PNG written,
    or (id, "", reason): a defective file, or a writer outside the group."""
    from ..data.glyphs import writer_group, writer_key
    from ..data.inkml import InkmlError, caption_of, read_inkml
    from ..data.prepare import PNG_OPTIONS
    from ..data.render import render_ink

    path, src, folder, height, group = job
    key = f"crohme-{Path(path).stem}"
    try:
        ink = read_inkml(Path(path))
        if writer_group(writer_key(ink, Path(path), Path(src))) != group:
            return key, "", OTHER_WRITER
        caption = caption_of(ink)
        buf = io.BytesIO()
        render_ink(ink, height=height).save(buf, format="PNG", **PNG_OPTIONS)
    except (InkmlError, ValueError, RecursionError) as err:
        return key, "", f"{Path(path).name}: {err}"
    (Path(folder) / f"{key}.png").write_bytes(buf.getvalue())
    return key, caption, None


def crohme_train_stream(out: Path, src: Path, height: int = HEIGHT, writer_group: str = "pretrain",
                        exclude: set[str] = frozenset(), workers: int | None = None, progress: bool = True) -> dict:
    """Render the expressions of a CROHME train split ``src`` written by ``writer_group``'s writers (the hands the
    glyph compositions of the stream use; the fine-tuning and test writers' files are left out) into
    ``out/images`` and write ``out/caption.txt``; captions in ``exclude`` are left out and counted. A test split
    is refused (leak guard). Counts reconcile: read = written + excluded + other writers + rejected."""


    from ..data.inkml import find_inkml
    from ..data.splits import TEST_SPLIT_NAME, check_no_test_images, held_out_index

    src, out = Path(src), Path(out)
    if TEST_SPLIT_NAME.fullmatch(src.name):
        raise ValueError(f"{src}: a test split; the pretraining stream is drawn from a train split only")
    files = find_inkml(src)
    check_no_test_images([(p.stem, str(p)) for p in files], src, held_out_index([src.parent]))
    marker = out / "stream.json"
    settings = {"src": src.name, "files": len(files), "height": height, "writer_group": writer_group}
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8"))["settings"] == settings:
        return json.loads(marker.read_text(encoding="utf-8"))
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), str(src), str(images), height, writer_group) for p in files]
    return _render_stream(out, _crohme_job, jobs, exclude, ("CROHME train stream", "file"), workers, progress,
                          settings, others=True)


def crohme_train_root() -> Path:
    """The CROHME train split a recipe with ``crohme_train`` reads (``paths.crohme_root()/train``)."""
    from ..core.paths import crohme_root

    return crohme_root() / "train"


def stream_items(work: Path, recipe, exclude: set[str], workers: int | None) -> tuple[list, dict | None]:
    """(the stream's (id, caption, image) items, the CROHME-train part's summary or None): the synthetic samples,
    then each CROHME-train expression of the recipe's writers ``recipe.crohme_train`` times (ids ``<id>-r<k>``, so
    that each repeat draws its own task)."""
    from ..tasks.build import caption_items

    items, missing = caption_items(work / "stream" / "caption.txt")
    real = None
    if recipe.crohme_train:
        real = crohme_train_stream(work / CROHME_STREAM, crohme_train_root(), recipe.height, recipe.writer_group,
                                   exclude, workers)
        extra, gone = caption_items(work / CROHME_STREAM / "caption.txt")
        missing += gone
        items += [(f"{key}-r{k}", caption, image) for k in range(recipe.crohme_train) for key, caption, image in extra]
    if missing:
        raise FileNotFoundError(f"{work}: {len(missing)} stream image(s) missing, e.g. {missing[0][1]}")
    return items, real


def held_out_records(work: Path, n: int, height: int = HEIGHT, offset: int = 0, glyphs: str | None = None) -> list:
    """``n`` records of the held-out pool (samples ``offset``.. of ``HELD_OUT_SEED``), rendered into ``work``;
    ``glyphs``: written with real glyphs of that writer group of the shipped bank (e.g. ``"test"``)."""
    from ..formats.records import Record

    folder = Path(work) / (f"held_out_h{height}" + (f"_{glyphs}" if glyphs else ""))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(offset, offset + n):
        key, caption, reason = _sample_job((HELD_OUT_SEED, i, str(folder), height, 1.0 if glyphs else 0.0, glyphs))
        if reason is None:
            out.append(Record(id=key, caption=caption, image_path=str(folder / f"{key}.png")))
    return out


def crohme_records(work: Path, split: str, n: int, height: int = HEIGHT, seed: int = 0) -> list:
    """``n`` expressions of a CROHME split (a seeded choice; all if fewer), rendered into ``work`` as
    ``prepare`` renders them: the curve's real-handwriting yardstick (never trained on, never used to choose)."""
    import random

    from ..core.paths import crohme_root
    from ..data.inkml import InkmlError, caption_of, find_inkml, read_inkml
    from ..formats.records import Record
    from ..data.render import render_ink

    files = find_inkml(crohme_root() / split) if (crohme_root() / split).is_dir() else []
    picked = sorted(random.Random(seed).sample(files, min(n, len(files))))
    folder = Path(work) / f"{split}_h{height}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in picked:
        try:
            ink = read_inkml(path)
            image = folder / f"{ink.id}.png"
            render_ink(ink, height=height).save(image)
            out.append(Record(id=ink.id, caption=caption_of(ink), image_path=str(image)))
        except (InkmlError, ValueError):
            continue
    return out


def write_caption_list(stream: Path, out: Path, init: str | Path | None = None) -> Path:
    """``out/pretraining_captions.txt.gz``: the distinct synthetic captions of the stream and of every earlier
    segment (the list of the base ``init`` continues), sorted; the CROHME-train captions trained on go to
    ``CAPTION_HASHES`` as hashes (the text is CROHME's: not shipped). The disjointness tests read both
    (``trained_on``)."""
    import gzip

    from ..core.files import atomic_write_bytes
    from ..formats.records import read_captions

    captions = set(read_captions(Path(stream) / "caption.txt").values())
    real = Path(stream).parent / CROHME_STREAM / "caption.txt"
    hashes = {caption_hash(c) for c in read_captions(real).values()} if real.exists() else set()
    if init:
        from ..models.model import resolve_model_path

        earlier = Path(resolve_model_path(init))
        captions |= read_caption_list(earlier) if (earlier / CAPTION_LIST).exists() else set()
        hashes |= read_caption_hashes(earlier)
    if hashes:
        atomic_write_bytes(Path(out) / CAPTION_HASHES, gzip.compress(("\n".join(sorted(hashes)) + "\n").encode(),
                                                                     mtime=0))
    text = "\n".join(sorted(captions)) + "\n"
    return atomic_write_bytes(Path(out) / CAPTION_LIST, gzip.compress(text.encode(), mtime=0))


def caption_hash(caption: str) -> str:
    """The hash a caption is listed by in ``CAPTION_HASHES`` (SHA-256, 16 hex digits)."""
    import hashlib

    return hashlib.sha256(caption.encode()).hexdigest()[:16]


def read_caption_list(folder: Path) -> set[str]:
    """The synthetic captions a pretrained base was trained on (its ``pretraining_captions.txt.gz``)."""
    import gzip

    return set(gzip.decompress((Path(folder) / CAPTION_LIST).read_bytes()).decode().splitlines())


def read_caption_hashes(folder: Path) -> set[str]:
    """The hashes of the CROHME-train captions a base was trained on (empty when it trained on none)."""
    import gzip

    path = Path(folder) / CAPTION_HASHES
    return set(gzip.decompress(path.read_bytes()).decode().splitlines()) if path.exists() else set()


def trained_on(folder: Path, captions) -> set[str]:
    """Those of ``captions`` the base in ``folder`` was trained on (in its list, or by hash)."""
    listed, hashes = read_caption_list(folder), read_caption_hashes(folder)
    return {c for c in captions if c in listed or caption_hash(c) in hashes}
