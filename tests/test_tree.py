"""Tree-CoT and symbol counting: the published examples, the inverse, and the round trip on all of CROHME."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unimumer_lib.inkml import caption_of, read_inkml_folder
from unimumer_lib.latex import ACCENTS, BIG_OPERATORS, FRAC_LIKE
from unimumer_lib.tree import TreeError, count_text, depth, parse, tree_text, tree_text_to_tokens

# The two published examples, pasted JSON-escaped from issue 4 (tree text, a newline, the caption).
PUBLISHED = [
    ("\\frac { a ^ { 2 } + 1 } { b }",
     r'"\\frac\n\ta (above)\n\t\t2 (sup)\n\t+ (right)\n\t1 (right)\n\tb (below)\n\\frac { a ^ { 2 } + 1 } { b }"',
     r"\frac: 1, a: 1, ^: 1, 2: 1, +: 1, 1: 1, b: 1"),
    (r"y = \begin {cases} 1 & x < 0 \\ 2 & x \geq 0 \\ 1 & 0 \end {cases} > 0",
     r'"y\n= (right)\n\\begin (right)\n\t1 (begin_cases)\n\t& (right)\n\tx (right)\n\t< (right)\n\t0 (right)'
     r'\n\t\t2 (nextline)\n\t\t& (right)\n\t\tx (right)\n\t\t\\geq (right)\n\t\t0 (right)\n\t\t\t1 (nextline)'
     r'\n\t\t\t& (right)\n\t\t\t0 (right)\n\t\\end (end_cases)\n> (right)\n0 (right)\n'
     r'y = \\begin {cases} 1 & x < 0 \\\\ 2 & x \\geq 0 \\\\ 1 & 0 \\end {cases} > 0"',
     r"y: 1, =: 1, \begin: 1, {cases}: 2, 1: 2, &: 3, x: 2, <: 1, 0: 4, \\: 2, 2: 1, \geq: 1, \end: 1, >: 1"),
]


@pytest.mark.parametrize("caption, published, counts", PUBLISHED)
def test_published_examples_byte_for_byte(caption, published, counts):
    target = json.loads(published)
    assert target.endswith("\n" + caption)
    assert tree_text(caption) + "\n" + caption == target
    assert count_text(caption) == counts
    assert tree_text_to_tokens(target.rpartition("\n")[0]) == caption.split()


def test_relations_by_hand():
    lines = parse(r"\sum \limits _ { i } ^ { n } \sqrt [ 3 ] { x } ^ { 2 } \hat { a } _ { k }")
    assert lines == [(0, "\\sum", None), (0, "\\limits", "right"), (1, "i", "below"), (1, "n", "above"),
                     (0, "\\sqrt", "right"), (1, "3", "below"), (1, "x", "above"), (1, "2", "sup"),
                     (0, "\\hat", "right"), (1, "a", "above"), (1, "k", "sub")]
    assert tree_text(r"\int _ { 0 } ^ { 1 } x") == "\\int\n\t0 (below)\n\t1 (above)\nx (right)"
    assert tree_text("x _ { i } ^ { 2 }") == "x\n\ti (sub)\n\t2 (sup)"
    assert tree_text("[ a ] ^ { 2 }") == "[\na (right)\n] (right)\n\t2 (sup)"


def test_depth():
    assert depth("a + b") == 0
    assert depth("x ^ { 2 }") == 1
    assert depth(r"\frac { a ^ { 2 } } { b }") == 2
    assert depth(r"\sqrt { \sqrt { \sqrt { 4 ^ { 4 } } } }") == 4


def test_bare_accent_is_a_plain_symbol():
    # CROHME (MfrDB) captions write the arrow of limits as a bare \vec
    caption = r"\lim \limits _ { n \vec \infty } x"
    assert "\t\\vec (right)" in tree_text(caption).split("\n")
    assert tree_text_to_tokens(tree_text(caption)) == caption.split()


@pytest.mark.parametrize("caption, reason", [
    ("", "empty formula"),
    ("x ^ 2", "expected '{'"),
    (r"\frac { a } b", "expected '{'"),
    ("a }", "unbalanced '}'"),
    ("{ a } ^ { 2 }", "brace group"),
    ("^ { 2 } x", "no base"),
    ("x ^ { }", "empty sup group"),
    ("a ^ { b", "unclosed"),
    (r"\sqrt [ 3 x", "unclosed '['"),
    (r"\begin {cases} a \end {matrix}", "not closed"),
    (r"\begin cases a \end cases", "environment token"),
    (r"a \\", "empty nextline"),
    (r"\\ a", "no symbol before"),
    (r"a \end {cases}", "unbalanced"),
])
def test_unrepresentable_captions_raise_with_reason(caption, reason):
    with pytest.raises(TreeError, match=re.escape(reason)):
        tree_text(caption)


@pytest.mark.parametrize("text", [
    "a (right)",                 # first line must be the root
    "a\n\t\tb (sup)",            # skips a level
    "a\nb",                      # a second root
    "a\n\tb (above)",            # ordinary symbols have no above argument
    "\\frac\n\ta (sup x)",       # not a node line
    "a\n\tb (nosuch)",
])
def test_malformed_tree_text_raises(text):
    with pytest.raises(TreeError):
        tree_text_to_tokens(text)


# A small grammar of well-formed captions for the property test.
# (no '[' ']': inside a \sqrt index a ']' closes the index, brackets are covered by the CROHME captions)
_SYMBOLS = st.sampled_from(["a", "x", "2", "+", "=", "(", ")", "\\alpha", "\\infty", "&", ",", "\\vec"])


def _expr(inner):
    group = inner.map(lambda t: ["{", *t, "}"])
    item = st.one_of(
        _SYMBOLS.map(lambda s: [s]),
        st.tuples(_SYMBOLS, st.sampled_from(["^", "_"]), group).map(lambda t: [t[0], t[1], *t[2]]),
        st.tuples(st.sampled_from(FRAC_LIKE), group, group).map(lambda t: [t[0], *t[1], *t[2]]),
        st.tuples(st.sampled_from(ACCENTS), group).map(lambda t: [t[0], *t[1]]),
        st.tuples(st.sampled_from(BIG_OPERATORS), st.booleans(), group, group).map(
            lambda t: [t[0], *(["\\limits"] if t[1] else []), "_", *t[2], "^", *t[3]]),
        st.tuples(inner, group).map(lambda t: ["\\sqrt", "[", *t[0], "]", *t[1]]),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda rows: ["\\begin", "{matrix}", *[t for k, r in enumerate(rows) for t in ([r"\\"] if k else []) + r],
                          "\\end", "{matrix}"]),
    )
    return st.lists(item, min_size=1, max_size=4).map(lambda parts: [t for p in parts for t in p])


CAPTIONS = st.recursive(_SYMBOLS.map(lambda s: [s]), _expr, max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(CAPTIONS)
def test_round_trip_property(tokens):
    assert tree_text_to_tokens(tree_text(tokens)) == tokens


def test_round_trip_reference_gt(reference_predictions):
    captions = [r["gt"] for r in json.loads(reference_predictions.read_text(encoding="utf-8"))]
    assert len(captions) == 986
    assert [c for c in captions if tree_text_to_tokens(tree_text(c)) != c.split()] == []


@pytest.mark.slow
def test_round_trip_all_crohme_captions(crohme_root):
    captions, unreadable = [], []
    for split in ("train", "test2014", "test2016"):
        inks, rejects = read_inkml_folder(crohme_root / split)
        unreadable += rejects
        for ink in inks:
            try:
                captions.append(caption_of(ink))
            except ValueError:
                unreadable.append(ink.id)
    failures = []
    for c in captions:
        try:
            if tree_text_to_tokens(tree_text(c)) != c.split():
                failures.append((c, "round trip differs"))
        except TreeError as err:
            failures.append((c, str(err)))
    print(f"tree round trip: {len(captions) - len(failures)}/{len(captions)} captions, "
          f"{len(unreadable)} files without a caption")
    assert len(captions) >= 10_900  # 8,836 + 986 + 1,147 files, one known empty
    assert failures == []
