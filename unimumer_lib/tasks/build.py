"""Multi-task training records (vanilla, Tree-CoT, symbol counting, error find/fix): prompts and builders.

Every record is one LLaMA-Factory sharegpt row made by ``records.sharegpt_row``: the user turn is ``<image>``
followed by the published prompt (for the EDL tasks: prompt, a newline, the formula), the assistant turn is
the target (tree/can/error_fix: reasoning, a newline, the caption).  Files: ``<task>.json`` per task,
``rejects.tsv`` (``formats.rejects``: source = the task, item = the id, reason) and ``dataset_info.json`` entries
named like the released ones.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable

from . import edl
from ..core.files import atomic_write_text
from ..formats.records import (IMAGE_SUFFIX, IMAGES_DIR, TASKS_MARKER, inside_root, load_records, open_image_checked,
                               read_any)
from ..formats.rejects import Reject, read_rejects, write_rejects
from ..formats.sharegpt import IMAGE_TOKEN, read_sharegpt, sharegpt_row, write_sharegpt
from ..data.splits import check_no_test_images, held_out_index
from ..core.tally import Tally
from .spec import ANSWER_SEPARATOR, BASE_TASK, FORMULA_SEPARATOR, PROMPTS, TASKS, get as task_spec, names as task_names
from ..latex.tree import TreeError

DATASET_INFO = "dataset_info.json"
TASK_REJECTS = "rejects.tsv"
MIXTURE_FILE = "mixture.json"  # the ratios notebook 02 chose for notebook 03 (write_mixture)
# LLaMA-Factory dataset_info columns/tags for the rows made by records.sharegpt_row
SHAREGPT_INFO = {"formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
                 "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}


def dataset_name(task: str, prefix: str = "crohme_train") -> str:
    """The released dataset_info name: ``crohme_train`` for vanilla, ``crohme_train_<task>`` otherwise."""
    _check_tasks([task])
    return prefix if task == BASE_TASK else f"{prefix}_{task}"


def _check_tasks(tasks: Iterable[str]) -> list[str]:
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    twice = sorted({t for t in tasks if tasks.count(t) > 1})
    if twice:
        raise ValueError(f"task(s) named twice: {', '.join(twice)} (each task's rows are written once)")
    return tasks


def __getattr__(name: str):
    """``CAPTION_TASKS`` / ``EDL_TASKS``: the registered tasks of each kind (``taskspec``), as registered now."""
    kinds = {"CAPTION_TASKS": "caption", "EDL_TASKS": "edl"}
    if name in kinds:
        return task_names(kinds[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def caption_target(task: str, caption: str) -> str:
    """Assistant target of a caption task; TreeError when the tree cannot carry the caption."""
    spec = task_spec(task)
    if spec.kind != "caption":
        raise ValueError(f"{task!r} is not a caption task ({', '.join(task_names('caption'))})")
    return spec.target(caption)


def caption_row(task: str, caption: str, image: str) -> dict:
    """One vanilla/tree/can sharegpt row (``<image>`` first, then the published prompt)."""
    return sharegpt_row(PROMPTS[task], caption_target(task, caption), [image])


def edl_row(task: str, record: dict) -> dict:
    """An EDL task's row from an ``edl.edl_records`` record, as its spec builds it (``TaskSpec.edl_row``): the
    prompt, then the formula it carries (error_find: the prediction; error_fix: the marked prediction) -> the
    answer (the marked prediction; the correction log, then the corrected caption)."""
    formula, answer = task_spec(task).edl_row(record)
    return sharegpt_row(PROMPTS[task] + FORMULA_SEPARATOR + formula, answer, [record["image"]])


def split_answer(target: str) -> tuple[str, str]:
    """(reasoning, caption) of a tree/can/error_fix target or model output: the caption is the last line."""
    head, _, caption = target.rpartition(ANSWER_SEPARATOR)
    return head, caption


def caption_rows(items: Iterable[tuple[str, str, str]], tasks: Iterable[str] | None = None,
                 progress: bool = True) -> tuple[dict[str, list[dict]], list[tuple[str, str, str]]]:
    """(id, caption, image) items -> ({task: rows}, rejects [(id, task, reason)])."""
    from tqdm.auto import tqdm

    tasks = _check_tasks(task_names("caption") if tasks is None else tasks)
    rows: dict[str, list[dict]] = {t: [] for t in tasks}
    rejects = []
    items = list(items)
    for key, caption, image in tqdm(items, desc="caption tasks", disable=not progress):
        for task in tasks:
            if not caption.split():
                rejects.append((key, task, "empty caption"))
                continue
            try:
                rows[task].append(caption_row(task, caption, image))
            except TreeError as err:
                rejects.append((key, task, f"tree: {err}"))
            except RecursionError:
                rejects.append((key, task, "caption nested too deeply to parse"))
    return rows, rejects


def edl_task_rows(records: Iterable[dict], tasks: Iterable[str] | None = None) -> dict[str, list[dict]]:
    """EDL records -> {task: rows} for each EDL-kind task asked for (every registered one by default)."""
    records = list(records)
    asked = _check_tasks(task_names("edl") if tasks is None else tasks)
    return {t: [edl_row(t, r) for r in records] for t in asked if task_spec(t).kind == "edl"}


def mixture(rows: dict[str, list[dict]], ratios: dict[str, float] | None = None, seed: int = 0) -> list[dict]:
    """Shuffled multi-task mixture: ``ratio`` times each task's rows (1 = all, 0.5 = a seeded half, 2 = twice).

    Tasks missing from ``ratios`` get 1.
    """
    rng = random.Random(seed)
    mixed = []
    for task, task_rows in rows.items():
        ratio = (ratios or {}).get(task, 1.0)
        if ratio < 0:
            raise ValueError(f"ratio of {task!r} must be >= 0, got {ratio}")
        whole, part = divmod(round(ratio * len(task_rows)), len(task_rows)) if task_rows else (0, 0)
        mixed += task_rows * whole + rng.sample(task_rows, part)
    rng.shuffle(mixed)
    return mixed


def task_of(row: dict) -> str:
    """The task of a row, from its prompt."""
    prompt = row["messages"][0]["value"].replace(IMAGE_TOKEN, "", 1)
    for task in TASKS:
        if prompt == PROMPTS[task] or prompt.startswith(PROMPTS[task] + FORMULA_SEPARATOR):
            return task
    raise ValueError(f"row with an unknown prompt: {prompt[:80]!r}")


def target_lengths(rows: dict[str, list[dict]]):
    """One line per row: task, target length in characters and in whitespace-separated tokens."""
    import pandas as pd

    data = [(task, len(t), len(t.split())) for task, task_rows in rows.items()
            for t in (r["messages"][-1]["value"] for r in task_rows)]
    return pd.DataFrame(data, columns=["task", "chars", "tokens"])


def to_dataset(rows: list[dict]):
    """sharegpt rows -> ``datasets.Dataset`` (columns messages, images; images stay paths)."""
    from datasets import Dataset

    return Dataset.from_list(rows)


def dataset_info(tasks: Iterable[str], prefix: str = "crohme_train") -> dict[str, dict]:
    """LLaMA-Factory ``dataset_info.json`` entries for ``<task>.json`` files in the same folder."""
    return {dataset_name(t, prefix): {"file_name": f"{t}.json", **SHAREGPT_INFO} for t in _check_tasks(tasks)}


def write_task_files(out, rows: dict[str, list[dict]], rejects: list[tuple[str, str, str]] = (),
                     prefix: str = "crohme_train") -> dict[str, Path]:
    """Write ``out/<task>.json``, ``out/rejects.tsv`` and merge entries into ``out/dataset_info.json``."""
    from ..core.outdir import OutputLock

    with OutputLock(out, "unimumer tasks"):
        return _write_task_files(Path(out), rows, rejects, prefix)


# TASKS_MARKER (records): the files a build wrote (name -> sha256); only those are ever replaced


def _claim_task_files(out: Path, names: list[str]) -> dict:
    """Refuse to replace any of ``names`` in ``out`` that an earlier build did not write as it is now (a user's
    ``vanilla.json`` or ``dataset_info.json`` is never replaced, ``--force`` or not); mark them as being written.
    Returns the marker to complete."""
    import hashlib

    marker_path = out / TASKS_MARKER
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8")) if marker_path.exists() else {}
    except ValueError:
        marker = {}
    ours = marker.get("files", {}) if isinstance(marker, dict) else {}
    for name in names:
        path = out / name
        if path.exists() and ours.get(name) not in ("pending", hashlib.sha256(path.read_bytes()).hexdigest()):
            raise FileExistsError(f"{path}: a file `unimumer tasks` did not write (or one changed since); it is "
                                  f"never replaced: choose another --out")
    marker = {"made_by": "unimumer tasks", "files": {**ours, **{name: "pending" for name in names}}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker_path, json.dumps(marker, indent=1) + "\n")
    return marker


def _complete_task_files(out: Path, marker: dict) -> None:
    import hashlib

    files = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() if (out / name).exists() else digest
             for name, digest in marker["files"].items()}
    atomic_write_text(out / TASKS_MARKER, json.dumps({**marker, "files": files}, indent=1) + "\n")


def _write_task_files(out: Path, rows, rejects, prefix) -> dict[str, Path]:
    # Read what earlier builds left first: a folder that is not a task folder fails before anything is written.
    # Rejects of tasks built earlier into the same folder (e.g. caption tasks, then EDL) are kept.
    rejects_path, info_path = out / TASK_REJECTS, out / DATASET_INFO
    kept = [r for r in read_task_rejects(rejects_path) if r[1] not in rows] if rejects_path.exists() else []
    info = _read_dataset_info(info_path) if info_path.exists() else {}
    marker = _claim_task_files(out, [*(f"{task}.json" for task in rows), TASK_REJECTS, DATASET_INFO])
    rebuilt = {f"{task}.json" for task in rows}
    if any(isinstance(e, dict) and e.get("file_name") in rebuilt for e in info.values()):
        # Unlist the tasks being rebuilt first: a build cut short leaves them unlisted, never half new, half old.
        atomic_write_text(info_path, json.dumps({k: e for k, e in info.items() if not (
            isinstance(e, dict) and e.get("file_name") in rebuilt)}, indent=2) + "\n")
    info.update(dataset_info(rows, prefix))
    paths = {task: write_sharegpt(out / f"{task}.json", task_rows) for task, task_rows in rows.items()}
    write_rejects(rejects_path, [Reject(task, key, why) for key, task, why in kept + list(rejects)])
    atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
    _complete_task_files(out, marker)
    return paths


def listed_task_files(folder) -> list[Path]:
    """The task files a folder's ``dataset_info.json`` lists (each must exist)."""
    folder = Path(folder)
    info = _read_dataset_info(folder / DATASET_INFO)
    names = {key: entry["file_name"] for key, entry in info.items() if isinstance(entry, dict) and "file_name" in entry}
    for key, name in names.items():  # a data file of the folder: never a path out of it
        if not isinstance(name, str) or not name or Path(name).is_absolute() or not inside_root(name, folder):
            raise ValueError(f"{folder / DATASET_INFO}: entry {key!r}: file_name {name!r} is not a file inside "
                             f"{folder}; task files are read only from the folder that lists them")
    files = [folder / name for name in names.values()]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder / DATASET_INFO}: lists {missing[0].name}, which is missing (an unfinished "
                                f"`unimumer tasks` build?)")
    return sorted(set(files))


