"""Which images are test images: the leak guard that keeps every test split out of training data.

A test split is a folder named like ``test``/``test2014`` directly under a data root; ``held_out_index`` lists the
ids of its images (InkML stems of a CROHME root, or the ids of a prepared split's ``caption.txt``), and
``check_no_test_images`` refuses training rows, glyphs or pretraining samples made from them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..formats.records import CAPTION_FILE, read_captions

TEST_SPLIT_NAME = re.compile(r"test\d*")  # test, test2014, test2016, test2019: folders holding test images


class HeldOutImageLeak(ValueError):
    """Training rows were asked for from images of a test split."""


def held_out_index(roots=()) -> dict[str, str]:
    """{image id: split} of every test split (a folder named like ``test2014``) directly under each root:
    InkML file stems of a CROHME root, or the ids of a prepared ``caption.txt`` split."""
    from .inkml import find_inkml

    index = {}
    for root in map(Path, roots):
        for split in sorted(d for d in (root.iterdir() if root.is_dir() else ()) if d.is_dir()
                            and TEST_SPLIT_NAME.fullmatch(d.name)):
            captions = split / CAPTION_FILE
            ids = list(read_captions(captions)) if captions.is_file() else [p.stem for p in find_inkml(split)]
            index.update((key, split.name) for key in ids)
    return index


def held_out_split_of(key: str, image: str, index: dict[str, str]) -> str | None:
    """The test split an image belongs to (by id, or by a ``test*`` folder in its path), else None."""
    if key in index:
        return index[key]
    return next((part for part in Path(image).parts[:-1] if TEST_SPLIT_NAME.fullmatch(part)), None)


def check_no_test_images(items, source, index: dict[str, str], allow: bool = False) -> int:
    """Refuse (HeldOutImageLeak naming ``source`` and the count) when any (id, image) item is a test image;
    with ``allow`` print a loud warning instead. Returns the number of test images found."""
    items = list(items)
    found = [(key, split) for key, image in items if (split := held_out_split_of(key, image, index))]
    if not found:
        return 0
    message = (f"{source}: {len(found)} of {len(items)} records are images of a test split (e.g. {found[0][0]!r} "
               f"in {found[0][1]}); training rows built from them would leak the test set into training")
    if not allow:
        raise HeldOutImageLeak(message + " (refused; --allow-test-images overrides)")
    print(f"WARNING: {message}. Proceeding because test images were explicitly allowed: results on that "
          f"test set are no longer a held-out evaluation.", file=sys.stderr, flush=True)
    return len(found)
