"""Metrics: the published CROHME 2014 numbers, BLEU against NLTK, hand-made cases, and hypothesis properties."""

from __future__ import annotations

import json
import re
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

from unimumer_lib.latex import align
from unimumer_lib.evaluation import metrics
from unimumer_lib.tasks import spec as taskspec
from unimumer_lib.latex.tokens import STRUCTURE_TOKENS

RESULTS_FILE = "crohme_2014_results.txt"
PUBLISHED_LINES = {"edit_score": "Mean Edit Score", "bleu4": "BLEU-4 Score", "exprate": "Exact Match Rate",
                   "le1": "Error ≤ 1", "le2": "Error ≤ 2", "le3": "Error ≤ 3"}


def published_numbers(path):
    """The printed numbers of the published results file: {key: decimal string}."""
    text = path.read_text(encoding="utf-8")
    out = {key: re.search(rf"{re.escape(label)}:\s+([\d.]+)%", text).group(1) for key, label in PUBLISHED_LINES.items()}
    out["cer"] = re.search(r"Character Error Rate:\s+([\d.]+)", text).group(1)
    out["n"] = re.search(r"Total Samples:\s+(\d+)", text).group(1)
    return out


@pytest.fixture(scope="module")
def reference(reference_predictions):
    rows = json.loads(reference_predictions.read_text(encoding="utf-8"))
    return [r["gt"] for r in rows], [r["pred"] for r in rows]


def test_reference_equals_published_to_all_printed_decimals(reference, reference_predictions):
    printed = published_numbers(reference_predictions.parent / RESULTS_FILE)
    ours = metrics.score(*reference).as_dict()
    assert str(ours["n"]) == printed["n"]
    for key in PUBLISHED_LINES:
        decimals = len(printed[key].split(".")[1])
        assert f"{ours[key]:.{decimals}f}" == printed[key], key


def test_published_cer_is_token_distance_over_characters_and_true_cer_differs(reference, reference_predictions):
    printed = published_numbers(reference_predictions.parent / RESULTS_FILE)["cer"]
    gts, preds = reference
    legacy = metrics.published_cer(gts, metrics.sample_distances(gts, preds))
    assert f"{legacy:.4f}" == printed
    # The true CER counts character edits, so it is larger than the token-count ratio here.
    assert metrics.score(gts, preds).cer == legacy
    assert metrics.score(gts, preds).cer_char > 100 * legacy


def test_bleu_equals_nltk_on_reference(reference):
    gts, preds = reference
    expected = corpus_bleu([[g.split()] for g in gts], [p.split() for p in preds],
                           smoothing_function=SmoothingFunction().method4)
    assert metrics.score(gts, preds).bleu4 == pytest.approx(100 * expected, abs=1e-9)


words = st.lists(st.sampled_from(["x", "y", "1", "2", "+", "{", "}", "^", "\\frac"]), max_size=7)


edits = st.lists(st.tuples(st.sampled_from(["sub", "ins", "del"]), st.integers(0, 40), st.sampled_from("ab")),
                 max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from("ab"), max_size=25), edits), min_size=1, max_size=8))
def test_bleu_equals_nltk_on_near_copies_with_repeated_ngrams(pairs):
    # Predictions a few edits away from long two-symbol references: n-grams repeat inside and across the common
    # prefix and suffix, which BLEU matches without counting (corpus_bleu's windows).
    gts, preds = [], []
    for gt, script in pairs:
        pred = list(gt)
        for op, at, token in script:
            if op == "ins":
                pred.insert(at % (len(pred) + 1), token)
            elif pred:
                if op == "sub":
                    pred[at % len(pred)] = token
                else:
                    del pred[at % len(pred)]
        gts.append(" ".join(gt))
        preds.append(" ".join(pred))
    try:
        expected = corpus_bleu([[g.split()] for g in gts], [p.split() for p in preds],
                               smoothing_function=SmoothingFunction().method4)
    except ZeroDivisionError:  # NLTK's method4 on a corpus of one-token hypotheses
        return
    assert metrics.score(gts, preds).bleu4 == pytest.approx(100 * expected, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(words, words), min_size=1, max_size=6))
