"""The one record type and the dataset file formats it is read from and written to.

Formats (CoMER/TAMER conventions): ``<split>/caption.txt`` with one ``<id>\\t<caption>`` line,
``<split>/images/<id>.png``, ``<split>/manifest.json``, ``<split>/rejects.tsv`` (``formats.rejects``: source = the
file, reason);
the LLaMA-Factory "sharegpt" JSON; Hugging Face ``datasets.Dataset`` with an ``Image`` feature.
All writers are atomic: they write a temporary file beside the target and rename it into place.

``load_records`` reads the layouts HMER users already have (see its docstring): our prepared splits,
CoMER/TAMER/PosFormer folders (``img/`` or ``images/``, png/jpg/bmp), HME100K folders and the official
Uni-MuMER prompt JSON files.
"""

from __future__ import annotations

from collections import Counter

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..core.files import atomic_save_image, atomic_write_text
from .rejects import Reject, rejects_text
from .sharegpt import (ASSISTANT_ROLES, CONTENT_KEYS, ROLE_KEYS, SHAREGPT_IMAGES, SHAREGPT_MESSAGES, message_field,
                       read_json_list)



CAPTION_FILE = "caption.txt"
IMAGES_DIR = "images"
MANIFEST_FILE = "manifest.json"
REJECTS_FILE = "rejects.tsv"
IMAGE_SUFFIX = ".png"
# Readers also accept the layouts of CoMER/TAMER/PosFormer (img/*.bmp) and HME100K (images/*.jpg).
IMAGE_DIRS = (IMAGES_DIR, "img")
IMAGE_SUFFIXES = (IMAGE_SUFFIX, ".jpg", ".jpeg", ".bmp")
HF_COLUMNS = ("id", "image", "caption", "source", "split")


@dataclass
class Record:
    """One expression: id (InkML file stem), caption (space-separated LaTeX tokens), and its image.

    ``image`` is a PIL image when loaded in memory; ``image_path`` points at the file on disk.
    """

    id: str
    caption: str
    image: Any = None
    image_path: str | None = None
    source: str = ""
    split: str = ""
    error: str = ""  # why it has no image (set where the reason is known: a path outside its root, an unsafe id)


def read_captions(path) -> dict[str, str]:
    """``<id>\\t<caption>`` lines (or ``<id> <caption>``, as CoMER reads them) -> {id: caption};
    a malformed or duplicate line raises naming file:line."""
    path = Path(path)
    captions: dict[str, str] = {}
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a BOM would otherwise become part of the first id
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                         f"save it as UTF-8") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        if not sep:  # CoMER's own reader splits on any whitespace; some released caption files use spaces
            key, _, caption = line.strip().partition(" ")
            sep = caption.strip()
        if not sep or not key.strip():
            raise ValueError(f"{path}:{n}: expected '<id>\\t<caption>', got {line[:60]!r}")
        if key in captions:
            raise ValueError(f"{path}:{n}: duplicate id {key!r}")
        captions[key] = " ".join(caption.split())  # a tab or a double space inside a caption is one separator
    return captions


def write_captions(path, records: Iterable[Record]) -> Path:
    lines = []
    for r in records:
        if "\t" in r.id or "\n" in r.id or "\n" in r.caption:
            raise ValueError(f"record {r.id!r}: id/caption must not contain tabs or newlines")
        lines.append(f"{r.id}\t{r.caption}\n")
    return atomic_write_text(path, "".join(lines))


def image_dirs(folder) -> list[Path]:
    """The image folders of a split folder that exist: ``images/``, ``img/``, ``<name>_images/`` (HME100K)."""
    folder = Path(folder)
    names = (*IMAGE_DIRS, f"{folder.name}_images")
    return [folder / name for name in names if (folder / name).is_dir()]


def unsafe_id(key: str) -> str | None:
    """Why a record id cannot name a file in its folder (a path separator, ``..``, a NUL, nothing), or None."""
    if not key.strip() or key in (".", ".."):
        return "empty or dot id"
    if "/" in key or "\\" in key or "\0" in key or ".." in Path(key).parts:
        return f"id {key!r} names a path (separators or '..'), not a file in its folder"
    return None


