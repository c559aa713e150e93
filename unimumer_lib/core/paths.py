"""Where data lives: one place that resolves the dataset, reference and run paths."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # unimumer_lib/
RESOURCES = PACKAGE_ROOT / "resources"  # the shipped bases, the glyph bank, the published table
REPO_ROOT = PACKAGE_ROOT.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def crohme_root() -> Path:
    """The CROHME InkML root (folders train/, test2014/, ...): $UNIMUMER_CROHME or ../shared/data/crohme."""
    return Path(os.environ.get("UNIMUMER_CROHME", SHARED_DATA / "crohme"))


def reference_dir() -> Path:
    """Published Uni-MuMER predictions: $UNIMUMER_REFERENCE or ../shared/data/reference/unimumer-7b-crohme2014."""
    default = SHARED_DATA / "reference" / "unimumer-7b-crohme2014"
    return Path(os.environ.get("UNIMUMER_REFERENCE", default))


def reference_predictions() -> Path:
    return reference_dir() / "crohme_2014_pred.json"


def normalization_sample() -> Path:
    """The 10% sample of published normalised pairs: $UNIMUMER_NORMALIZATION_SAMPLE or
    ../shared/data/reference/normalization-sample (crohme2023_test.json, mathwriting_test.json)."""
    default = SHARED_DATA / "reference" / "normalization-sample"
    return Path(os.environ.get("UNIMUMER_NORMALIZATION_SAMPLE", default))


def runs_dir() -> Path:
    """Where executed notebooks, prepared data and checkpoints go (git-ignored)."""
    return Path(os.environ.get("UNIMUMER_RUNS", REPO_ROOT / "runs"))


def figures_dir() -> Path:
    """Where notebooks save figures by default: $UNIMUMER_FIGURES or ``<runs>/figures`` (git-ignored), never the
    README's ``figures/`` (README_FIGURES), which changes only when asked for explicitly."""
    return Path(os.environ.get("UNIMUMER_FIGURES", runs_dir() / "figures"))


README_FIGURES = REPO_ROOT / "figures"


def crohme_available() -> bool:
    return (crohme_root() / "test2014").is_dir()