def test_bleu_equals_nltk_on_short_random_corpora(pairs):
    gts = [" ".join(g) for g, _ in pairs]
    preds = [" ".join(p) for _, p in pairs]
    expected = corpus_bleu([[g] for g, _ in pairs], [p for _, p in pairs],
                           smoothing_function=SmoothingFunction().method4)
    assert metrics.score(gts, preds).bleu4 == pytest.approx(100 * expected, abs=1e-9)


def test_hand_made_scores():
    gts = ["x + 1", "\\alpha", "a b c", "", "x ^ { 2 }"]
    preds = ["x + l", "a", "a b", "", "y ^ { 3 }"]
    d = metrics.sample_distances(gts, preds)
    assert d.tolist() == [1, 1, 1, 0, 2]
    assert [metrics.edit_score(k, len(g.split()), len(p.split())) for k, g, p in zip(d, gts, preds)] == \
        pytest.approx([100 * 2 / 3, 0.0, 100 * 2 / 3, 100.0, 100 * 3 / 5])
    out = metrics.score(gts, preds).as_dict()
    assert out["exprate"] == pytest.approx(20.0)
    assert out["le1"] == pytest.approx(80.0)
    assert out["le2"] == out["le3"] == pytest.approx(100.0)
    # characters: "x + 1"->"x + l" 1/5, "\alpha"->"a" 5/6, "a b c"->"a b" 2/5, ""->"" 0, "x ^ { 2 }"->"y ^ { 3 }" 2/9
    assert out["cer_char"] == pytest.approx(100 * (1 + 5 + 2 + 0 + 2) / (5 + 6 + 5 + 0 + 9))
    # structure kept in samples 1, 2 (one symbol each), 4 (empty) and 5; "a b c" vs "a b" differs in length
    assert out["structure_rate"] == pytest.approx(80.0)


def test_skeleton_keeps_structure_tokens_only():
    toks = "\\frac { a } { \\sqrt { b } } ^ { 2 }".split()
    skel = metrics.skeleton(toks)
    assert [t for t in skel if t != metrics.PLACEHOLDER] == [t for t in toks if t in STRUCTURE_TOKENS]
    assert skel.count(metrics.PLACEHOLDER) == 3


def test_empty_corpus_and_length_mismatch():
    assert metrics.score([], []).n == 0
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        metrics.score(["a", "b"], ["a"])


def test_vocabulary_beyond_the_surrogate_block():
    # > 0xD800 distinct tokens: the one-char-per-token encoding must skip the surrogate code points.
    gts = [f"t{i} u{i}" for i in range(30000)]
    preds = [f"t{i} u{i + 1}" for i in range(30000)]
    out = metrics.score(gts, preds).as_dict()
    assert out["exprate"] == 0.0 and out["le1"] == 100.0


def test_bleu_equals_nltk_with_a_vocabulary_too_wide_to_pack():
    # ~60k distinct tokens: a 4-gram of 16-bit ids does not fit an int64 and must be renumbered exactly.
    gts = [" ".join(f"t{i + k}" for k in range(5)) for i in range(0, 60000, 3)]
    preds = [" ".join(f"t{i + k}" if k != i % 5 else "x" for k in range(5)) for i in range(0, 60000, 3)]
    expected = corpus_bleu([[g.split()] for g in gts], [p.split() for p in preds],
                           smoothing_function=SmoothingFunction().method4)
    assert metrics.score(gts, preds).bleu4 == pytest.approx(100 * expected, abs=1e-9)


def test_exprate_by_length_and_group():
    gts = ["a", "a b", "a b c d e f g h i j k"]
    d = np.array([0, 1, 0])
    rows = metrics.exprate_by_length(gts, d, bins=(0, 2, 10, 100))
    assert rows == [("1-2", 2, 50.0), ("3-10", 0, rows[1][2]), ("11-100", 1, 100.0)]
    assert np.isnan(rows[1][2])
    assert metrics.exprate_by_group(["A", "B", "A"], d) == {"A": (2, 100.0), "B": (1, 0.0)}


# ---------------------------------------------------------------- answer extraction

def test_extract_vanilla_strips_fences_and_dollars():
    assert taskspec.extract_answer("```latex\n$x ^ { 2 }$\n```", "vanilla") == "x ^ { 2 }"
    assert taskspec.extract_answer("\\[ a + b \\]", "vanilla") == "a + b"
    assert taskspec.extract_answer("  x  +\n 1 ", "vanilla") == "x + 1"


