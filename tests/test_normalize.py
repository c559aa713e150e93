"""The published Uni-MuMER normalisation: its rules on hand-made captions, the 10% published sample, the CLI."""

from __future__ import annotations

import json
import sys

import pytest

from unimumer_lib.pipeline import cli
from unimumer_lib.evaluation import report
from unimumer_lib.latex.published import (ARGUMENT, BRACES, DELIMITER, DEPTH, OOV, Removed, compare_with_published,
                                    normalize_caption, normalize_prediction, normalize_predictions, removed_path)
from unimumer_lib.formats.predictions import Prediction, read_predictions, write_predictions

SAMPLE_FILES = ("crohme2023_test.json", "mathwriting_test.json")
AGREEMENT_TARGET = 99.0


@pytest.mark.parametrize("raw, expected", [
    (r"\left ( x \right ) \left . y \right |", "( x ) y |"),
    (r"a \dots b \le c \ge d \ne e \ast", r"a \ldots b \leq c \geq d \ne e \ast"),
    (r"\bar { { y } } + { { 1 0 } ^ { - 3 } }", r"\bar { y } + 1 0 ^ { - 3 }"),
    (r"x ^ { a } _ { b } + y ^ 2", r"x _ { b } ^ { a } + y ^ { 2 }"),
    (r"\frac 1 { 1 9 2 } + \sqrt 2", r"\frac { 1 } { 1 9 2 } + \sqrt { 2 }"),
    (r"\sum _ { i = 1 } ^ { n } i", r"\sum _ { i = 1 } ^ { n } i"),  # no \limits
    (r"[ \begin{matrix} { 1 } & { 0 } \\ { 0 } & { 1 } \\ \end{matrix} ]",
     r"\begin {bmatrix} 1 & 0 \\ 0 & 1 \end {bmatrix}"),
    (r"| \begin{matrix} a \\ \end{matrix} | ( \begin{array} { c c } 1 & 2 \end{array} )",
     r"| \begin {matrix} a \end {matrix} | ( \begin {array} { c c } 1 & 2 \end {array} )"),
    (r"\int { d x }", r"\int { d x }"),
])
def test_rewrites(raw, expected):
    assert normalize_caption(raw) == expected
    assert normalize_caption(expected) == expected


@pytest.mark.parametrize("raw, rule", [
    ("x ^ { 2", BRACES), ("T ( x _ { n ) }", DELIMITER), (r"\chi _ { [ 1 , 2 ) }", DELIMITER), ("s )", DELIMITER),
    (r"\varphi ( x )", OOV), (r"\bigcup _ { n } A", OOV), (r"E = 0 \frac", ARGUMENT), (r"\frac | I | > 1", ARGUMENT),
    ("x ^", ARGUMENT),
])
def test_removals_name_their_rule(raw, rule):
    with pytest.raises(Removed) as err:
        normalize_caption(raw)
    assert err.value.rule == rule and err.value.reason.startswith(rule)


def test_predictions_are_rewritten_but_never_removed():
    assert normalize_prediction(r"x \le { { 1 } }") == r"x \leq 1"
    assert normalize_prediction(r"\varphi \le x ^ { 2") == r"\varphi \leq x ^ { 2"


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_agrees_with_the_published_sample(normalization_sample, name):
    items = json.loads((normalization_sample / name).read_text(encoding="utf-8"))
    agreement = compare_with_published(items)
    assert agreement.n == len(items) > 200
    assert agreement.rate("decision") >= AGREEMENT_TARGET, agreement.disagreements
    assert agreement.rate("caption") >= AGREEMENT_TARGET, agreement.disagreements


def test_normalize_cli_and_eval(tmp_path, capsys):
    preds = [Prediction("a", r"x \le 1", r"x \leq 1"), Prediction("b", r"\varphi", r"\phi"),
             Prediction("c", r"( x ]", "( x )", extra={"dataset": "d"})]
    src = write_predictions(tmp_path / "p.json", preds)
    out = tmp_path / "n.json"
    assert cli.main(["normalize", str(src), "--style", "unimumer", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "read 3 = kept 1 + removed 2" in printed and f"{OOV}: 1" in printed and f"{DELIMITER}: 1" in printed
    assert read_predictions(out) == [Prediction("a", r"x \leq 1", r"x \leq 1")]
    rows = removed_path(out).read_text(encoding="utf-8").splitlines()
    assert [r.split("\t")[1] for r in rows] == ["item", "b", "c"] and rows[1].split("\t")[0] == str(src)
    row = report.evaluate_files([src], normalize="unimumer")[0]
    assert (row["n"], row["exprate"], row["removed"]) == (1, 100.0, 2)
    assert cli.main(["eval", str(src), "--normalize", "unimumer", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["removed"] == 2 and "2 items removed" in captured.err
    assert report.evaluate_files([src])[0]["n"] == 3


def test_crohme2014_captions_are_already_in_the_published_form(reference_predictions):
    preds = read_predictions(reference_predictions)
    kept, removed = normalize_predictions(preds, "unimumer")
    assert removed == [] and kept == preds


def test_deep_nesting_is_listed_not_raised():
    depth = sys.getrecursionlimit()  # beyond it whatever the limit (some libraries raise it)
    deep = "{ " * depth + "x" + " }" * depth
    with pytest.raises(Removed) as err:
        normalize_caption(deep)
    assert err.value.rule == DEPTH
    assert normalize_prediction(deep) == deep
