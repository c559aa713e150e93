"""The training data: LLaMA-Factory sharegpt task files (``unimumer_lib.tasks.build``) as TRL's conversational vision
dataset ``{"images": [...], "messages": [{"role", "content": [...]}]}``, images decoded lazily by ``datasets``; the
mixture ratios, the leak guard over the rows, and the task each example belongs to.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..formats.sharegpt import (CONTENT_KEY, IMAGE_TOKEN, ROLE_ASSISTANT, ROLE_KEY, ROLE_SYSTEM, ROLE_USER,
                                SHAREGPT_IMAGES, SHAREGPT_MESSAGES, read_sharegpt)

_ROLES = {ROLE_USER: "user", ROLE_ASSISTANT: "assistant", ROLE_SYSTEM: "system"}


def row_image_path(path: str, base: Path) -> str:
    """An image path of a sharegpt row: absolute, else relative to the JSON file's folder, else to the cwd."""
    p = Path(path)
    if p.is_absolute() or not (base / p).exists():
        return str(p)
    return str(base / p)


def sharegpt_to_trl(row: dict, base: Path | None = None) -> dict:
    """One LLaMA-Factory sharegpt row -> TRL's ``{"images": [paths], "messages": [...]}`` with image blocks
    placed where the ``<image>`` placeholders were."""
    base = base or Path(".")
    messages = []
    for m in row[SHAREGPT_MESSAGES]:
        parts = m[CONTENT_KEY].split(IMAGE_TOKEN)
        content = []
        for i, text in enumerate(parts):
            if i:
                content.append({"type": "image"})
            if text:
                content.append({"type": "text", "text": text})
        messages.append({"role": _ROLES[m[ROLE_KEY]], "content": content})
    return {"images": [row_image_path(p, base) for p in row.get(SHAREGPT_IMAGES, [])], "messages": messages}


def load_sharegpt_dataset(paths, ratios: dict | None = None, seed: int = 0, limit: int | None = None,
                          shuffle: bool = True, rejects: list | None = None, test_roots=None,
                          allow_test_images: bool = False):
    """A ``datasets.Dataset`` in TRL vision format from one or more sharegpt JSON files.

    ``ratios`` maps a file stem (e.g. ``"tree"``) to the fraction of its rows to keep (sampled with ``seed``).
    Images stay paths until a batch is built (``Image`` feature), so million-row mixtures fit in memory; then
    they are resized into the paper's pixel range (``model.fit_pixels``).
    A row with an empty answer is left out and appended to ``rejects`` as (file, row, reason); one file given
    twice raises; rows repeated across files are reported. The leak guard of ``unimumer tasks``
    (``splits.check_no_test_images``: test splits of ``test_roots``, default the CROHME root) refuses rows whose
    image is a test image unless ``allow_test_images``.
    """
    import random

    from datasets import Dataset, Image, List

    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    rows, dropped, seen = [], [] if rejects is None else rejects, {}
    for path in paths:
        if path.resolve() in seen:
            raise ValueError(f"{path}: given twice (as {seen[path.resolve()]}); each of its rows would be trained "
                             f"twice")
        seen[path.resolve()] = path
        part = []
        for i, r in enumerate(read_sharegpt(path)):
            if not r[SHAREGPT_MESSAGES][-1][CONTENT_KEY].strip():
                dropped.append((str(path), i, "empty answer (nothing to learn)"))
                continue
            part.append(sharegpt_to_trl(r, path.parent))
        ratio = (ratios or {}).get(path.stem, 1.0)
        if ratio < 1.0:
            part = random.Random(seed).sample(part, round(len(part) * ratio))
        rows += part
    if dropped:
        print(f"train: {len(dropped)} row(s) left out, e.g. {dropped[0][0]} row {dropped[0][1]}: {dropped[0][2]}",
              file=sys.stderr)
    _report_repeats(rows)
    _check_held_out(rows, paths, test_roots, allow_test_images)
    if not rows:
        raise ValueError(f"no training records in {', '.join(map(str, paths))}")
    if shuffle:
        random.Random(seed).shuffle(rows)
    if limit is not None:
        rows = rows[:limit]
    ds = Dataset.from_list(rows)
    return ds.cast_column("images", List(Image())).with_transform(fit_images)


def _report_repeats(rows: list[dict]) -> None:
    from collections import Counter

    counts = Counter(json.dumps(r, sort_keys=True) for r in rows)
    extra = sum(c - 1 for c in counts.values() if c > 1)
    if extra:
        print(f"train: note: {extra} row(s) repeat an identical row (same image, prompt and answer); each is "
              f"trained once per occurrence", file=sys.stderr)


def _check_held_out(rows: list[dict], paths: list[Path], test_roots, allow: bool) -> None:
    from ..core.paths import crohme_root
    from ..data.splits import check_no_test_images, held_out_index

    index = held_out_index([crohme_root()] if test_roots is None else test_roots)
    items = [(Path(image).stem, image) for r in rows for image in r["images"]]
    check_no_test_images(items, ", ".join(map(str, paths)), index, allow)


def fit_images(batch: dict, family=None) -> dict:
    """Dataset transform: every image resized into the paper's pixel range as LLaMA-Factory does it, on the grid
    of the model ``family`` (default Qwen2.5-VL's)."""
    from ..models.family import DEFAULT_FAMILY, get_family

    family = family or get_family(DEFAULT_FAMILY)
    if "images" in batch:
        batch["images"] = [[family.fit(im) for im in images] for images in batch["images"]]
    return batch


def fit_images_for(model):
    """The ``fit_images`` transform for ``model``'s family."""
    from functools import partial

    from ..models.family import model_family

    return partial(fit_images, family=model_family(model))


def example_task(example: dict) -> str:
    """The task of a TRL-format example, recognised by its published user prompt ("other" if none matches)."""
    from ..tasks.spec import PROMPTS

    text = "".join(c.get("text") or "" for c in example["messages"][0]["content"])
    return next((task for task, prompt in PROMPTS.items() if text.startswith(prompt)), "other")


def mixture_counts(dataset) -> dict[str, int]:
    """{task: examples} of a training dataset (the mixture actually trained on)."""
    from collections import Counter

    return dict(Counter(example_task({"messages": m}) for m in dataset["messages"]))


def mixture_of(data_dir: str | Path, ratios: dict | None = None, seed: int = 0) -> dict[str, int]:
    """{task: examples} that training on a task folder with ``ratios`` and ``seed`` uses: the same files and call
    as notebook 03 (``task_files``, ``load_sharegpt_dataset``), counted (notebook 02 shows it)."""
    return mixture_counts(load_sharegpt_dataset(task_files(data_dir), ratios=ratios, seed=seed))


def task_files(data_dir: str | Path) -> list[Path]:
    """The ``<task>.json`` files a task folder's ``dataset_info.json`` lists (``unimumer tasks`` writes it last,
    after every task file of a build, so a build cut short is refused here rather than trained on in part)."""
    from ..tasks.build import DATASET_INFO, listed_task_files

    data_dir = Path(data_dir)
    if not any(p.name != DATASET_INFO and not p.name.startswith(".") for p in data_dir.glob("*.json")):
        raise FileNotFoundError(f"{data_dir}: no <task>.json files")
    if not (data_dir / DATASET_INFO).is_file():
        raise FileNotFoundError(f"{data_dir}: no {DATASET_INFO}: not a finished task folder (build it with "
                                f"`unimumer tasks`, or give the <task>.json files themselves)")
    files = listed_task_files(data_dir)
    if not files:
        raise FileNotFoundError(f"{data_dir}: no <task>.json files listed in {DATASET_INFO}")
    return files
