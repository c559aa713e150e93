"""Error-driven learning data: marking, correction logs, applying them back, and injected errors."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from unimumer_lib.tasks.edl import (DELETE, DELETED, ERROR_END, ERROR_START, INSERT, REPLACE, SYNTHETIC,
                                     apply_corrections, edl_records, edl_targets, inject_errors, parse_log,
                                     synthetic_records)


@pytest.mark.parametrize("gt, pred, marked, log", [
    ("a + b", "a - b", "a <error_start> - <error_end> b", "REPLACE:- -> +"),
    ("a + b", "a + b c", "a + b <error_start> c <error_end>", "DELETE:c"),
    ("a + b", "a b", "a <deleted> b", "INSERT:+ after a"),
    ("a + b", "+ b", "<deleted> + b", "INSERT:a after <start>"),
    (r"x ^ { 2 } + 1", r"x ^ { 3 } + 1 y", "x ^ { <error_start> 3 <error_end> } + 1 <error_start> y <error_end>",
     "REPLACE:3 -> 2\nDELETE:y"),
    ("a b c d", "a x y d", "a <error_start> x y <error_end> d", "REPLACE:x y -> b c"),
])
def test_targets_by_hand(gt, pred, marked, log):
    assert edl_targets(gt, pred) == (marked, log)
    assert apply_corrections(marked, log) == gt


def test_adjacent_edits_merge_into_one_error():
    marked, log = edl_targets("a b c", "a z")  # one replace + one delete in the edit script
    assert marked.count(ERROR_START) + marked.count(DELETED) == 1
    assert apply_corrections(marked, log) == "a b c"


def test_equal_prediction_has_no_error():
    with pytest.raises(ValueError, match="no error"):
        edl_targets("a + b", "a  +  b")
    assert edl_records([("img", "a + b", "a + b")]) == []


@pytest.mark.parametrize("marked, log, reason", [
    ("a <error_start> - <error_end> b", "REPLACE:* -> +", "does not match"),
    ("a <error_start> - <error_end> b", "", "no correction"),
    ("a <deleted> b", "INSERT:+ after b", "does not match"),
    ("a <deleted> b", "INSERT:+ after a\nDELETE:b", "2 corrections"),
    ("a <error_start> - b", "REPLACE:- -> +", "without <error_end>"),
    ("a b", "MOVE:a", "not REPLACE"),
])
def test_apply_rejects_logs_that_do_not_fit(marked, log, reason):
    with pytest.raises(ValueError, match=reason):
        apply_corrections(marked, log)


def test_parse_log():
    assert parse_log("REPLACE:a b -> c\nINSERT:{ 2 } after ^\nDELETE:x") == [
        (REPLACE, "a b", "c"), (INSERT, "{ 2 }", "^"), (DELETE, "x", "")]


def test_reference_predictions_corrections_reproduce_gt(reference_predictions):
    preds = json.loads(reference_predictions.read_text(encoding="utf-8"))
    wrong = [p for p in preds if p["gt"].split() != p["pred"].split()]
    records = edl_records(preds)
    assert len(records) == len(wrong) == 159  # 986 - 827 correct (ExpRate 83.87 %)
    assert all(r["pred"] == r["marked"].replace(f"{ERROR_START} ", "").replace(f" {ERROR_END}", "")
               .replace(f"{DELETED} ", "").replace(f" {DELETED}", "").replace(DELETED, "").strip()
               for r in records)
    reproduced = sum(apply_corrections(r["marked"], r["log"]) == r["gt"] for r in records)
    print(f"EDL: {reproduced}/{len(records)} wrong reference predictions reproduced by their correction log")
    assert reproduced == len(records)
    assert {r["id"] for r in records} == {p["img_id"] for p in wrong}


TABLE = [("x", "X", 5), ("+", "", 2), ("", "}", 1), ("2", "2", 9)]  # sub, deletion, insertion, a no-op


def test_inject_errors_follows_the_table():
    rng = random.Random(0)
    seen = set()
    for _ in range(200):
        pred = inject_errors("x + 1", TABLE, rng, max_edits=1)
        assert pred is not None and pred != "x + 1"
        seen.add(pred)
    # exactly the edits the table allows: x->X, delete +, insert } anywhere (the 2->2 row is no error)
    assert seen <= {"X + 1", "x 1", "} x + 1", "x } + 1", "x + } 1", "x + 1 }"}
    assert {"X + 1", "x 1"} <= seen


def test_inject_errors_seeded_and_dataframe():
    frame = pd.DataFrame(TABLE, columns=["gt_token", "pred_token", "count"])
    a = [inject_errors("x + x = 2", frame, random.Random(3)) for _ in range(5)]
    b = [inject_errors("x + x = 2", TABLE, random.Random(3)) for _ in range(5)]
    assert a == b
    assert inject_errors("a b", [("x", "X", 1)], random.Random(0)) is None  # nothing applies


def test_synthetic_records_are_marked_and_consistent():
    items = [(f"img{i}.png", c) for i, c in enumerate(["x + 1", "a = b", r"\frac { x } { 2 }"])]
    records = synthetic_records(items, TABLE, seed=1, per_caption=3)
    assert records and all(r["source"] == SYNTHETIC for r in records)
    assert all(apply_corrections(r["marked"], r["log"]) == r["gt"] for r in records)
    assert synthetic_records(items, TABLE, seed=1, per_caption=3) == records
