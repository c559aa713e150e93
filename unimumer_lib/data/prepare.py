"""CROHME-style InkML split folders -> ``OUT/<split>/{images/, caption.txt, manifest.json, rejects.tsv}``.

Each subfolder of the source holding .inkml files (searched recursively) is a split; the first folder below
the split names the source (train/HAMEX/... -> HAMEX), or the split itself when the split is flat. Every file
is either written or rejected with a reason, so ``read = written + rejected``.

Reruns are safe. One run at a time writes into an ``--out`` (``outdir.OutputLock``). An image is reused only
when proven fresh: the manifest keeps, per image, the SHA-256 of its source InkML, the height, the prepare
version and the SHA-256 of the PNG, and each image's record is appended to a journal as soon as it is written,
so a killed run leaves an honest partial state (no caption.txt, a manifest marked incomplete, a journal of
what it rendered). Only files this tool recorded as its own are ever deleted; a split folder holding files
it did not make is refused unless ``force``. (The exploration frames of the prepared splits are in ``explore``.)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections import Counter, deque
from contextlib import closing
from pathlib import Path

from tqdm.auto import tqdm

from .inkml import InkmlError, caption_of, check_kind, holds_inkml, ink_from_xml, inkml_listing, listing_path
from ..core.files import atomic_write_bytes, atomic_write_text, atomic_write_with, remove_temp_files
from ..core.outdir import OutputLock, is_empty_dir
from ..formats.records import (CAPTION_FILE, IMAGE_SUFFIX, IMAGES_DIR, MANIFEST_FILE, REJECTS_FILE,
                               Record, read_comer, unsafe_id, write_captions)
from ..formats.rejects import Reject, write_rejects
from .render import check_height, check_stroke, default_workers, render_ink, stroke_width
from ..core.tally import Tally
from ..core.workers import imap_ordered

PREPARE_VERSION = 1  # bump when captions or rendering change, so reruns re-render old images
PNG_OPTIONS = {"compress_level": 3}
JOURNAL_FILE = ".prepare-items.jsonl"  # per-image freshness records of a run still going (or killed)
BAD_NAME_CHARS = ("\t", "\n", "\r")  # caption.txt is "<id>\t<caption>" lines
# Layouts ``prepare`` reads: split folders of InkML either way; the caption follows the file (``inkml.caption_of``).


def find_splits(src) -> dict[str, Path]:
    """Split name -> folder, for every direct subfolder of ``src`` that holds .inkml files at any depth."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    return {d.name: d for d in sorted(src.iterdir()) if d.is_dir() and holds_inkml(d)}


def source_of(path: Path, split_dir: Path) -> str:
    parts = path.relative_to(split_dir).parts
    return parts[0] if len(parts) > 1 else split_dir.name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fresh(png: str, key: dict, previous: dict | None) -> bool:
    """True when ``previous`` (an item record) was made from the same source and settings and ``png`` is it."""
    if not previous or any(previous.get(k) != v for k, v in key.items()) or \
            previous.get("stroke", 1.0) != key.get("stroke", 1.0):
        return False
    try:
        with open(png, "rb") as fh:
            return _sha256(fh.read()) == previous.get("image")
    except OSError:
        return False


def _prepare_one(job: tuple) -> tuple[str, str, str | None, dict | None]:
    """(path, png path or None, height, previous item[, stroke]) -> (id, caption, None, item) or
    (path, "", reason, None).

    ``item`` records the image's freshness key: source hash, height, stroke width (when not the default), version
    and image hash.
    """
    path, png, height, previous, stroke = (*job, 1.0)[:5]
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        ink = ink_from_xml(data, path)
    except OSError as err:
        return path, "", f"cannot read: {err.strerror or err}", None
    except InkmlError as err:
        return path, "", err.reason, None
    except Exception as err:  # one file that cannot be read is a reject, never the end of the run
        return path, "", f"cannot read: {type(err).__name__}: {err}", None
    try:
        caption = caption_of(ink)
    except (ValueError, RecursionError) as err:
        return path, "", f"no caption: {err}", None
    except Exception as err:
        return path, "", f"no caption: {type(err).__name__}: {err}", None
    if not caption.strip():
        return path, "", "no caption: empty truth annotation and MathML", None
    if png is None:
        return ink.id, caption, None, None
    key = {"source": _sha256(data), "height": height, "version": PREPARE_VERSION,
           **({"stroke": stroke} if stroke != 1.0 else {})}
    if _fresh(png, key, previous):
        return ink.id, caption, None, previous
    try:
        buf = io.BytesIO()
        render_ink(ink, height=height, line_width=stroke_width(height, stroke)).save(buf, format="PNG",
                                                                                    **PNG_OPTIONS)
    except Exception as err:  # one file that cannot be drawn is a reject, never the end of the run
        return path, "", f"cannot render: {type(err).__name__}: {err}", None
    atomic_write_bytes(png, buf.getvalue())
    return ink.id, caption, None, {**key, "image": _sha256(buf.getvalue())}


