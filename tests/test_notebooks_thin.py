"""The notebooks stay thin (issue 23): at most 60 code lines each, committed without outputs, with a papermill
``parameters`` cell first among the code cells."""

from __future__ import annotations

import json

import pytest

from unimumer_lib.core.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CODE_LINES = 60


def code_cells(path):
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


def code_lines(cells) -> int:
    """Non-blank source lines of the code cells."""
    return sum(1 for c in cells for line in "".join(c["source"]).splitlines() if line.strip())


def test_the_counter_counts_non_blank_code_lines():
    assert code_lines([{"source": ["a = 1\n", "\n", "b = 2"]}, {"source": "  \nc()"}]) == 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_thin_clean_and_parameterised(path):
    cells = code_cells(path)
    assert code_lines(cells) <= MAX_CODE_LINES
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells)
    assert "parameters" in cells[0].get("metadata", {}).get("tags", [])


def test_all_five_notebooks_are_checked():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_backticked_name_in_the_text_exists(path):
    """Issue 32 (item 3): notebook 02 named parameters that no longer existed (`mine_from_model`, `mine_k`). Every
    backticked snake_case name in a markdown cell is in the notebook's code or the library's source."""
    import re

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    library = "".join(p.read_text(encoding="utf-8") for p in (REPO_ROOT / "unimumer_lib").rglob("*.py"))
    names = set(re.findall(r"`([a-z][a-z0-9]*_[a-z0-9_]+)`", text))
    missing = sorted(n for n in names if not re.search(rf"\b{n}\b", code + library))
    assert not missing, f"{path.name} names what neither it nor unimumer_lib holds: {missing}"