def find_image(dirs: list[Path], key: str) -> Path | None:
    """The image of ``key`` in ``dirs``: ``<key>`` itself when it carries an image suffix (HME100K's
    ``train_1.jpg``), else ``<key>`` + the first of IMAGE_SUFFIXES that exists. An id that names a path
    (``unsafe_id``) never finds one: nothing outside ``dirs`` is read."""
    if unsafe_id(key):
        return None
    names = [key] if Path(key).suffix.lower() in IMAGE_SUFFIXES else [key + s for s in IMAGE_SUFFIXES]
    for folder in dirs:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def read_comer(folder, split: str | None = None, source: str = "") -> list[Record]:
    """A CoMER/TAMER/PosFormer/HME100K-style folder (``caption.txt`` + ``images/`` or ``img/``, png/jpg/bmp)
    -> records with image paths (None where the image is missing). Ids keep no image suffix."""
    folder = Path(folder)
    dirs = image_dirs(folder)
    split = folder.name if split is None else split
    records = []
    for key, caption in read_captions(folder / CAPTION_FILE).items():
        image = find_image(dirs, key)
        stem = key[:-len(Path(key).suffix)] if Path(key).suffix.lower() in IMAGE_SUFFIXES else key
        why = unsafe_id(key) or ("" if image else f"no image for {key!r} in {', '.join(map(str, dirs)) or folder}")
        records.append(Record(id=stem, caption=caption, image_path=os.path.abspath(image) if image else None,
                              source=source, split=split, error="" if image else f"{folder / CAPTION_FILE}: {why}"))
    return records


def write_comer(folder, records: list[Record]) -> Path:
    """Write ``caption.txt`` and, for records holding a PIL image, ``images/<id>.png``."""
    folder = Path(folder)
    for r in records:
        if r.image is not None:
            atomic_save_image(folder / IMAGES_DIR / f"{r.id}{IMAGE_SUFFIX}", r.image)
    return write_captions(folder / CAPTION_FILE, records)


def inside_root(path, root) -> bool:
    """True when ``path`` (joined to ``root`` if relative) stays in ``root`` as written: ``..`` may not climb
    out. Checked lexically, so a symlinked image folder inside a dataset still reads (readers only)."""
    root = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(root, path))
    return full == root or full.startswith(root.rstrip(os.sep) + os.sep)


def locate_image(image: str, root=None, base=None, absolute_in_root: bool = True,
                 absolute_in_base: bool = False) -> tuple[Path | None, str]:
    """(path, "") for an image path as written in a data file, else (None, why). Relative paths resolve
    against ``root`` when given, else against ``base`` (the data file's folder) or the working directory, and
    must stay inside the folder they resolve against; an absolute path must lie inside ``root`` when given
    (``absolute_in_root`` False: a viewer showing the absolute paths a prediction file records), and, with
    ``absolute_in_base`` and no ``root``, inside ``base`` (a data file the user gave without a root)."""
    path = Path(image)
    if path.is_absolute():
        if root is not None and absolute_in_root and not inside_root(path, root):
            return None, f"image path {image!r} lies outside the root {root}"
        if root is None and absolute_in_base and base is not None and not inside_root(path, base):
            return None, (f"image path {image!r} lies outside the data file's folder {base}; give the folder its "
                          f"images are in as the root (--root)")
        return (path, "") if path.is_file() else (None, f"image {image!r} not found")
    folders = [Path(root)] if root is not None else [Path(base or "."), Path.cwd()]
    escapes = [f for f in folders if not inside_root(path, f)]
    if escapes:
        return None, f"image path {image!r} climbs out of {escapes[0]} ('..'); refused"
    for folder in folders:
        if (folder / path).is_file():
            return folder / path, ""
    return None, f"image {image!r} not found under {' or '.join(map(str, folders))}"


def resolve_image(image: str, root=None, base=None, absolute_in_root: bool = True) -> Path | None:
    """The file of an image path as written in a data file (see :func:`locate_image`); None when there is none
    or the path leaves its root."""
    return locate_image(image, root, base, absolute_in_root)[0]


TASKS_MARKER = ".unimumer-tasks.json"  # beside the task files a build wrote (name -> sha256): their provenance


