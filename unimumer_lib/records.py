"""The one record type and the dataset file formats it is read from and written to.

Formats (CoMER/TAMER conventions): ``<split>/caption.txt`` with one ``<id>\\t<caption>`` line,
``<split>/images/<id>.png``, ``<split>/manifest.json``, ``<split>/rejects.tsv`` (file, reason);
the LLaMA-Factory "sharegpt" JSON; Hugging Face ``datasets.Dataset`` with an ``Image`` feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CAPTION_FILE = "caption.txt"
IMAGES_DIR = "images"
MANIFEST_FILE = "manifest.json"
REJECTS_FILE = "rejects.tsv"
IMAGE_SUFFIX = ".png"


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
