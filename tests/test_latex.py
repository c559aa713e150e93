"""Caption tokenising/normalising and the canonical CROHME caption, on hand-made cases and on real CROHME files."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unimumer_lib.data.inkml import read_inkml_folder
from unimumer_lib.latex.tokens import (BIG_OPERATORS, SPACING, canonical_caption, mathml_tokens, normalize,
                                tokenize)

AGREEMENT_TARGET = 0.99
MATH = "<math xmlns='http://www.w3.org/1998/Math/MathML'>{}</math>"


def caption(mathml_body: str, latex: str | None = None) -> str:
    return canonical_caption(MATH.format(mathml_body), latex)


# ---- tokenize --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("latex, tokens", [
    (r"\alpha+\beta", [r"\alpha", "+", r"\beta"]),
    (r"a\\b", ["a", "\\\\", "b"]),
    (r"\{x\}", [r"\{", "x", r"\}"]),
    (r"a\,b\ c", ["a", r"\,", "b", "\\ ", "c"]),
    ("x12ab", ["x", "1", "2", "a", "b"]),
    (r"\begin {cases} x \end{cases}", [r"\begin", "{cases}", "x", r"\end", "{cases}"]),
    (r"\sin2x", [r"\sin", "2", "x"]),
    ("  ", []),
])
def test_tokenize(latex, tokens):
    assert tokenize(latex) == tokens


def test_tokenize_long_input():
    # a regex-backtracking or quadratic tokenizer would not finish this
    assert len(tokenize(r"\frac{a}{b}" * 20000)) == 140000


# ---- normalize -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (r"$\frac1p$", r"\frac { 1 } { p }"),
    ("x^2", "x ^ { 2 }"),
    ("x^{10}", "x ^ { 1 0 }"),
    ("x^a_b", "x _ { b } ^ { a }"),
    (r"\!x\,+\ y\quad z\;", "x + y z"),
    (r"\lbrack a \rbrack", "[ a ]"),
    (r"a \lt b \gt c \le d \ne e", r"a < b > c \leq d \neq e"),
    (r"\left( x \right)", "( x )"),
    (r"\left. \frac{d}{dx} \right|_{0}", r"\frac { d } { d x } | _ { 0 }"),
    ("{(x+1)^{2}}", "( x + 1 ) ^ { 2 }"),
    ("{t}^{2}", "t ^ { 2 }"),
    (r"\sum_{i=1}^n i", r"\sum \limits _ { i = 1 } ^ { n } i"),
    (r"\int^b_a f", r"\int \limits _ { a } ^ { b } f"),
    (r"\lim_{x\to0}", r"\lim \limits _ { x \rightarrow 0 }"),
    (r"\sum \limits ^ {n} _ {k}", r"\sum \limits _ { k } ^ { n }"),
    (r"\int f", r"\int f"),
    (r"\sqrt[3]{2}", r"\sqrt [ 3 ] { 2 }"),
    (r"\sqrt4", r"\sqrt { 4 }"),
    (r"\frac 2 {\phi^3}", r"\frac { 2 } { \phi ^ { 3 } }"),
    ("d(y _ {}, z)", "d ( y , z )"),
    (r"\mbox { erf } (x)", "e r f ( x )"),
    ("f'", r"f \prime"),
    ("a &lt; b", "a < b"),
    (r"x^\frac12", r"x ^ { \frac { 1 } { 2 } }"),
    (r"\begin{matrix} a & b \\ c & d \end{matrix}", r"\begin {matrix} a & b \\ c & d \end {matrix}"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_normalize_drops_every_spacing_command():
    for command in SPACING:
        assert normalize(f"a {command} b") == "a b", command


def test_limits_only_on_big_operators_with_scripts():
    for op in BIG_OPERATORS:
        assert normalize(f"{op}_a x") == f"{op} \\limits _ {{ a }} x"
    assert normalize(r"\log_2 x") == r"\log _ { 2 } x"


LATEX_PIECES = ["x", "1", "{", "}", "^", "_", "\\frac", "\\sqrt", "[", "]", "\\sum", "\\limits", "\\left",
                "\\right", ".", "(", "\\,", "\\hat", "\\mbox", "$", "'", "\\begin", "{cases}", "\\\\", "&"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(LATEX_PIECES), max_size=16))
def test_normalize_idempotent_on_arbitrary_input(pieces):
    once = normalize(" ".join(pieces))
    assert normalize(once) == once


@pytest.fixture(scope="module")
def reference_gt(reference_predictions):
    return {r["img_id"]: " ".join(r["gt"].split()) for r in json.loads(reference_predictions.read_text())}


def test_literature_captions_are_fixed_points(reference_gt):
    changed = {k: (gt, normalize(gt)) for k, gt in reference_gt.items() if normalize(gt) != gt}
    assert not changed


# ---- canonical_caption: hand-made MathML -------------------------------------------------------------------

def test_mathml_structure():
    body = ("<mrow><msubsup><mo>\\sum</mo><mrow><mi>i</mi><mo>=</mo><mn>1</mn></mrow><mi>n</mi></msubsup>"
            "<mfrac><mn>1</mn><msqrt><mi>x</mi></msqrt></mfrac><mroot><mi>y</mi><mn>3</mn></mroot>"
            "<munder><mo>lim</mo><mi>x</mi></munder><msup><mi>e</mi><mn>12</mn></msup></mrow>")
    assert caption(body) == (r"\sum \limits _ { i = 1 } ^ { n } \frac { 1 } { \sqrt { x } } "
                             r"\sqrt [ 3 ] { y } \lim \limits _ { x } e ^ { 1 2 }")


@pytest.mark.parametrize("leaf, token", [
    ("<mo>hellip</mo>", r"\ldots"), ("<mo>rarr</mo>", r"\rightarrow"), ("<mi>infin</mi>", r"\infty"),
    ("<mo>&lt;</mo>", "<"), ("<mo>\\gt</mo>", ">"), ("<mi>theta</mi>", r"\theta"), ("<mo>{</mo>", r"\{"),
    ("<mo>·</mo>", r"\cdot"), ('<mo xml:id="\\lim_1">im</mo>', r"\lim"),
    ('<mo xml:id="\\vec_1">rightarrow</mo>', r"\rightarrow"),
])
def test_mathml_symbol_spellings(leaf, token):
    assert caption(leaf) == token


def test_punctuation_is_moved_out_of_scripts():
    body = "<mrow><msub><mi>\\sigma</mi><mrow><mi>a</mi><mo>,</mo></mrow></msub><mi>b</mi></mrow>"
    assert caption(body) == r"\sigma _ { a } , b"
    assert caption("<msub><mn>0</mn><mo>.</mo></msub>") == "0 ."


def test_raw_latex_decides_confusable_spellings():
    body = "<mrow><mi>x</mi><mo>+</mo><mo>hellip</mo><mo>.</mo><mi>\\pi</mi></mrow>"
    assert caption(body, r"$x+\cdots\cdot\Pi$") == r"x + \cdots \cdot \Pi"
    three_dots = "<mrow><mo>.</mo><mo>.</mo><mo>.</mo><mo>+</mo><mi>a</mi></mrow>"
    assert caption(three_dots, r"{\cdots+a}") == r"\cdots + a"


def test_mathml_wins_over_raw_structure_and_symbols():
    # the raw LaTeX of some RIT files holds converter artefacts ("ABOVE") and letters for function names
    root = "<mroot><mrow><msup><mi>x</mi><mi>p</mi></msup></mrow><mi>q</mi></mroot>"
    assert caption(root, r"$\sqrt {x ^ {p}} ABOVE {q}$") == r"\sqrt [ q ] { x ^ { p } }"
    assert caption("<mrow><mi>log</mi><mi>x</mi></mrow>", "$log x$") == r"\log x"


def test_fallback_to_raw_latex():
    assert canonical_caption(None, r"$\frac1p$") == r"\frac { 1 } { p }"
    assert canonical_caption("<math><mfrac><mi>a</mi></mfrac></math>", "a/b") == "a / b"
    truncated = "<mrow><msqrt><mi>x</mi></msqrt></mrow>"
    assert caption(truncated, r"\sqrt{x} = y") == r"\sqrt { x } = y"
    double_sub = "<msub><msub><mi>e</mi><mi>f</mi></msub><mi>g</mi></msub>"
    assert caption(double_sub, "e_{f_g}") == "e _ { f _ { g } }"
    with pytest.raises(ValueError, match="neither"):
        canonical_caption(None, None)


def test_mathml_tokens_rejects_unknown_elements():
    with pytest.raises(ValueError, match="unsupported MathML element <mblah>"):
        mathml_tokens(MATH.format("<mblah/>"))


# ---- real CROHME ----------------------------------------------------------------------------------------

def test_agreement_with_literature_on_test2014(crohme_root, reference_gt):
    inks, rejects = read_inkml_folder(crohme_root / "test2014")
    ours = {ink.id: canonical_caption(ink.mathml, ink.latex) for ink in inks}
    assert not rejects and set(ours) == set(reference_gt)
    agree = sum(ours[k] == gt for k, gt in reference_gt.items())
    assert agree / len(reference_gt) >= AGREEMENT_TARGET, f"{agree}/{len(reference_gt)}"


@pytest.mark.parametrize("split, min_agreement", [("test2016", 0.99), ("train", 0.98)])
def test_other_splits_caption_and_agree_with_raw_latex(crohme_root, split, min_agreement):
    inks, _ = read_inkml_folder(crohme_root / split)
    captions = [canonical_caption(ink.mathml, ink.latex) for ink in inks]  # never raises
    assert all(captions)
    agree = sum(c == normalize(ink.latex) for c, ink in zip(captions, inks))
    assert agree / len(inks) >= min_agreement
