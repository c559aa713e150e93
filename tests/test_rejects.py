"""One Reject type, one rejects-file layout, one writer: every command's rejects file reads back through
``formats.rejects``, and no other module spells a rejects header."""

from __future__ import annotations

import re

import pytest

from unimumer_lib.core.paths import REPO_ROOT
from unimumer_lib.formats.rejects import REJECTS_HEADER, Reject, read_rejects, write_rejects


def test_rejects_round_trip_and_a_foreign_file_is_named(tmp_path):
    rejects = [Reject("train/a.inkml", "", "empty file"), Reject("tree", "e1", "no tree:\tunbalanced\nbraces")]
    write_rejects(tmp_path / "rejects.tsv", rejects)
    back = read_rejects(tmp_path / "rejects.tsv")
    assert back[0] == rejects[0] and back[1].item == "e1" and "unbalanced" in back[1].reason
    assert len((tmp_path / "rejects.tsv").read_text().splitlines()) == 3  # a tab or newline never splits a row
    (tmp_path / "other.tsv").write_text("img_id\treason\nx\ty\n")
    with pytest.raises(ValueError, match=r"other.tsv: not a rejects file \(header \['img_id', 'reason'\]"):
        read_rejects(tmp_path / "other.tsv")


def test_no_other_module_writes_a_rejects_header():
    header = re.compile(r"[\"'](file|img_id|id)\\t(row\\t)?reason|tsv_line\(\s*\"\w+\",\s*(\"\w+\",\s*)?\"reason\"")
    spelled = [p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "unimumer_lib").rglob("*.py")
               if header.search(p.read_text(encoding="utf-8"))]
    assert spelled == [] and REJECTS_HEADER == ("source", "item", "reason")
