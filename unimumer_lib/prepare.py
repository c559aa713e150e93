"""CROHME-style InkML split folders -> ``OUT/<split>/{images/, caption.txt, manifest.json, rejects.tsv}``.

Each subfolder of the source holding .inkml files (searched recursively) is a split; the first folder below
the split names the source (train/HAMEX/... -> HAMEX), or the split itself when the split is flat. Every file
is either written or rejected with a reason, so ``read = written + rejected``. Reruns are safe: all files are
written atomically, images already rendered with the same settings are kept, stale ones are removed.
Also holds the caption statistics used by the data-exploration notebook.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from .inkml import INKML_SUFFIX, InkmlError, caption_of, find_inkml, read_inkml
from .records import (CAPTION_FILE, IMAGE_SUFFIX, IMAGES_DIR, MANIFEST_FILE, REJECTS_FILE, REJECTS_HEADER,
                      Record, atomic_save_image, atomic_write_text, read_comer, write_captions)
from .render import default_workers, render_ink
from .tree import depth as tree_depth

PREPARE_VERSION = 1  # bump when captions or rendering change, so reruns re-render old images
PNG_OPTIONS = {"compress_level": 3}
# Layouts ``prepare`` reads: split folders of InkML either way; the caption follows the file (``inkml.caption_of``).
KINDS = ("crohme", "mathwriting")


def find_splits(src) -> dict[str, Path]:
    """Split name -> folder, for every direct subfolder of ``src`` that holds .inkml files at any depth."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    return {d.name: d for d in sorted(src.iterdir())
            if d.is_dir() and next(d.rglob(f"*{INKML_SUFFIX}"), None) is not None}


def source_of(path: Path, split_dir: Path) -> str:
    parts = path.relative_to(split_dir).parts
    return parts[0] if len(parts) > 1 else split_dir.name


def _prepare_one(job: tuple[str, str | None, int]) -> tuple[str, str, str | None]:
    """(path, png path or None, height) -> (id, caption, None) or (path, "", reason)."""
    path, png, height = job
    try:
        ink = read_inkml(path)
    except InkmlError as err:
        return path, "", err.reason
    try:
        caption = caption_of(ink)
    except ValueError as err:
        return path, "", f"no caption: {err}"
    if not caption.strip():
        return path, "", "no caption: empty truth annotation and MathML"
    if png is not None:
        atomic_save_image(png, render_ink(ink, height=height), **PNG_OPTIONS)
    return ink.id, caption, None


def _read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def prepare_split(split_dir, out_dir, images: bool = True, height: int = 128, workers: int | None = None,
                  limit: int | None = None, root=None) -> dict:
    """Materialise one split folder; returns its manifest (counts, sources, rejects)."""
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    root = Path(root) if root is not None else split_dir.parent
    paths = find_inkml(split_dir)[:limit] if limit else find_inkml(split_dir)
    previous = _read_manifest(out_dir)
    reuse = (previous.get("version") == PREPARE_VERSION and previous.get("height") == height
             and previous.get("images"))
    image_dir = out_dir / IMAGES_DIR

    rejects: list[tuple[str, str]] = []
    first_seen: dict[str, Path] = {}
    jobs = []
    for path in paths:
        stem = path.stem
        if stem in first_seen:
            rejects.append((path, f"duplicate id {stem!r} (also {first_seen[stem].relative_to(root)})"))
            continue
        first_seen[stem] = path
        png = image_dir / f"{stem}{IMAGE_SUFFIX}"
        render = images and not (reuse and png.exists())
        jobs.append((str(path), str(png) if render else None, height))

    workers = default_workers() if workers is None else workers
    results = []
    progress = dict(total=len(jobs), desc=split_dir.name, unit="expr", mininterval=1.0)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_prepare_one, jobs, chunksize=32), **progress))
    else:
        results = [_prepare_one(j) for j in tqdm(jobs, **progress)]

    records = []
    for (path, _, _), (key, caption, reason) in zip(jobs, results):
        if reason is None:
            records.append(Record(id=key, caption=caption, source=source_of(Path(path), split_dir),
                                  split=split_dir.name))
        else:
            rejects.append((Path(path), reason))
    rejects.sort(key=lambda r: str(r[0]))
    if images:
        _remove_stale_images(image_dir, {r.id for r in records})

    manifest = {
        "version": PREPARE_VERSION,
        "split": split_dir.name,
        "src": str(split_dir),
        "height": height,
        "images": images,
        "read": len(paths),
        "written": len(records),
        "rejected": len(rejects),
        "sources": dict(sorted(Counter(r.source for r in records).items())),
        "source_of": {r.id: r.source for r in records},
        "rejects": [{"file": str(p.relative_to(root)), "reason": why} for p, why in rejects],
    }
    write_captions(out_dir / CAPTION_FILE, records)
    lines = ["\t".join(REJECTS_HEADER)] + [f"{r['file']}\t{r['reason']}" for r in manifest["rejects"]]
    atomic_write_text(out_dir / REJECTS_FILE, "\n".join(lines) + "\n")
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def _remove_stale_images(image_dir: Path, keep: set[str]) -> None:
    if image_dir.is_dir():
        for png in image_dir.glob(f"*{IMAGE_SUFFIX}"):
            if png.stem not in keep:
                png.unlink()
        for tmp in image_dir.glob(".*.tmp"):  # left by an interrupted run
            tmp.unlink()


