"""Prediction files: the Uni-MuMER JSON list ``[{"img_id", "gt", "pred", "image_path"}, ...]``, read and written.

``image_path`` is optional (the official metric script reads only ``gt`` and ``pred``).

Extra keys (e.g. ``dataset``, ``raw`` model output) are kept. Reading validates every record and raises one
``ValueError`` naming the file, the record index/id and the reason; duplicate ids are an error unless asked to keep
them (they are never silently merged); ``missing_ids`` reports ids expected but absent.

Files in the wild come in several encodings and layouts, so the reader takes UTF-8 with or without a BOM,
UTF-16/32 (with or without a BOM, as ``json`` detects them) and JSON Lines (one record per line); anything
else (Latin-1 bytes, an empty list) is an error naming the file. A folder stands for every ``*_pred.json``
below it, as the official evaluation scripts walk their result folders.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Iterable

from ..core.files import atomic_write_text

PRED_SUFFIX = "_pred.json"
RUN_SUFFIX = ".run.json"
# What a rejected record (an unreadable image: ``error`` set, pred "") is scored as: a token no caption holds, so an
# image that could not be read never counts as read correctly (with gt "" too, as for unlabelled images).
UNREADABLE = "<unreadable>"  # beside a prediction file this project's inference wrote: its settings (infer.py)
REQUIRED_KEYS = ("img_id", "gt", "pred")
KNOWN_KEYS = (*REQUIRED_KEYS, "image_path")
STRING_KEYS = ("img_id", "gt", "pred")


@dataclass(slots=True)
class Prediction:
    img_id: str
    gt: str
    pred: str
    image_path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def error(self) -> str:
        """Why the record was rejected (``infer`` writes it as the ``error`` key), "" for a prediction."""
        return self.extra.get("error") or ""

    @property
    def scored_pred(self) -> str:
        """The prediction as scored: ``UNREADABLE`` for a rejected record."""
        return UNREADABLE if self.error else self.pred

    def to_json(self) -> dict:
        row = {k: v for k, v in asdict(self).items() if k != "extra"}
        return {**row, **self.extra}

    @classmethod
    def from_json(cls, row, path="<rows>", index: int = 0) -> "Prediction":
        """One JSON record as a Prediction, validated as ``read_predictions`` validates (the same errors)."""
        return _check_record(Path(path), index, row)


def _check_record(path: Path, index: int, rec) -> Prediction:
    if isinstance(rec, dict):  # the usual record, checked without building any message
        img_id, gt, pred, image_path = rec.get("img_id"), rec.get("gt"), rec.get("pred"), rec.get("image_path")
        if (isinstance(img_id, str) and isinstance(gt, str) and isinstance(pred, str)
                and (image_path is None or isinstance(image_path, str))
                and isinstance(rec.get("dataset", ""), (str, type(None)))):
            known = 3 + ("image_path" in rec)
            extra = {k: v for k, v in rec.items() if k not in KNOWN_KEYS} if len(rec) > known else {}
            return Prediction(img_id, gt, pred, image_path or "", extra)
    raise ValueError(_record_problem(path, index, rec))


def _record_problem(path: Path, index: int, rec) -> str:
    """What is wrong with a record that failed the check, naming the file, the index and the id."""
    where = f"{path}: record {index}"
    if not isinstance(rec, dict):
        return f"{where}: expected an object, got {type(rec).__name__}"
    if isinstance(rec.get("img_id"), str):
        where += f" (img_id {rec['img_id']!r})"
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        return f"{where}: missing key(s) {', '.join(missing)}"
    for key in STRING_KEYS:
        if not isinstance(rec[key], str):
            return f"{where}: {key!r} must be a string, got {type(rec[key]).__name__}"
    if not isinstance(rec.get("dataset", ""), (str, type(None))):
        return f"{where}: 'dataset' must be a string or null, got {type(rec['dataset']).__name__}"
    return f"{where}: 'image_path' must be a string or null, got {type(rec['image_path']).__name__}"


def duplicate_ids(preds: Iterable[Prediction]) -> dict[str, int]:
    """{img_id: count} for ids that occur more than once."""
    counts = Counter(p.img_id for p in preds)
    return {k: c for k, c in counts.items() if c > 1}


def missing_ids(preds: Iterable[Prediction], expected: Iterable[str]) -> list[str]:
    """Expected ids that have no prediction, in the expected order."""
    have = {p.img_id for p in preds}
    return [i for i in expected if i not in have]


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode(json.detect_encoding(data))  # utf-8-sig drops a BOM; utf-16/32 found by their zeros
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 or UTF-16 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                         f"save it as UTF-8") from None


def _json_lines(path: Path, text: str) -> list:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {n}: malformed JSON Lines record: {err.msg}") from None
    return rows


def read_records(path: Path | str) -> list:
    """The records of a JSON list or JSON Lines file, whatever its Unicode encoding; errors name the file."""
    path = Path(path)
    text = _decode(path, path.read_bytes())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg != "Extra data":  # "Extra data" after a first complete value: JSON Lines
            raise ValueError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
        data = _json_lines(path, text)
    if isinstance(data, dict) and path.suffix.lower() == ".jsonl":
        data = [data]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records (or JSON Lines), got {type(data).__name__}")
    return data


def prediction_files(paths: Iterable[Path | str]) -> list[Path]:
    """Paths with every folder replaced by the prediction files below it (sorted): the official ``*_pred.json``
    ones, else the ones this project's inference wrote (``<split>.json`` beside its ``<split>.json.run.json``); a
    folder without either is an error."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob(f"*{PRED_SUFFIX}") if p.is_file()) or sorted(
                p for p in path.rglob("*.json") if p.is_file() and p.with_name(p.name + RUN_SUFFIX).is_file())
            if not found:
                raise FileNotFoundError(f"{path}: folder holds no prediction file (no *{PRED_SUFFIX}, and no "
                                        f"<name>.json beside the <name>.json{RUN_SUFFIX} that `unimumer infer` "
                                        f"writes)")
            files += found
        else:
            files.append(path)
    return files


