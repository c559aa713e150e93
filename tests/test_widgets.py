"""The confusion-symbol inspector: builds, its controls filter and page the gallery, images or text fallback."""

from __future__ import annotations

import ipywidgets as w
import pytest
from PIL import Image

from unimumer_lib import analysis, widgets
from unimumer_lib.predictions import Prediction


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
    return [i for i in ("img1", "img2", "img3", "img4", "img5") if f"<b>{i}</b>" in ins.gallery.value]


def test_builds_with_images_and_text_fallback(samples, images):
    ins = widgets.ConfusionInspector(samples, images_dir=images, page_size=10)
    assert isinstance(ins.widget, w.VBox)
    assert shown_ids(ins) == ["img1", "img2", "img3", "img5"]  # wrong samples only
    assert ins.gallery.value.count("data:image/png;base64,") == 1
    assert ins.gallery.value.count("(no image)") == 3
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
    assert "no sample matches" in ins.gallery.value


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
    html = ins.gallery.value
    assert 'font-weight:bold">&lt;</span>' in html  # the deleted "<" is marked and escaped
    assert "a < b" not in html
    assert widgets.highlight(["x", "+"], [False, True], "pred").endswith('bold">+</span>')


def test_reference_inspector_builds(reference_predictions):
    ins = widgets.inspector(reference_predictions, page_size=4)
    total = int(ins.status.value.split()[0])
    assert total == (~ins.samples["correct"]).sum()
    ins.pairs.value = ins.pairs.options[1][1]
    assert 0 < int(ins.status.value.split()[0]) < total
