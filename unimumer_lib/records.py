"""The one record type and the dataset file formats it is read from and written to.

Formats (CoMER/TAMER conventions): ``<split>/caption.txt`` with one ``<id>\\t<caption>`` line,
``<split>/images/<id>.png``, ``<split>/manifest.json``, ``<split>/rejects.tsv`` (file, reason);
the LLaMA-Factory "sharegpt" JSON; Hugging Face ``datasets.Dataset`` with an ``Image`` feature.
All writers are atomic: they write a temporary file beside the target and rename it into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

CAPTION_FILE = "caption.txt"
IMAGES_DIR = "images"
MANIFEST_FILE = "manifest.json"
REJECTS_FILE = "rejects.tsv"
REJECTS_HEADER = ("file", "reason")
IMAGE_SUFFIX = ".png"

# LLaMA-Factory "sharegpt" layout (dataset_info: formatting=sharegpt, messages/images columns).
SHAREGPT_MESSAGES = "messages"
SHAREGPT_IMAGES = "images"
ROLE_KEY = "from"
CONTENT_KEY = "value"
ROLE_USER = "human"
ROLE_ASSISTANT = "gpt"
ROLE_SYSTEM = "system"
IMAGE_TOKEN = "<image>"
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


# ---- atomic writes -------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_with(path, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file in ``path``'s folder, then ``os.replace`` it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; others (a training container) must read our outputs
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_image(path, image, **params) -> Path:
    """Save a PIL image atomically; the format follows the suffix of ``path``."""
    import io

    buf = io.BytesIO()
    image.save(buf, format=Path(path).suffix.lstrip(".").upper().replace("JPG", "JPEG"), **params)
    return atomic_write_bytes(path, buf.getvalue())


# ---- CoMER caption.txt + images/ -----------------------------------------------------------------

def read_captions(path) -> dict[str, str]:
    """``<id>\\t<caption>`` lines -> {id: caption}; a malformed or duplicate line raises naming file:line."""
    path = Path(path)
    captions: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{n}: expected '<id>\\t<caption>', got {line[:60]!r}")
        if key in captions:
            raise ValueError(f"{path}:{n}: duplicate id {key!r}")
        captions[key] = caption.strip()
    return captions


def write_captions(path, records: Iterable[Record]) -> Path:
    lines = []
    for r in records:
        if "\t" in r.id or "\n" in r.id or "\n" in r.caption:
            raise ValueError(f"record {r.id!r}: id/caption must not contain tabs or newlines")
        lines.append(f"{r.id}\t{r.caption}\n")
    return atomic_write_text(path, "".join(lines))


def read_comer(folder, split: str | None = None, source: str = "") -> list[Record]:
    """A CoMER/HME100K-style folder (``caption.txt`` + ``images/<id>.png``) -> records with image paths."""
    folder = Path(folder)
    images = folder / IMAGES_DIR
    split = folder.name if split is None else split
    records = []
    for key, caption in read_captions(folder / CAPTION_FILE).items():
        image = images / f"{key}{IMAGE_SUFFIX}"
        records.append(Record(id=key, caption=caption, image_path=str(image) if image.exists() else None,
                              source=source, split=split))
    return records


def write_comer(folder, records: list[Record]) -> Path:
    """Write ``caption.txt`` and, for records holding a PIL image, ``images/<id>.png``."""
    folder = Path(folder)
    for r in records:
        if r.image is not None:
            atomic_save_image(folder / IMAGES_DIR / f"{r.id}{IMAGE_SUFFIX}", r.image)
    return write_captions(folder / CAPTION_FILE, records)


# ---- LLaMA-Factory sharegpt JSON ----------------------------------------------------------------

def validate_sharegpt_row(row: Any, index: int) -> None:
    """Raise ValueError naming the record index and the reason when ``row`` is not a valid sharegpt record."""
    def bad(reason: str):
        raise ValueError(f"sharegpt record {index}: {reason}")

    if not isinstance(row, dict):
        bad(f"expected an object, got {type(row).__name__}")
    messages = row.get(SHAREGPT_MESSAGES)
    if not isinstance(messages, list) or not messages:
        bad(f"'{SHAREGPT_MESSAGES}' must be a non-empty list")
    images = row.get(SHAREGPT_IMAGES, [])
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        bad(f"'{SHAREGPT_IMAGES}' must be a list of non-empty path strings")
    turns = [m for m in messages if not (isinstance(m, dict) and m.get(ROLE_KEY) == ROLE_SYSTEM)]
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {ROLE_KEY, CONTENT_KEY}:
            bad(f"message {j} must have exactly the keys '{ROLE_KEY}' and '{CONTENT_KEY}'")
        if m[ROLE_KEY] not in (ROLE_USER, ROLE_ASSISTANT, ROLE_SYSTEM):
            bad(f"message {j} has role {m[ROLE_KEY]!r}, expected {ROLE_USER!r} or {ROLE_ASSISTANT!r}")
        if not isinstance(m[CONTENT_KEY], str):
            bad(f"message {j} value must be a string")
    for j, m in enumerate(turns):
        want = ROLE_USER if j % 2 == 0 else ROLE_ASSISTANT
        if m[ROLE_KEY] != want:
            bad(f"turn {j} is {m[ROLE_KEY]!r}, expected {want!r} (turns alternate, starting with {ROLE_USER!r})")
    if turns[-1][ROLE_KEY] != ROLE_ASSISTANT:
        bad(f"last turn must be {ROLE_ASSISTANT!r}")
    placeholders = sum(m[CONTENT_KEY].count(IMAGE_TOKEN) for m in messages)
    if placeholders != len(images):
        bad(f"{placeholders} {IMAGE_TOKEN} placeholders but {len(images)} images")


def read_json_list(path) -> list:
    """A JSON file holding a list; errors name the file and where the JSON breaks."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def read_sharegpt(path) -> list[dict]:
    """Read and validate a sharegpt JSON list; errors name the file, record index and reason."""
    path = Path(path)
    rows = read_json_list(path)
    for i, row in enumerate(rows):
        try:
            validate_sharegpt_row(row, i)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return rows


