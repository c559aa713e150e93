"""The confusion-symbol inspector: builds, its controls filter and page the gallery, images or text fallback,
rendered-math cards, image paths from every data layout, the label-noise toggle."""

from __future__ import annotations

import ipywidgets as w
import pytest
from PIL import Image

from unimumer_lib.evaluation import analysis, widgets
from unimumer_lib.formats.predictions import Prediction, read_predictions


@pytest.fixture
def samples():
    preds = [Prediction("img1", "x + 1", "X + 1", extra={"dataset": "A"}),
             Prediction("img2", "x ^ { 2 }", "X ^ { 2 }", extra={"dataset": "B"}),
             Prediction("img3", "1 - l", "l - l", extra={"dataset": "A"}),
             Prediction("img4", "a", "a", extra={"dataset": "A"}),
             Prediction("img5", "a < b", "a b", extra={"dataset": "B"})]
    return analysis.samples_frame(preds)


@pytest.fixture
def images(tmp_path):
    Image.new("L", (40, 20), 255).save(tmp_path / "img1.png")
    return tmp_path


def shown_ids(ins):
    return [i for i in ("img1", "img2", "img3", "img4", "img5") if f"<b>{i}</b>" in ins.html]


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMUMER_RUNS", str(tmp_path / "runs"))  # label-noise flags go here by default
    return tmp_path / "runs"


def test_builds_with_images_and_text_fallback(samples, images):
    ins = widgets.ConfusionInspector(samples, images_dir=images, page_size=10)
    assert isinstance(ins.widget, w.VBox)
    assert shown_ids(ins) == ["img1", "img2", "img3", "img5"]  # wrong samples only
    assert ins.html.count("data:image/png;base64,") == 1
    assert ins.html.count("(no image)") == 3
    assert ins.status.value.startswith("4 samples")
    # the ranked list starts with the most frequent pair
    assert ins.pairs.options[1][1] == ("x", "X")


def test_controls_update_gallery(samples):
    ins = widgets.ConfusionInspector(samples, page_size=10)
    ins.pairs.value = ("x", "X")
    assert shown_ids(ins) == ["img1", "img2"]
    ins.dataset.value = "B"
    assert shown_ids(ins) == ["img2"]
    ins.dataset.value = widgets.ALL
    ins.symbol.value = "l"
    assert shown_ids(ins) == ["img3"]
    ins.symbol.value = ""
    ins.pairs.value = None
    ins.error_class.value = analysis.LENGTH
    assert shown_ids(ins) == ["img5"]
    ins.error_class.value = widgets.ALL
    ins.length.value = (4, 5)
    assert shown_ids(ins) == ["img2"]
    ins.length.value = (0, 0)
    assert "no sample matches" in ins.html


def test_paging(samples):
    ins = widgets.ConfusionInspector(samples, page_size=3)
    assert shown_ids(ins) == ["img1", "img2", "img3"] and "page 1/2" in ins.status.value
    ins.next.click()
    assert shown_ids(ins) == ["img5"] and "page 2/2" in ins.status.value
    ins.next.click()
    assert "page 2/2" in ins.status.value
    ins.prev.click()
    assert shown_ids(ins) == ["img1", "img2", "img3"]
    ins.next.click()
    ins.dataset.value = "A"  # a filter change goes back to page 1
    assert "page 1/1" in ins.status.value


def test_highlight_marks_differences_and_escapes_html(samples):
    ins = widgets.ConfusionInspector(samples, page_size=10)
    ins.error_class.value = analysis.LENGTH
    html = ins.html
    assert 'font-weight:bold">&lt;</span>' in html  # the deleted "<" is marked and escaped
    assert "a < b" not in html
    assert widgets.highlight(["x", "+"], [False, True], "pred").endswith('bold">+</span>')


def test_reference_inspector_builds(reference_predictions):
    ins = widgets.inspector(reference_predictions, page_size=4)
    total = int(ins.status.value.split()[0])
    assert total == (~ins.samples["correct"]).sum()
    ins.pairs.value = ins.pairs.options[1][1]
    assert 0 < int(ins.status.value.split()[0]) < total


def test_rendered_math_card_colours_the_differing_symbol(samples):
    ins = widgets.ConfusionInspector(samples, page_size=10)
    ins.symbol.value = "l"
    (card,) = ins.gallery.children
    math, toggle = card.children
    assert isinstance(math, w.HTMLMath) and isinstance(toggle, w.ToggleButton)
    # "1 - l" vs "l - l": the first token differs; typeset as inline math with the symbol coloured
    assert r"GT: \({\color{red} 1} - l\)" in math.value
    assert r"Pred: \({\color{green} l} - l\)" in math.value
    assert widgets.math_html(["x", "^", "{", "2"], [False, True, True, True], "gt").startswith("<i>(braces")
    assert widgets.math_source(["\\frac", "{", "a", "}"], [True, False, True, False], "gt") == \
        "\\frac { {\\color{red} a} }"  # structure tokens are never wrapped
    assert "&lt;" in widgets.math_html(["a", "<", "b"], [False, True, False], "gt")


def test_image_path_absolute_or_relative_to_root(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (30, 10), "white").save(tmp_path / "imgs" / "a.jpg")
    preds = [Prediction("a", "x", "y", image_path="./imgs/a.jpg"),
             Prediction("b", "x", "z", image_path=str(tmp_path / "imgs" / "a.jpg"))]
    ins = widgets.inspector(preds, root=tmp_path, page_size=10)
    assert ins.html.count("data:image/jpeg;base64,") == 2
    assert widgets.inspector(preds, root=tmp_path / "elsewhere").html.count("data:image/jpeg") == 1


def test_images_from_an_official_prompt_json(tmp_path):
    from test_layouts import official_json

    path = official_json(tmp_path, {"18_em_0": "a + b"})
    preds = [Prediction("18_em_0", "a + b", "a - b", image_path="/nowhere/18_em_0.jpg")]
    ins = widgets.inspector(preds, data=path, root=tmp_path / "repo")
    assert ins.html.count("data:image/jpeg;base64,") == 1


def test_label_noise_toggle_writes_flagged_ids(samples, runs):
    ins = widgets.ConfusionInspector(samples, page_size=10)
    ins.toggles["img3"].value = True
    ins.toggles["img5"].value = True
    ins.toggles["img5"].value = False
    flags = runs / widgets.LABEL_NOISE_FILE
    assert flags.read_text(encoding="utf-8").splitlines() == ["img_id,dataset,gt,pred", "img3,A,1 - l,l - l"]
    again = widgets.ConfusionInspector(samples, page_size=10)  # flags survive a restart
    assert again.toggles["img3"].value and not again.toggles["img1"].value


def test_the_pair_list_leads_with_substitutions_and_names_insertions_and_deletions(reference_predictions):
    """Issue 32 (item 5): the list was led by brace insertions/deletions, unlike the substitution table above it."""
    ins = widgets.ConfusionInspector(analysis.samples_frame(read_predictions(reference_predictions)), page_size=5)
    labels = [label for label, value in ins.pairs.options if value is not None]
    kinds = ["indel" if analysis.GAP in value else "sub" for _, value in ins.pairs.options if value is not None]
    assert kinds[0] == "sub" and kinds == sorted(kinds, key=lambda k: k == "indel") and "indel" in kinds
    assert all(lab.startswith(("missing: ", "extra: ")) for lab, k in zip(labels, kinds) if k == "indel")
    top = analysis.confusion_records(analysis.confusion_table(ins.samples))[0]
    assert labels[0].startswith(f"{analysis.token_label(top[0])} → {analysis.token_label(top[1])}  ({top[2]})")