def test_extract_cot_and_counting_take_the_last_line():
    from unimumer_lib.latex import tree

    toks = "\\frac { 1 } { x ^ { 2 } } + y".split()
    cot = tree.tree_text(toks) + "\n" + " ".join(toks)
    assert taskspec.extract_answer(cot, "tree") == " ".join(toks)
    assert taskspec.extract_answer(cot) == " ".join(toks)
    counting = tree.count_text(toks) + "\n$" + " ".join(toks) + "$"
    assert taskspec.extract_answer(counting, "can") == " ".join(toks)
    assert taskspec.extract_answer("x: 1\nAnswer: x", "can") == "x"


def test_extract_tree_only_output_uses_tree_inverse(monkeypatch):
    fake = types.ModuleType("unimumer_lib.latex.tree")
    fake.tree_text_to_tokens = lambda text: ["FROM", "TREE"]
    monkeypatch.setitem(sys.modules, "unimumer_lib.latex.tree", fake)
    assert taskspec.extract_answer("x\n\t2 (sup)", "tree") == "FROM TREE"
    assert taskspec.extract_answer("x\ny (right)", "auto") == "FROM TREE"
    assert taskspec.extract_answer("x\ny (right)", "can") == "y (right)"


def test_extract_tree_only_output_round_trips_with_real_tree():
    from unimumer_lib.latex import tree

    toks = "\\sqrt { a } + b _ { 1 }".split()
    assert taskspec.extract_answer(tree.tree_text(toks), "tree") == " ".join(toks)


def test_extract_normalize_only_when_asked(monkeypatch):
    from unimumer_lib.latex import tokens as latex

    monkeypatch.setattr(latex, "normalize", lambda s: "NORMALISED " + s, raising=False)
    assert taskspec.extract_answer("$x$") == "x"
    assert taskspec.extract_answer("$x$", normalize=True) == "NORMALISED x"


def test_extract_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown task"):
        taskspec.extract_answer("x", "cot")
    with pytest.raises(TypeError, match="must be a string"):
        taskspec.extract_answer(None)
    assert taskspec.extract_answer("") == ""


# ---------------------------------------------------------------- properties

latexish = st.lists(st.sampled_from(["x", "y", "2", "\\frac", "{", "}", "^", "_", "\\sqrt", "\\alpha", "(", ")"]),
                    max_size=12)


@settings(max_examples=200, deadline=None)
@given(latexish, latexish, latexish)
def test_distance_is_a_metric(a, b, c):
    d = lambda u, v: align.distance(u, v)  # noqa: E731
    assert d(a, b) == d(b, a)
    assert d(a, a) == 0
    assert (d(a, b) == 0) == (a == b)
    assert d(a, c) <= d(a, b) + d(b, c)
    batch = metrics.sample_distances([" ".join(a), " ".join(b)], [" ".join(b), " ".join(c)])
    assert batch.tolist() == [d(a, b), d(b, c)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=30), st.integers(0, 10))
def test_exprate_is_monotone_in_threshold(dist, k):
    d = np.array(dist)
    assert metrics.exprate_at(d, k) <= metrics.exprate_at(d, k + 1)
    assert metrics.exprate_at(d, max(dist)) == 100.0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.text(), st.text()), max_size=6))
def test_no_crash_on_random_unicode(pairs):
    gts, preds = [g for g, _ in pairs], [p for _, p in pairs]
    out = metrics.score(gts, preds).as_dict()
    assert out["n"] == len(pairs)
    for key in ("exprate", "le1", "le2", "le3", "edit_score", "bleu4", "structure_rate"):
        assert 0.0 <= out[key] <= 100.0 + 1e-9
    assert out["exprate"] <= out["le1"] <= out["le2"] <= out["le3"]
    assert out["cer_char"] >= 0.0 and out["cer"] >= 0.0
    for text in gts:
        taskspec.extract_answer(text)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_single_spacing_shortcut_equals_split_join(text):
    assert metrics._single_spaced(text) == " ".join(text.split())


def test_scores_hold_the_result_keys_in_order():
    got = metrics.score(["x + 1", "y"], ["x + 1", "z"])
    assert isinstance(got, metrics.Scores) and tuple(got.as_dict()) == metrics.RESULT_KEYS
    assert (got.n, got.exprate, got.le1) == (2, 50.0, 100.0)