def write_sharegpt(path, rows: list[dict]) -> Path:
    """Validate every row, then write the JSON list atomically."""
    for i, row in enumerate(rows):
        validate_sharegpt_row(row, i)
    return atomic_write_text(path, json.dumps(rows, ensure_ascii=False, indent=1) + "\n")


def sharegpt_row(prompt: str, answer: str, images: list[str]) -> dict:
    """One single-turn record; the prompt gets one ``<image>`` placeholder per image if it lacks them."""
    if prompt.count(IMAGE_TOKEN) != len(images):
        prompt = IMAGE_TOKEN * len(images) + prompt
    return {SHAREGPT_MESSAGES: [{ROLE_KEY: ROLE_USER, CONTENT_KEY: prompt},
                                {ROLE_KEY: ROLE_ASSISTANT, CONTENT_KEY: answer}],
            SHAREGPT_IMAGES: list(images)}


# ---- Hugging Face datasets -----------------------------------------------------------------------

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


def export_parquet(records_or_dataset, path) -> Path:
    """Write records (or a Dataset) as parquet with the image bytes embedded, atomically."""
    ds = records_or_dataset
    if isinstance(ds, list):
        ds = to_hf_dataset(ds)
    return atomic_write_with(path, ds.to_parquet)


def from_hf_dataset(ds) -> list[Record]:
    """Inverse of :func:`to_hf_dataset` (images decoded to PIL)."""
    return [Record(id=row["id"], caption=row["caption"], image=row["image"], source=row.get("source", ""),
                   split=row.get("split", "")) for row in ds]


# ---- any layout -> records (issue 13 extends this) -------------------------------------------------

COMER_IMAGE_DIR = "img"
COMER_IMAGE_SUFFIXES = (".bmp", ".png", ".jpg")


def _comer_img_records(folder: Path) -> list[Record]:
    """CoMER folder: ``caption.txt`` + ``img/<id>.bmp|png|jpg``."""
    records = []
    for key, caption in read_captions(folder / CAPTION_FILE).items():
        found = [folder / COMER_IMAGE_DIR / f"{key}{s}" for s in COMER_IMAGE_SUFFIXES]
        image = next((p for p in found if p.exists()), None)
        records.append(Record(id=key, caption=caption, image_path=str(image) if image else None, split=folder.name))
    return records


def _prompt_json_records(path: Path, root: Path) -> list[Record]:
    """An official Uni-MuMER prompt JSON (sharegpt list with ``images`` and ``messages``; role/content or
    from/value keys): id = image file stem, gt = the assistant turn ("" when absent)."""
    records = []
    for i, row in enumerate(read_json_list(path)):
        images = row.get(SHAREGPT_IMAGES) if isinstance(row, dict) else None
        if not images or not isinstance(images, list):
            raise ValueError(f"{path}: record {i}: no '{SHAREGPT_IMAGES}' list")
        answers = [m.get("content", m.get(CONTENT_KEY, "")) for m in row.get(SHAREGPT_MESSAGES, [])
                   if m.get("role", m.get(ROLE_KEY)) in ("assistant", ROLE_ASSISTANT)]
        image = Path(images[0]) if Path(images[0]).is_absolute() else root / images[0]
        records.append(Record(id=Path(images[0]).stem, caption=answers[-1].strip() if answers else "",
                              image_path=str(image) if image.exists() else None, split=path.stem))
    return records


def load_records(path, root=None) -> list[Record]:
    """Records from a prepared split folder (``caption.txt`` + ``images/``), a CoMER folder (``caption.txt`` +
    ``img/``) or an official prompt JSON; relative image paths of a JSON resolve against ``root`` (default:
    the JSON's folder). A record whose image is missing keeps ``image_path`` None."""
    path = Path(path)
    if path.is_dir() and (path / CAPTION_FILE).is_file():
        return _comer_img_records(path) if (path / COMER_IMAGE_DIR).is_dir() else read_comer(path)
    if path.is_file() and path.suffix == ".json":
        return _prompt_json_records(path, Path(root) if root else path.parent)
    raise ValueError(f"{path}: not a caption.txt folder (images/ or img/) nor a prompt JSON file")
