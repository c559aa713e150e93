"""The one count every batch job reconciles: read = written + rejected, printed one way."""

from __future__ import annotations

import pytest

from unimumer_lib.core.tally import Tally, summary_lines


def test_a_tally_that_does_not_add_up_is_a_bug():
    with pytest.raises(RuntimeError, match="read 5 != written 3 \\+ rejected 1"):
        Tally(5, 3, 1)
    assert Tally.of({"read": 4, "written": 3, "rejected": 1, "other": 9}).as_dict() == \
        {"read": 4, "written": 3, "rejected": 1}


def test_lines_of_a_summary():
    summary = {"vanilla": {"read": 10, "written": 9, "rejected": 1}, "error_find": {"read": 4, "written": 4,
                                                                                    "rejected": 0}}
    assert summary_lines(summary).splitlines() == ["   vanilla: read 10 = written 9 + rejected 1",
                                                   "error_find: read 4 = written 4 + rejected 0"]
    assert Tally(3, 2, 1).line("glyphs", "used") == "glyphs: read 3 = used 2 + rejected 1"
    assert summary_lines({}) == ""
