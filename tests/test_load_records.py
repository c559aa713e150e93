"""``records.load_records``: the three layouts ``unimumer infer --data`` reads (made-up folders)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from unimumer_lib.formats.records import CAPTION_FILE, IMAGES_DIR, load_records


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 20), "white").save(path)


def test_prepared_split_folder(tmp_path):
    _image(tmp_path / IMAGES_DIR / "a.png")
    (tmp_path / CAPTION_FILE).write_text("a\tx + 1\nb\ty\n")
    records = load_records(tmp_path)
    assert [(r.id, r.caption) for r in records] == [("a", "x + 1"), ("b", "y")]
    assert records[0].image_path.endswith("a.png") and records[1].image_path is None


def test_comer_folder_with_bmp_and_jpg(tmp_path):
    _image(tmp_path / "img" / "18_em_0.bmp")
    _image(tmp_path / "img" / "18_em_1.jpg")
    (tmp_path / CAPTION_FILE).write_text("18_em_0\t\\frac { a } { b }\n18_em_1\tc\n")
    records = load_records(tmp_path)
    assert [r.image_path.rsplit(".", 1)[1] for r in records] == ["bmp", "jpg"]
    assert records[0].caption == "\\frac { a } { b }"


def test_official_prompt_json(tmp_path):
    _image(tmp_path / "data" / "img" / "18_em_0.bmp")
    rows = [{"messages": [{"role": "user", "content": "<image>I have an image ..."},
                          {"role": "assistant", "content": "a + b"}], "images": ["data/img/18_em_0.bmp"]},
            {"messages": [{"role": "user", "content": "<image>I have an image ..."}],
             "images": ["data/img/missing.bmp"]}]
    (tmp_path / "crohme_2014.json").write_text(json.dumps(rows))
    records = load_records(tmp_path / "crohme_2014.json")
    assert [(r.id, r.caption) for r in records] == [("18_em_0", "a + b"), ("missing", "")]
    assert records[0].image_path == str(tmp_path / "data" / "img" / "18_em_0.bmp") and records[1].image_path is None
    with pytest.raises(ValueError, match="no usable record"):  # no image found under that root
        load_records(tmp_path / "crohme_2014.json", root=tmp_path / "nowhere")


def test_unknown_layout_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_records(tmp_path)