def _read_dataset_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a dataset_info JSON file: {err}") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: not a dataset_info JSON object")
    return info


def read_task_rejects(path) -> list[tuple[str, str, str]]:
    """(id, task, reason) of a task folder's rejects file (rows of the ``formats.rejects`` layout: source = the
    task, item = the id)."""
    try:
        return [(r.item, r.source, r.reason) for r in read_rejects(path)]
    except ValueError as err:
        raise ValueError(f"{err}; is --out a prepared split? Choose a folder of its own for the task files") from None


def caption_items(captions, require_images: bool = True, root=None) -> tuple[list[tuple[str, str, str]], list]:
    """Any ``records.load_records`` layout -> (id, caption, image) items and the ids whose image is missing,
    as rejects [(id, reason)]. With ``require_images`` False a missing image is kept at the path where
    ``unimumer prepare`` puts it (``images/<id>.png`` beside the captions) and nothing is rejected."""
    from tqdm.auto import tqdm

    captions = Path(captions)
    folder = captions if captions.is_dir() else captions.parent
    records = load_records(captions, root) if require_images else read_any(captions, root)
    items, missing = [], []
    for r in tqdm(records, desc="check images", disable=not require_images or len(records) < 1000, mininterval=1.0):
        why = (open_image_checked(r.image_path)[1] if r.image_path else r.error or
               f"image not found for {r.id!r} in {captions}") if require_images else ""
        if why:
            missing.append((r.id, why))  # never a training row: train would fail on it later
        elif r.image_path:
            items.append((r.id, r.caption, str(Path(r.image_path).resolve())))
        else:
            items.append((r.id, r.caption, str((folder / IMAGES_DIR / f"{r.id}{IMAGE_SUFFIX}").resolve())))
    return items, missing