def _read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _is_ours(manifest: dict) -> bool:
    return isinstance(manifest, dict) and "version" in manifest and "split" in manifest


def _previous_items(out_dir: Path, manifest: dict) -> dict[str, dict]:
    """Image records of earlier runs: the manifest's, updated by a killed run's journal."""
    return dict(manifest.get("items") or {}) | dict(_journal_rows(out_dir / JOURNAL_FILE))


def _check_out_dir(split_dir: Path, out_dir: Path, manifest: dict, force: bool) -> None:
    src, out = split_dir.resolve(), out_dir.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ValueError(f"{out_dir}: output folder overlaps the source split {split_dir}; choose another --out")
    for folder in (out_dir, out_dir / IMAGES_DIR):
        if folder.is_symlink():  # deleting or replacing through it would touch files outside --out
            raise ValueError(f"{folder}: a symlink (to {folder.resolve()}); prepare only writes into real folders "
                             f"of --out, never through a link. Choose another --out")
    if not force and not _is_ours(manifest) and not (out_dir / JOURNAL_FILE).exists() and not is_empty_dir(out_dir):
        from ..core.provenance import not_ours

        raise not_ours(out_dir, "unimumer prepare", MANIFEST_FILE, "choose an empty --out, or --force to add our "
                       "files beside the others (nothing of theirs is deleted)")


def _refuse_clashes(out_dir: Path, targets) -> None:
    """Refuse, before anything is written, when a file this run would write already exists in a folder prepare
    did not make: ``--force`` adds our files beside the user's, and never replaces one of theirs."""
    clash = [p for p in targets if p.exists()]
    if clash:
        raise FileExistsError(f"{clash[0]}: a file prepare did not write (no {MANIFEST_FILE} of ours in {out_dir})"
                              f"{f' and {len(clash) - 1} more' if len(clash) > 1 else ''}; --force adds our files "
                              f"beside yours but never replaces one: move it away, or choose another --out")


