"""Dataset I/O: caption.txt + images, sharegpt JSON, Hugging Face datasets / parquet, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unimumer_lib.core import files as F
from unimumer_lib.formats import records as R
from unimumer_lib.formats import sharegpt
from unimumer_lib.formats.records import Record


def tiny_image(shade: int, width: int = 20) -> Image.Image:
    return Image.new("L", (width, 10), shade)


def test_caption_file_round_trip(tmp_path):
    recs = [Record("a_1", "\\frac { 1 } { 2 }"), Record("b", "x ^ { 2 }")]
    path = R.write_captions(tmp_path / R.CAPTION_FILE, recs)
    assert path.read_text(encoding="utf-8") == "a_1\t\\frac { 1 } { 2 }\nb\tx ^ { 2 }\n"
    assert R.read_captions(path) == {"a_1": "\\frac { 1 } { 2 }", "b": "x ^ { 2 }"}


@pytest.mark.parametrize("text, message", [
    ("a\tx\nno-tab-here\n", ":2: expected"),
    ("a\tx\na\ty\n", ":2: duplicate id 'a'"),
    ("\tx\n", ":1: expected"),
])
def test_caption_file_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / R.CAPTION_FILE
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        R.read_captions(path)
    assert str(path) in str(err.value)


def test_caption_writer_rejects_tabs_and_newlines(tmp_path):
    with pytest.raises(ValueError, match="'a\\\\tb'"):
        R.write_captions(tmp_path / "c.txt", [Record("a\tb", "x")])
    assert not (tmp_path / "c.txt").exists()


def test_comer_folder_round_trip(tmp_path):
    recs = [Record("e1", "x + 1", image=tiny_image(0)), Record("e2", "y", image=tiny_image(200, 30))]
    R.write_comer(tmp_path / "train", recs)
    back = R.read_comer(tmp_path / "train", source="crohme")
    assert [(r.id, r.caption, r.split, r.source) for r in back] == [("e1", "x + 1", "train", "crohme"),
                                                                    ("e2", "y", "train", "crohme")]
    with Image.open(back[1].image_path) as im:
        assert im.size == (30, 10) and im.getpixel((0, 0)) == 200
    assert back[0].image_path.endswith(f"{R.IMAGES_DIR}/e1{R.IMAGE_SUFFIX}")


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "data.txt"
    F.atomic_write_text(target, "old")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(F.os, "replace", fail)
    with pytest.raises(OSError):
        F.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


# ---- sharegpt ----------------------------------------------------------------------------------

def test_sharegpt_round_trip(tmp_path):
    s = sharegpt
    rows = [s.sharegpt_row("Recognise the expression.", "x ^ { 2 }", ["images/a.png"]),
            {s.SHAREGPT_MESSAGES: [{s.ROLE_KEY: s.ROLE_SYSTEM, s.CONTENT_KEY: "You read maths."},
                                   {s.ROLE_KEY: s.ROLE_USER, s.CONTENT_KEY: f"{s.IMAGE_TOKEN}Find the error."},
                                   {s.ROLE_KEY: s.ROLE_ASSISTANT, s.CONTENT_KEY: "none"}],
             s.SHAREGPT_IMAGES: ["images/b.png"]}]
    assert rows[0][s.SHAREGPT_MESSAGES][0][s.CONTENT_KEY] == f"{s.IMAGE_TOKEN}Recognise the expression."
    path = sharegpt.write_sharegpt(tmp_path / "train.json", rows)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw[0] == {"messages": [{"from": "human", "value": "<image>Recognise the expression."},
                                   {"from": "gpt", "value": "x ^ { 2 }"}], "images": ["images/a.png"]}
    assert sharegpt.read_sharegpt(path) == rows


def good_row():
    return sharegpt.sharegpt_row("Read it.", "1", ["i.png"])


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: r.pop("messages"), "'messages' must be a non-empty list"),
    (lambda r: r["messages"][1].update({"from": "assistant"}), "message 1 has role 'assistant'"),
    (lambda r: r["messages"][0].update({"extra": 1}), "message 0 must have exactly"),
    (lambda r: r["messages"].reverse(), "turn 0 is 'gpt'"),
    (lambda r: r["messages"].pop(), "last turn must be 'gpt'"),
    (lambda r: r.update({"images": []}), "1 <image> placeholders but 0 images"),
    (lambda r: r.update({"images": [""]}), "list of non-empty path strings"),
    (lambda r: r["messages"][1].update({"value": 3}), "message 1 value must be a string"),
])
def test_sharegpt_validation_names_index_and_reason(tmp_path, mutate, reason):
    bad = good_row()
    mutate(bad)
    target = tmp_path / "out.json"
    with pytest.raises(ValueError, match="sharegpt record 1: ") as err:
        sharegpt.write_sharegpt(target, [good_row(), bad])
    assert reason in str(err.value)
    assert not target.exists()
    target.write_text(json.dumps([good_row(), bad]))
    with pytest.raises(ValueError, match="record 1") as err:
        sharegpt.read_sharegpt(target)
    assert str(target) in str(err.value)


def test_sharegpt_reader_rejects_non_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[{")
    with pytest.raises(ValueError, match="malformed JSON at line 1"):
        sharegpt.read_sharegpt(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match="JSON list"):
        sharegpt.read_sharegpt(path)


# ---- Hugging Face ------------------------------------------------------------------------------

def test_hf_dataset_and_parquet(tmp_path):
    from datasets import Dataset, Image as ImageFeature

    tiny_image(50).save(tmp_path / "p.png")
    recs = [Record("m", "a", image=tiny_image(0), source="s", split="train"),
            Record("p", "b + c", image_path=str(tmp_path / "p.png"), source="t", split="train")]
    ds = R.to_hf_dataset(recs)
    assert ds.column_names == list(R.HF_COLUMNS) and len(ds) == 2
    assert isinstance(ds.features["image"], ImageFeature)
    assert ds[1]["image"].size == (20, 10) and ds[1]["caption"] == "b + c"

    assert [r.caption for r in R.from_hf_dataset(ds)] == ["a", "b + c"]

    path = R.export_parquet(recs, tmp_path / "out" / "train.parquet")
    (tmp_path / "p.png").unlink()  # the parquet file stands alone: its images are embedded, not referenced
    back = Dataset.from_parquet(str(path))
    assert back["id"] == ["m", "p"] and back["source"] == ["s", "t"]
    images = [back.cast_column("image", ImageFeature())[i]["image"] for i in range(2)]
    assert [int(np.asarray(im).max()) for im in images] == [0, 50]


def test_hf_dataset_needs_an_image():
    with pytest.raises(ValueError, match="record 'x': no image"):
        R.to_hf_dataset([Record("x", "1")])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    import os

    old = os.umask(umask)
    try:
        text = F.atomic_write_text(tmp_path / "a.txt", "x")
        image = F.atomic_save_image(tmp_path / "a.png", Image.new("L", (4, 4)))
    finally:
        os.umask(old)
    assert (text.stat().st_mode & 0o777, image.stat().st_mode & 0o777) == (mode, mode)


def test_two_images_with_one_name_in_two_folders_are_two_records(tmp_path):
    """Issue 34 (item 30): `infer --image d1/a.png d2/a.png` said "image 'a.png' given twice" (two different files)."""
    from PIL import Image

    from unimumer_lib.formats.records import image_records

    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "d1" / "b.png")
    records = image_records([tmp_path / "d1" / "a.png", tmp_path / "d2" / "a.png", tmp_path / "d1" / "b.png"])
    assert [r.id for r in records] == ["d1/a.png", "d2/a.png", "b"]
    with pytest.raises(ValueError, match="given twice"):
        image_records([tmp_path / "d1" / "a.png", tmp_path / "d1" / ".." / "d1" / "a.png"])
    with pytest.raises(FileNotFoundError, match="nosuch.png: no such file"):
        image_records([tmp_path / "nosuch.png"])