def _summary(tasks, read: int, rows, rejects) -> dict[str, dict]:
    summary = {}
    for t in tasks:
        summary[t] = Tally(read, len(rows.get(t, [])), sum(1 for r in rejects if r[1] == t)).as_dict()
    return summary


def _prediction_image(image: str | None, root, base: Path) -> tuple[str | None, str]:
    """(the image path a row of a prediction file gets, "") or (None, why): an absolute path must lie inside
    ``root`` (default ``base``, the file's folder), a relative one may not climb out of it (``..``) and is joined
    to ``root`` when one is given, else kept as written (the published files' ``./data/...`` paths). The image
    need not exist yet: published predictions name images the user keeps elsewhere."""
    if not image:
        return None, "the prediction names no image_path"
    folder = Path(root) if root is not None else base
    if not inside_root(image, folder):
        where = "the root" if root is not None else "the prediction file's folder"
        return None, (f"image path {image!r} lies outside {where} {folder}" +
                      ("" if root is not None else "; give the folder its images are in as the root (--root)"))
    return (str(folder / image) if root is not None and not Path(image).is_absolute() else image), ""


def _tasks_from_predictions(out: Path, tasks, predictions, guard, prefix: str, progress: bool,
                            root=None) -> dict[str, dict]:
    """error_find/error_fix from the wrong predictions of a Uni-MuMER prediction JSON; correct ones are rejected
    as "no error", and so is a row that names no image or one outside its root (``_prediction_image``).
    ``guard(items, source)``: the leak guard."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    from ..formats.predictions import read_predictions  # the prediction file format lives there

    preds = read_predictions(predictions, allow_duplicates=True)
    located, rejects = [], []
    for p in preds:
        image, why = _prediction_image(p.image_path, root, Path(predictions).parent)
        if image is None:
            rejects += [(p.img_id, t, why) for t in tasks]
        else:
            located.append(replace(p, image_path=image))
    guard([(p.img_id, p.image_path) for p in located], predictions)
    ok = [p for p in located if p.gt.split() != p.pred.split()]
    records = edl.edl_records(tqdm(ok, desc="error records", disable=not progress))
    rejects += [(p.img_id, t, "prediction equals the ground truth: no error") for p in located
                if p.gt.split() == p.pred.split() for t in tasks]
    rows = edl_task_rows(records, tasks)
    _write_task_files(out, rows, rejects, prefix)
    return _summary(tasks, len(preds), rows, rejects)


def _tasks_from_captions(out: Path, tasks, captions, guard, prefix: str, progress: bool, seed: int = 0,
                         confusions=None, require_images: bool = True, root=None) -> dict[str, dict]:
    """vanilla, tree, can from ``captions`` (any ``records.load_records`` layout; image paths of a prompt JSON
    resolve against ``root``), and error_find/error_fix from errors injected with a ``confusions`` table (seeded,
    marked synthetic). ``guard(items, source)``: the leak guard."""
    items, missing = caption_items(captions, require_images, root)
    guard([(key, image) for key, _, image in items], captions)
    rejects = [(key, t, reason) for key, reason in missing for t in tasks]
    rows, caption_rejects = caption_rows(items, [t for t in tasks if task_spec(t).kind == "caption"], progress)
    rejects += caption_rejects
    edl_tasks = [t for t in tasks if task_spec(t).kind == "edl"]
    if edl_tasks:
        if confusions is None:
            raise ValueError(f"{', '.join(edl_tasks)} come from wrong transcriptions: give --from-predictions "
                             f"(a model's predictions), or with --captions a confusion table to inject errors from, "
                             f"--confusions lookalikes")
        records = edl.synthetic_records([(image, caption) for _, caption, image in items], confusions, seed)
        made = {r["image"] for r in records}
        rejects += [(key, t, "no confusion applies to this caption") for key, _, image in items
                    if image not in made for t in edl_tasks]
        rows.update(edl_task_rows(records, edl_tasks))
    _write_task_files(out, rows, rejects, prefix)
    return _summary(tasks, len(items) + len(missing), rows, rejects)


def build_task_files(out, tasks, captions=None, predictions=None, prefix: str = "crohme_train", progress: bool = True,
                     test_roots=None, allow_test_images: bool = False, root=None,
                     **caption_options) -> dict[str, dict]:
    """Build task files in ``out``; returns {task: {read, written, rejected}} (read = written + rejected).

    From ``captions``: the caption tasks, and the EDL tasks from injected errors (``caption_options``: ``seed``,
    ``confusions``, ``require_images``; see :func:`_tasks_from_captions`). From ``predictions``
    (Uni-MuMER prediction JSON): error_find/error_fix from the wrong predictions. ``root``: the folder image paths
    of the data file resolve against and must stay inside (default: the data file's folder).

    Leak guard: inputs whose id is in a test split of ``test_roots`` (default: the CROHME root,
    ``held_out_index``) or whose image lies in a ``test*`` folder raise HeldOutImageLeak before anything is
    written (``allow_test_images``: a loud warning instead). One build at a time writes into ``out``: the lock is
    held from the first read to the last write, so a second build exits at once naming the holder.
    """
    from ..core.paths import crohme_root
    from ..core.outdir import OutputLock

    tasks = _check_tasks(tasks)
    if (captions is None) == (predictions is None):
        raise ValueError("give exactly one of captions= or predictions=")
    if predictions is not None and set(tasks) - set(task_names("edl")):
        raise ValueError(f"predictions only give {', '.join(task_names('edl'))}, asked for {', '.join(tasks)}")
    if predictions is not None and caption_options:
        raise ValueError(f"{', '.join(sorted(caption_options))}: settings of a build from captions, not from "
                         f"predictions")
    with OutputLock(out, "unimumer tasks"):
        index = held_out_index([crohme_root()] if test_roots is None else test_roots)

        def guard(items, source):
            return check_no_test_images(items, source, index, allow_test_images)

        if predictions is not None:
            return _tasks_from_predictions(Path(out), tasks, predictions, guard, prefix, progress, root)
        return _tasks_from_captions(Path(out), tasks, captions, guard, prefix, progress, root=root,
                                    **caption_options)


def check_task_folder(rows: dict[str, list[dict]], folder, index: dict[str, str]) -> dict:
    """The leak guard over every row written (``rows``: {task: rows} of ``folder``): HeldOutImageLeak when an image
    is a test image of ``index``. Returns the training images checked and the task rejects by (task, reason)."""
    from collections import Counter

    images = [(Path(img).stem, img) for task_rows in rows.values() for r in task_rows for img in r["images"]]
    check_no_test_images(images, folder, index)
    rejects = read_task_rejects(Path(folder) / TASK_REJECTS) if (Path(folder) / TASK_REJECTS).exists() else []
    return {"images": len(images), "rejects": Counter((t, why.split(":")[0]) for _, t, why in rejects)}


def read_task_rows(folder) -> dict[str, list[dict]]:
    """{task: rows} of the task files ``dataset_info.json`` lists in ``folder``."""
    return {path.stem: read_sharegpt(path) for path in listed_task_files(folder)}


def write_mixture(folder, ratios: dict[str, float], seed: int) -> Path:
    """Record the mixture to train from ``folder`` (``{task: fraction of its rows}``, every row when absent, and
    the sampling seed) in ``MIXTURE_FILE``, which notebook 03 reads when it is given no ratios."""
    return atomic_write_text(Path(folder) / MIXTURE_FILE, json.dumps({"ratios": ratios, "seed": seed}, indent=1))


def read_mixture(folder) -> tuple[dict[str, float], int | None]:
    """(ratios, seed) ``write_mixture`` recorded in ``folder`` (({}, None) when none: every row once)."""
    path = Path(folder) / MIXTURE_FILE
    if not path.is_file():
        return {}, None
    recorded = json.loads(path.read_text(encoding="utf-8"))
    return recorded["ratios"], recorded.get("seed")


def mixture_settings(folder, ratios: dict | None = None, seed: int | None = None) -> tuple[dict, int]:
    """(ratios, seed) notebook 03 trains with: each as given, else as notebook 02 recorded it with the mixture in
    ``folder`` (``read_mixture``; every row and seed 0 when nothing is recorded)."""
    recorded_ratios, recorded_seed = read_mixture(folder)
    return (recorded_ratios if ratios is None else ratios,
            (recorded_seed if recorded_seed is not None else 0) if seed is None else seed)