def _check_limit(limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1 (or none for all files), got {limit!r}")


def prepare_split(split_dir, out_dir, images: bool = True, height: int = 128, workers: int | None = None,
                  limit: int | None = None, root=None, force: bool = False, stroke: float = 1.0) -> dict:
    """Materialise one split folder; returns its manifest (counts, sources, rejects). ``stroke``: the pen width as
    a multiple of the renderer's default (``render.stroke_width``)."""
    height, stroke = check_height(height), check_stroke(stroke)
    _check_limit(limit)
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    root = Path(root) if root is not None else split_dir.parent
    previous = _read_manifest(out_dir)
    _check_out_dir(split_dir, out_dir, previous, force)
    with OutputLock(out_dir):
        return _prepare_locked(split_dir, out_dir, images, height, workers, limit, root, previous, stroke)


def stratified(paths: list[Path], limit: int | None, split_dir: Path) -> list[Path]:
    """The first ``limit`` files taken round-robin over the split's sources (its sub-folders: HAMEX, KAIST, ...,
    each in file order), so a sample represents every source; in the original order. All with None."""
    if not limit or limit >= len(paths):
        return paths
    by_source: dict[str, list[Path]] = {}
    for path in paths:
        by_source.setdefault(source_of(path, split_dir), []).append(path)
    queues = [iter(files) for _, files in sorted(by_source.items())]
    picked: set[Path] = set()
    while len(picked) < limit:
        for queue in queues:
            path = next(queue, None)
            if path is not None and len(picked) < limit:
                picked.add(path)
    return [p for p in paths if p in picked]


def _prepare_locked(split_dir, out_dir, images, height, workers, limit, root, previous, stroke=1.0) -> dict:
    """One split, in memory that does not grow with the corpus: the files are listed as one compact array, the
    captions, sources and image records stream to disk as they come, and the manifest is written from there."""
    listing = inkml_listing(split_dir)
    if limit:
        keep = set(stratified([listing_path(split_dir, e) for e in listing], limit, split_dir))
        listing = listing[[listing_path(split_dir, e) in keep for e in listing]]
    image_dir = out_dir / IMAGES_DIR
    if not _is_ours(previous):  # a folder prepare did not make (--force): write beside its files, never over them
        _refuse_clashes(out_dir, [out_dir / CAPTION_FILE, out_dir / REJECTS_FILE, out_dir / MANIFEST_FILE,
                                  *((image_dir / f"{listing_path(split_dir, e).stem}{IMAGE_SUFFIX}" for e in listing)
                                    if images else ())])
    items = _previous_items(out_dir, previous)
    owned = set(items) | set(previous.get("source_of") or {})  # ids whose image an earlier run wrote
    remove_temp_files(out_dir, image_dir)
    (out_dir / CAPTION_FILE).unlink(missing_ok=True)  # no caption.txt until this run has finished
    settings = {"made_by": "unimumer prepare", "version": PREPARE_VERSION, "split": split_dir.name,
                "src": os.path.abspath(split_dir),
                "height": height, "images": images, **({"stroke": stroke} if stroke != 1.0 else {})}
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps({**settings, "complete": False, "items": items},
                                                          indent=1, ensure_ascii=False) + "\n")
    (out_dir / JOURNAL_FILE).write_text("", encoding="utf-8")  # the manifest above now holds what it held
    rejects = _listing_rejects(listing, split_dir, root)
    workers = default_workers() if workers is None else workers
    if images:
        image_dir.mkdir(parents=True, exist_ok=True)
    counts = {"written": 0, "sources": Counter(), "total": len(listing) - len(rejects)}
    with tempfile.TemporaryFile("w+", encoding="utf-8", dir=out_dir) as sources:
        def write_captions_streamed(tmp):
            with open(tmp, "w", encoding="utf-8") as captions, \
                    open(out_dir / JOURNAL_FILE, "a", encoding="utf-8") as journal:
                _prepare_stream(_jobs(listing, split_dir, image_dir if images else None, height, items, rejects,
                                      stroke),
                                workers, split_dir, captions, sources, journal, rejects, counts)

        try:
            atomic_write_with(out_dir / CAPTION_FILE, write_captions_streamed)
        except BaseException:
            remove_temp_files(out_dir, image_dir)  # the workers are gone: what they left half-written goes too
            raise
        written = None
        if (images and owned) or not images or limit:  # the ids this run wrote, when something needs them
            written = dict(_journal_rows(out_dir / JOURNAL_FILE))
        if images and not limit:  # a full run: our images of files gone or now rejected go; nothing else does
            for stem in owned - set(written or ()):
                (image_dir / f"{stem}{IMAGE_SUFFIX}").unlink(missing_ok=True)
            kept = None  # the items are this run's journal, streamed into the manifest
        else:  # a partial run keeps the other images it made (and their records) for the next full run
            kept = dict(sorted(({k: v for k, v in items.items() if (image_dir / f"{k}{IMAGE_SUFFIX}").exists()}
                                | (written or {})).items()))
        rejects.sort(key=lambda r: str(r[0]))
        summary = {**settings, "complete": True, **Tally(len(listing), counts["written"], len(rejects)).as_dict(),
                   "sources": dict(sorted(counts["sources"].items())),
                   "rejects": [{"file": str(p.relative_to(root)), "reason": why} for p, why in rejects]}
        write_rejects(out_dir / REJECTS_FILE, [Reject(r["file"], "", r["reason"]) for r in summary["rejects"]])
        sources.seek(0)
        _write_manifest(out_dir, summary, sources, kept)
    (out_dir / JOURNAL_FILE).unlink(missing_ok=True)
    return summary


