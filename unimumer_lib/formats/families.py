"""The benchmark families the official Uni-MuMER repository evaluates on, and how each one is read here.

One row per family: the name used on the command line and in file names, the main-table column(s), the folder
under the official repository's ``data/``, the layout its test data comes in here and the reader or command for
it, and the normalisation protocol its published numbers are also reported under (``normalize.STYLES``).
``dataset_label`` turns a test split folder or prompt-JSON name into its main-table column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Layouts and what reads them (records.load_records reads prepared splits, caption.txt folders, prompt JSON).
LAYOUTS = {
    "crohme-inkml": "InkML split folders -> `unimumer prepare crohme` -> prepared split (caption.txt + images/)",
    "mathwriting-inkml": "InkML split folders -> `unimumer prepare mathwriting` -> prepared split",
    "caption-folder": "caption.txt + images/ (png/jpg/bmp), read by `records.load_records`",
    "prompt-json": "official prompt JSON (sharegpt messages + images), read by `records.load_records --root`",
}
# The families whose raw data is InkML (`unimumer prepare <family>`).
INKML_FAMILIES = tuple(layout.removesuffix("-inkml") for layout in LAYOUTS if layout.endswith("-inkml"))


@dataclass(frozen=True)
class Family:
    name: str
    tests: dict[str, tuple[str, ...]]  # main-table column -> names of its test set (split folder, JSON stem)
    official_folder: str  # under the official repository's data/
    layouts: tuple[str, ...]  # keys of LAYOUTS, the first being the one its raw data comes in
    normalization: str | None = None  # a published normalised protocol (normalize.STYLES), if any


FAMILIES = {f.name: f for f in (
    Family("crohme", {"CROHME 2014": ("test2014", "crohme2014"), "CROHME 2016": ("test2016", "crohme2016"),
                      "CROHME 2019": ("test2019", "crohme2019")}, "CROHME", ("crohme-inkml", "prompt-json")),
    Family("crohme2023", {"CROHME 2023": ("test2023", "crohme2023")}, "CROHME2023", ("crohme-inkml", "prompt-json"),
           "unimumer"),
    Family("hme100k", {"HME100K": ("hme100k",)}, "HME100K", ("caption-folder", "prompt-json")),
    Family("im2latexv2", {"Im2LaTeXv2": ("im2latexv2",)}, "Im2LaTeXv2", ("prompt-json",)),
    Family("mathwriting", {"MathWriting": ("mathwriting",)}, "MathWriting", ("mathwriting-inkml", "prompt-json"),
           "unimumer"),
    Family("mne", {"MNE N1": ("mnen1", "n1"), "MNE N2": ("mnen2", "n2"), "MNE N3": ("mnen3", "n3")}, "MNE",
           ("prompt-json",)),
)}
# "crohme_2014_pred.json" stem, "CROHME-2014", "mne_N2_test", "N2_pred" -> "crohme2014", "mnen2", "n2": case,
# separators and trailing _pred/_test/_results/_normalized are not part of a test set's name. The official files
# of a normalised protocol (crohme2023_test_normalized_pred) get their own column: "<label> (normalised)".
_SUFFIX = re.compile(r"([_-](pred|test|results|normali[sz]ed))+$", re.IGNORECASE)
_NORMALISED = re.compile(r"[_-]normali[sz]ed", re.IGNORECASE)
NORMALISED_COLUMN = "{label} (normalised)"
_SEPARATORS = re.compile(r"[\s_-]+")
_LABELS = {name: label for f in FAMILIES.values() for label, names in f.tests.items() for name in names}
# The test split folders (test2014, ..., test2023) a CROHME-style InkML root may hold, each with its main-table
# column: what the paper profile evaluates when present.
TEST_SPLIT_LABELS = {name: label for name, label in _LABELS.items() if name.startswith("test")}


def dataset_label(name: str) -> str | None:
    """Main-table column of a test set named by a split folder or file stem (``test2019``, ``crohme_2014_pred``,
    ``MathWriting``, ``mne_N2``, ``N2_pred``), or None when it is no known benchmark test set. The file of a
    published normalised protocol (``crohme2023_test_normalized_pred``) names ``"CROHME 2023 (normalised)"``."""
    match = _SUFFIX.search(name)
    label = _LABELS.get(_SEPARATORS.sub("", (name[:match.start()] if match else name).lower()))
    if label and match and _NORMALISED.search(match.group(0)):
        family = family_of(label)
        return NORMALISED_COLUMN.format(label=label) if family and family.normalization else None
    return label


def family_of(label: str) -> Family | None:
    """The family a main-table column belongs to."""
    return next((f for f in FAMILIES.values() if label in f.tests), None)