def _made_by_tasks(path: Path) -> bool:
    """Whether ``path`` is a task file ``unimumer tasks`` wrote, unchanged since (its folder's ``TASKS_MARKER``
    holds its digest): its absolute image paths are the build's own, not a data file's claim."""
    import hashlib

    try:
        marker = json.loads((path.parent / TASKS_MARKER).read_text(encoding="utf-8"))
        return marker["files"][path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_prompt_json(path, root=None) -> list[Record]:
    """An official Uni-MuMER prompt JSON (a sharegpt list of ``{"messages", "images"}``) -> records.

    The caption is the last assistant message; the id is the image file stem; image paths (e.g.
    ``./data/CROHME/2014/images/18_em_0.jpg``) resolve against ``root`` (see ``resolve_image``); without a root,
    an absolute path must lie inside the file's folder, unless ``unimumer tasks`` wrote the file.
    A row without a messages list raises, naming the file and row; a row without an assistant answer (a test
    set shipped without ground truth) gets the caption "".
    """
    path = Path(path)
    records, seen = [], {}
    for i, row in enumerate(read_json_list(path)):
        messages = row.get(SHAREGPT_MESSAGES) if isinstance(row, dict) else None
        if not isinstance(messages, list):
            raise ValueError(f"{path}: row {i}: expected an object with a '{SHAREGPT_MESSAGES}' list")
        answers = [m for m in messages if isinstance(m, dict) and message_field(m, ROLE_KEYS) in ASSISTANT_ROLES]
        caption = message_field(answers[-1], CONTENT_KEYS) if answers else ""
        if not isinstance(caption, str):
            raise ValueError(f"{path}: row {i}: the assistant message holds no text")
        images = row.get(SHAREGPT_IMAGES) or []
        first = images[0] if images and isinstance(images[0], str) else None
        key = Path(first).stem if first else f"row{i}"
        if key in seen:
            raise ValueError(f"{path}: rows {seen[key]} and {i} share the id {key!r} (image file stem)")
        seen[key] = i
        image, why = locate_image(first, root, path.parent, absolute_in_base=not _made_by_tasks(path)) if first \
            else (None, "the row names no image")
        records.append(Record(id=key, caption=caption.strip(), image_path=os.path.abspath(image) if image else None,
                              source=path.stem, split=path.stem, error=f"{path}: row {i}: {why}" if why else ""))
    return records


def is_image_file(path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() in IMAGE_SUFFIXES


def open_image_checked(path) -> tuple[Any, str]:
    """(the decoded PIL image, "") or (None, why), naming the file: missing, 0-byte, truncated, not an image, a
    decompression bomb (over PIL's pixel limit)."""
    import warnings

    from PIL import Image

    from ..core.errors import describe

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return im.copy(), ""
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return None, f"{path}: unreadable image: {describe(err)}"


def image_records(paths) -> list[Record]:
    """Records of plain image files, without captions (``caption`` ""): what ``infer`` reads to recognise a
    user's own images. A folder gives its image files (sorted). Ids are the file stems, or the file names where
    two files share a stem (``a.png``, ``a.jpg``)."""
    files = []
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if is_image_file(p))
            if not found:
                raise FileNotFoundError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) and no {CAPTION_FILE}")
            files += found
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        elif is_image_file(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
    same = [k for k, c in Counter(os.path.realpath(p) for p in files).items() if c > 1]
    if same:
        raise ValueError(f"image {same[0]} given twice")
    return [Record(id=key, caption="", image_path=os.path.abspath(p)) for key, p in zip(_image_ids(files), files)]


def _image_ids(files: list[Path]) -> list[str]:
    """Ids of image files: the stem; the file name where two share a stem (``a.png``, ``a.jpg``); the path from
    their common folder where two share a name (``d1/a.png``, ``d2/a.png``)."""
    stems, names = Counter(p.stem for p in files), Counter(p.name for p in files)
    if max(names.values(), default=1) == 1:
        return [p.stem if stems[p.stem] == 1 else p.name for p in files]
    common = Path(os.path.commonpath([os.path.abspath(p.parent) for p in files]))
    return [p.stem if stems[p.stem] == 1 else p.name if names[p.name] == 1
            else Path(os.path.abspath(p)).relative_to(common).as_posix() for p in files]


def read_any(path, root=None) -> list[Record]:
    """Records of ``path`` in whichever layout it has (see ``load_records``); images may be missing."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return read_prompt_json(path, root)
    folder = path.parent if path.is_file() else path
    if not (folder / CAPTION_FILE).is_file():
        raise FileNotFoundError(f"{path}: neither a prompt JSON file nor a folder holding {CAPTION_FILE}")
    if path.is_file() and path.name != CAPTION_FILE:
        raise ValueError(f"{path}: expected {CAPTION_FILE} or a .json prompt file")
    return read_comer(folder)


def load_records(path, root=None, unlabelled: bool = False) -> list[Record]:
    """Read any supported dataset layout into records (``image_path`` None where the image is missing):

    - a prepared split folder (``caption.txt`` + ``images/<id>.png``), or its ``caption.txt``;
    - a CoMER/TAMER/PosFormer folder (``caption.txt`` + ``img/`` or ``images/``, png/jpg/bmp);
    - an HME100K folder (``caption.txt`` whose ids may end in ``.jpg`` + ``images/`` or ``<split>_images/``);
    - an official Uni-MuMER prompt JSON (sharegpt ``messages`` + ``images``; images resolved against ``root``).

    Raises ValueError naming the file when it holds no record with both a caption and an image. With
    ``unlabelled``, an image file or a folder of images without ``caption.txt`` is read too (``image_records``:
    captions "", for recognising one's own images).
    """
    if unlabelled and (is_image_file(path) or (Path(path).is_dir() and not (Path(path) / CAPTION_FILE).exists())):
        return image_records(path)
    records = read_any(path, root)
    usable = [r for r in records if r.caption.split() and (r.image_path or r.image is not None)]
    if not usable:
        where = f" (image paths resolved against {root})" if root is not None else ""
        raise ValueError(f"{path}: no usable record: {len(records)} read, none with both a caption and an image "
                         f"file{where}")
    return records


def to_hf_dataset(records: list[Record]):
    """Records -> ``datasets.Dataset`` with columns id, image (``Image`` feature), caption, source, split."""
    from datasets import Dataset, Features, Image, Value

    def image_of(r: Record):
        if r.image is not None:
            return r.image
        if r.image_path is not None:
            return r.image_path
        raise ValueError(f"record {r.id!r}: no image or image_path")

    features = Features({"id": Value("string"), "image": Image(), "caption": Value("string"),
                         "source": Value("string"), "split": Value("string")})
    data = {"id": [r.id for r in records], "image": [image_of(r) for r in records],
            "caption": [r.caption for r in records], "source": [r.source for r in records],
            "split": [r.split for r in records]}
    return Dataset.from_dict(data, features=features)


PARQUET_REJECTS = ".rejects.tsv"  # beside an exported parquet file: the records left out (id, reason)


def export_parquet(records_or_dataset, path) -> Path:
    """Write records (or a Dataset) as parquet with the image bytes embedded: the file stands alone (images given
    as paths are read into it, as ``push_to_hub`` does, not referenced). A record whose image cannot be read
    (missing, 0 bytes, not an image, a decompression bomb) is left out and listed with its reason in
    ``<path stem>.rejects.tsv``, written with the parquet file as one unit: read = written + rejected."""
    import io

    from datasets.table import embed_table_storage

    from ..core.files import atomic_write_group

    path, ds, rejects = Path(path), records_or_dataset, []
    if isinstance(ds, list):
        kept = []
        for r in ds:
            why = "" if r.image is not None else (open_image_checked(r.image_path)[1] if r.image_path
                                                  else "no image or image_path")
            (rejects.append((r.id, why, r.image_path or "")) if why else kept.append(r))
        ds = to_hf_dataset(kept) if kept else None
        if ds is None:
            raise ValueError(f"{path}: no record with a readable image ({len(rejects)} rejected, e.g. "
                             f"{rejects[0][0]!r}: {rejects[0][1]})" if rejects else f"{path}: no records")
    ds = ds.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
    buf = io.BytesIO()
    ds.to_parquet(buf)
    atomic_write_group({path: buf.getvalue(), path.with_suffix(PARQUET_REJECTS):
                        rejects_text(Reject(source, key, why) for key, why, source in rejects)})
    return path


def from_hf_dataset(ds) -> list[Record]:
    """Inverse of :func:`to_hf_dataset` (images decoded to PIL)."""
    return [Record(id=row["id"], caption=row["caption"], image=row["image"], source=row.get("source", ""),
                   split=row.get("split", "")) for row in ds]