def read_predictions(path: Path | str, allow_duplicates: bool = False) -> list[Prediction]:
    """Read and validate a prediction file (see the module docstring for the layouts read)."""
    path = Path(path)
    data = read_records(path)
    if not data:
        raise ValueError(f"{path}: no prediction records (an empty list)")
    preds = [_check_record(path, i, rec) for i, rec in enumerate(data)]
    dups = duplicate_ids(preds)
    if dups and not allow_duplicates:
        shown = ", ".join(f"{k} (x{c})" for k, c in list(dups.items())[:10])
        raise ValueError(f"{path}: {len(dups)} duplicate img_id(s): {shown}")
    return preds


def read_rows(path: Path | str) -> list[Prediction]:
    """Every record of a prediction file this project wrote, validated, as it is: an empty list and repeated ids
    (several samples of one image) are kept, where ``read_predictions`` refuses them."""
    path = Path(path)
    return [_check_record(path, i, rec) for i, rec in enumerate(read_records(path))]


def read_columns(path: Path | str, keys: tuple[str, ...] = ("gt", "pred")) -> dict[str, list]:
    """Columns of a prediction file, ``{key: [value per record]}`` (``dataset`` and other extra keys give None
    where a record lacks them), validated as ``read_predictions`` validates (the same errors), without building
    a ``Prediction`` per record: what scoring a large file needs."""
    path = Path(path)
    data = read_records(path)
    if not data:
        raise ValueError(f"{path}: no prediction records (an empty list)")
    try:  # C-level passes (itemgetter, dict.get, map(type)); a missing key or a non-dict record raises
        columns = {key: list(map(itemgetter(key), data)) for key in STRING_KEYS}
        valid = all(set(map(type, columns[key])) == {str} for key in STRING_KEYS) and all(
            set(map(type, map(dict.get, data, repeat(key)))) <= {str, type(None)} for key in ("image_path", "dataset"))
    except (TypeError, KeyError):
        valid = False
    if not valid:  # the record at fault, named as read_predictions names it
        for i, rec in enumerate(data):
            _check_record(path, i, rec)
    ids = columns["img_id"]
    if len(set(ids)) != len(ids):
        dups = duplicate_ids(Prediction(i, "", "") for i in ids)
        shown = ", ".join(f"{k} (x{c})" for k, c in list(dups.items())[:10])
        raise ValueError(f"{path}: {len(dups)} duplicate img_id(s): {shown}")
    return {key: columns[key] if key in columns else list(map(dict.get, data, repeat(key))) for key in keys}


def scored_preds(preds: list, errors: list) -> list[str]:
    """Predictions as scored: ``UNREADABLE`` where the record carries an ``error`` (a rejected image)."""
    return [UNREADABLE if e else p for p, e in zip(preds, errors)]


def predictions_text(path: Path | str, preds: Iterable[Prediction | dict]) -> str:
    """Records validated (errors name ``path``) and serialised as the Uni-MuMER JSON list."""
    rows = [p.to_json() if isinstance(p, Prediction) else p for p in preds]
    for i, row in enumerate(rows):
        _check_record(Path(path), i, row)
    return json.dumps(rows, ensure_ascii=False, indent=1)


def write_predictions(path: Path | str, preds: Iterable[Prediction | dict]) -> Path:
    """Validate and write records as the Uni-MuMER JSON list (UTF-8)."""
    return atomic_write_text(Path(path), predictions_text(path, preds))
