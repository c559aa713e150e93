"""The benchmark-family table: test-set names -> main-table columns, and the README table that documents it."""

from __future__ import annotations

import pytest

from unimumer_lib import config
from unimumer_lib.families import FAMILIES, LAYOUTS, dataset_label, family_of
from unimumer_lib.normalize import STYLES


@pytest.mark.parametrize("name, label", [
    ("test2014", "CROHME 2014"), ("crohme_2016_pred", "CROHME 2016"), ("CROHME-2019", "CROHME 2019"),
    ("test2023", "CROHME 2023"), ("crohme_2023_results", "CROHME 2023"), ("HME100K_test", "HME100K"),
    ("im2latexv2", "Im2LaTeXv2"), ("MathWriting", "MathWriting"), ("mne_N3", "MNE N3"),
    ("test", None), ("train", None), ("crohme", None),
])
def test_dataset_label(name, label):
    assert dataset_label(name) == label


def test_families_are_consistent_and_documented():
    readme = (config.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(FAMILIES) == 6
    for family in FAMILIES.values():
        assert set(family.layouts) <= set(LAYOUTS) and family.normalization in (None, *STYLES)
        assert f"| `{family.name}` | {', '.join(family.tests)} | `{family.official_folder}` |" in readme
        assert all(family_of(label) is family for label in family.tests)