def _listing_rejects(listing, split_dir: Path, root: Path) -> list[tuple[Path, str]]:
    """Files refused before reading: names caption.txt cannot hold, and every file whose id (stem) an earlier file
    of the listing already has (found from 8-byte digests, not a set of names)."""
    import numpy as np

    rejects, digests = [], np.empty(len(listing), dtype=np.uint64)
    for i, entry in enumerate(listing):
        stem = listing_path(split_dir, entry).stem
        if any(c in stem for c in BAD_NAME_CHARS):
            rejects.append((listing_path(split_dir, entry), "file name holds a tab or newline, which caption.txt "
                                                            "cannot hold"))
            stem = f"{BAD_NAME_CHARS[0]}{i}"  # a key no other file has: never a duplicate as well
        digests[i] = int.from_bytes(hashlib.blake2b(stem.encode("utf-8", "surrogateescape"), digest_size=8).digest(),
                                    "little")
    ordered = np.sort(digests)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])  # digests held by more than one file
    del ordered
    for value in repeated:  # only these files are ever looked at by name (none, usually)
        first, *later = np.flatnonzero(digests == value)
        earlier = listing_path(split_dir, listing[first])
        for i in later:
            path = listing_path(split_dir, listing[i])
            if path.stem == earlier.stem:  # (equal digests of different ids: not a duplicate)
                rejects.append((path, f"duplicate id {path.stem!r} (also {earlier.relative_to(root)})"))
    return rejects


def _jobs(listing, split_dir: Path, image_dir: Path | None, height: int, items: dict, rejects: list,
          stroke: float = 1.0):
    """The ``_prepare_one`` jobs of the listing, one at a time, skipping the files already refused."""
    refused = {str(p) for p, _ in rejects}
    for entry in listing:
        path = listing_path(split_dir, entry)
        if str(path) in refused:
            continue
        png = str(image_dir / f"{path.stem}{IMAGE_SUFFIX}") if image_dir is not None else None
        yield str(path), png, height, items.get(path.stem), stroke


def _prepare_stream(jobs, workers: int, split_dir: Path, captions, sources, journal, rejects: list,
                    counts: dict) -> None:
    """Run the jobs, writing each caption line, ``id<TAB>source`` line and image record as its result comes."""

    pending = deque()

    def remembered(jobs):
        for job in jobs:
            pending.append(job[0])
            yield job

    total = counts.get("total")
    with closing(imap_ordered(_prepare_one, remembered(jobs), workers, chunksize=32)) as results, \
            tqdm(total=total, desc=split_dir.name, unit="expr", mininterval=1.0) as bar:
        for key, caption, reason, item in results:
            path = pending.popleft()
            bar.update()
            if reason is not None:
                rejects.append((Path(path), reason))
                continue
            if "\t" in key or "\n" in key or "\n" in caption:
                raise ValueError(f"record {key!r}: id/caption must not contain tabs or newlines")
            source = source_of(Path(path), split_dir)
            captions.write(f"{key}\t{caption}\n")
            sources.write(f"{key}\t{source}\n")
            counts["written"] += 1
            counts["sources"][source] += 1
            if item is not None:
                journal.write(json.dumps({"id": key, **item}) + "\n")
                journal.flush()


def _write_manifest(out_dir: Path, summary: dict, sources, items: dict | None) -> Path:
    """The finished manifest, streamed: ``summary``'s keys, ``source_of`` from the ``id<TAB>source`` lines and
    ``items`` (None: this run's journal lines, in file order)."""
    dump = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as out:
            out.write("{\n" + "".join(f" {dump(k)}: {dump(v)},\n" for k, v in summary.items()))
            out.write(' "source_of": {')
            for n, line in enumerate(sources):
                key, source = line.rstrip("\n").split("\t")
                out.write(("," if n else "") + f"\n  {dump(key)}: {dump(source)}")
            out.write('\n },\n "items": {')
            rows = ((k, v) for k, v in items.items()) if items is not None else _journal_rows(out_dir / JOURNAL_FILE)
            for n, (key, item) in enumerate(rows):
                out.write(("," if n else "") + f"\n  {dump(key)}: {dump(item)}")
            out.write("\n }\n}\n")

    return atomic_write_with(out_dir / MANIFEST_FILE, write)