def prepare_crohme(src, out, splits=None, images: bool = True, height: int = 128, workers: int | None = None,
                   limit: int | None = None) -> dict[str, dict]:
    """Materialise every split under ``src`` (or only ``splits``) into ``out``.

    Returns ``{split: {"read": n, "written": n, "rejected": n}}``; details are in each split's manifest.
    """
    found = find_splits(src)
    if splits:
        missing = [s for s in splits if s not in found]
        if missing:
            raise FileNotFoundError(f"{src}: no InkML split folder(s) {', '.join(missing)} (found: {', '.join(found)})")
        found = {s: found[s] for s in splits}
    if not found:
        raise FileNotFoundError(f"{src}: no subfolder holds .inkml files")
    summary = {}
    for name, folder in found.items():
        m = prepare_split(folder, Path(out) / name, images=images, height=height, workers=workers, limit=limit,
                          root=src)
        summary[name] = {k: m[k] for k in ("read", "written", "rejected")}
    return summary


def load_split(folder) -> list[Record]:
    """Records of a prepared split (captions, image paths, sources from the manifest)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    records = read_comer(folder, split=manifest.get("split", folder.name))
    sources = manifest.get("source_of", {})
    for r in records:
        r.source = sources.get(r.id, "")
    return records


def load_rejects(folder) -> list[dict]:
    """The rejects of a prepared split as [{"file": ..., "reason": ...}]."""
    return _read_manifest(Path(folder)).get("rejects", [])


# ---- caption statistics (used by notebook 01) ---------------------------------------------------

STRUCTURE_COUNTS = {"frac": ("\\frac",), "sqrt": ("\\sqrt",), "sup": ("^",), "sub": ("_",),
                    "sum_int_lim": ("\\sum", "\\int", "\\lim")}


def brace_depth(tokens: list[str]) -> int:
    """Deepest nesting of ``{ }`` groups in a token sequence (0 for a flat caption)."""
    depth = deepest = 0
    for t in tokens:
        if t == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif t == "}":
            depth = max(0, depth - 1)
    return deepest


def caption_stats(caption: str) -> dict:
    """Length, brace nesting depth, layout-tree depth and structure counts of one space-separated caption."""
    tokens = caption.split()
    stats = {"length": len(tokens), "depth": brace_depth(tokens), "tree_depth": None}
    try:
        stats["tree_depth"] = tree_depth(tokens)
    except ValueError:  # a caption the tree parser cannot read keeps tree_depth None
        pass
    for name, names in STRUCTURE_COUNTS.items():
        stats[name] = sum(t in names for t in tokens)
    return stats


def symbol_counts(captions) -> Counter:
    """Token frequencies over captions, without the structural braces."""
    counts = Counter()
    for c in captions:
        counts.update(t for t in c.split() if t not in ("{", "}"))
    return counts


def counts_frame(out):
    """One row per (split, source) of every prepared split under ``out``: expressions written."""
    import pandas as pd

    rows = [{"split": d.name, "source": source, "expressions": n}
            for d in sorted(Path(out).iterdir()) if (d / MANIFEST_FILE).exists()
            for source, n in _read_manifest(d)["sources"].items()]
    return pd.DataFrame(rows, columns=["split", "source", "expressions"])


def reconcile_frame(out):
    """One row per prepared split: read, written, rejected (read = written + rejected)."""
    import pandas as pd

    rows = [{"split": d.name, **{k: _read_manifest(d)[k] for k in ("read", "written", "rejected")}}
            for d in sorted(Path(out).iterdir()) if (d / MANIFEST_FILE).exists()]
    return pd.DataFrame(rows, columns=["split", "read", "written", "rejected"])


def rejects_frame(out):
    """All rejects of the prepared splits under ``out`` as (split, file, reason) rows."""
    import pandas as pd

    rows = [{"split": d.name, **r} for d in sorted(Path(out).iterdir()) if (d / MANIFEST_FILE).exists()
            for r in load_rejects(d)]
    return pd.DataFrame(rows, columns=["split", *REJECTS_HEADER])


def stats_frame(records: list[Record]):
    """One row per record: id, split, source and :func:`caption_stats` columns."""
    import pandas as pd

    return pd.DataFrame([{"id": r.id, "split": r.split, "source": r.source, **caption_stats(r.caption)}
                         for r in records])


def inventory_frame(src):
    """InkML files per (split, source) under ``src``, counted without parsing them."""
    import pandas as pd

    rows = Counter((name, source_of(p, folder)) for name, folder in find_splits(src).items()
                   for p in find_inkml(folder))
    return pd.DataFrame([{"split": s, "source": src_name, "files": n} for (s, src_name), n in sorted(rows.items())],
                        columns=["split", "source", "files"])