def _journal_rows(journal: Path):
    """(id, image record) of each complete line of a journal (none when it is missing); a line cut short by a
    kill is passed over."""
    if not journal.exists():
        return
    with open(journal, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                row = json.loads(line)
                yield row.pop("id"), row
            except (ValueError, KeyError, AttributeError):
                continue


def prepare_crohme(src, out, splits=None, images: bool = True, height: int = 128, workers: int | None = None,
                   limit: int | None = None, force: bool = False, stroke: float = 1.0,
                   kind: str | None = None) -> dict[str, dict]:
    """Materialise every split under ``src`` (or only ``splits``) into ``out``; ``stroke``: the pen width as a
    multiple of the renderer's default; ``kind`` (``unimumer prepare <kind>``): ``inkml.check_kind``.

    Returns ``{split: {"read": n, "written": n, "rejected": n}}``; details are in each split's manifest.
    """
    height = check_height(height)
    _check_limit(limit)
    found = find_splits(src)
    if splits:
        missing = [s for s in splits if s not in found]
        if missing:
            raise FileNotFoundError(f"{src}: no InkML split folder(s) {', '.join(missing)} (found: {', '.join(found)})")
        found = {s: found[s] for s in splits}
    if not found:
        raise FileNotFoundError(f"{src}: no subfolder holds .inkml files")
    if kind is not None:
        check_kind(found.values(), kind)
    summary = {}
    with OutputLock(out):
        for name, folder in found.items():
            m = prepare_split(folder, Path(out) / name, images=images, height=height, workers=workers,
                              limit=limit, root=src, force=force, stroke=stroke)
            summary[name] = Tally.of(m).as_dict()
    return summary


def _finished_manifest(folder: Path) -> dict:
    manifest = _read_manifest(folder)
    if manifest.get("complete") is False:
        raise ValueError(f"{folder}: an unfinished prepare run (killed or still going); rerun prepare")
    return manifest


def prepared_splits(out) -> list[tuple[Path, dict]]:
    """(split folder, manifest) of every prepared split under ``out``."""
    return [(d, _finished_manifest(d)) for d in sorted(Path(out).iterdir()) if (d / MANIFEST_FILE).exists()]


def load_split(folder) -> list[Record]:
    """Records of a prepared split (captions, image paths, sources from the manifest)."""
    folder = Path(folder)
    manifest = _finished_manifest(folder)
    records = read_comer(folder, split=manifest.get("split", folder.name))
    sources = manifest.get("source_of", {})
    for r in records:
        r.source = sources.get(r.id, "")
    return records


def load_rejects(folder) -> list[dict]:  # a prepared split's rejects: [{"file": ..., "reason": ...}]
    return _finished_manifest(Path(folder)).get("rejects", [])


# ---- caption folders (HME100K-style: caption.txt + jpg images) ----------------------------------

def copy_caption_split(src, out_dir, limit: int | None = None) -> dict:
    """Copy the first ``limit`` records (all with None) of a caption folder (``records.read_comer`` layout, e.g.
    HME100K ``train/``) into ``out_dir``: ``caption.txt`` (ids without image suffix) + ``images/`` (files as
    they are). A record whose image is missing is rejected into ``rejects.tsv``; read = written + rejected."""
    import shutil

    _check_limit(limit)
    src, out_dir = Path(src), Path(out_dir)
    records = read_comer(src)[:limit] if limit is not None else read_comer(src)
    kept, rejects = [], []
    for r in records:
        why = unsafe_id(r.id)
        if why or r.image_path is None:
            rejects.append({"file": r.id, "reason": why or f"image not found in {src}"})
            continue
        image = Path(r.image_path)
        (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, out_dir / IMAGES_DIR / f"{r.id}{image.suffix.lower()}")
        kept.append(r)
    write_captions(out_dir / CAPTION_FILE, kept)
    write_rejects(out_dir / REJECTS_FILE, [Reject(r["file"], "", r["reason"]) for r in rejects])
    return {"split": src.name, **Tally(len(records), len(kept), len(rejects)).as_dict()}
