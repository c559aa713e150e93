"""The data layouts HMER users already have, read by ``records.load_records`` and used by ``unimumer tasks``."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from unimumer_lib.pipeline import cli
from unimumer_lib.data.prepare import prepare_split
from unimumer_lib.formats.records import CAPTION_FILE, load_records, read_captions
from unimumer_lib.formats.sharegpt import read_sharegpt

OFFICIAL_PROMPT = ("I have an image of a handwritten mathematical expression. Please write out the expression of "
                   "the formula in the image using LaTeX format.")


@pytest.fixture(scope="module")
def comer_bmp(crohme_root, tmp_path_factory):
    """A CoMER/TAMER/PosFormer test folder: caption.txt + img/*.bmp, from five CROHME test2014 inks."""
    tmp = tmp_path_factory.mktemp("comer")
    prepare_split(crohme_root / "test2014", tmp / "prepared", height=64, workers=1, limit=5)
    folder = tmp / "2014"
    (folder / "img").mkdir(parents=True)
    for png in (tmp / "prepared" / "images").glob("*.png"):
        with Image.open(png) as im:
            im.convert("L").save(folder / "img" / f"{png.stem}.bmp")
    shutil.copy(tmp / "prepared" / CAPTION_FILE, folder / CAPTION_FILE)
    return folder


def test_comer_bmp_folder_gives_one_task_row_per_caption(comer_bmp, tmp_path, capsys):
    captions = read_captions(comer_bmp / CAPTION_FILE)
    records = load_records(comer_bmp)
    assert [r.id for r in records] == list(captions) and len(records) == 5
    assert all(r.image_path.endswith(".bmp") for r in records)
    # CROHME 2014 test images: allowed here, the layout is under test (issue 10's leak guard refuses them otherwise)
    assert cli.main(["tasks", "--captions", str(comer_bmp), "--tasks", "vanilla,tree", "--out", str(tmp_path),
                     "--allow-test-images"]) == 0
    assert "vanilla: read 5 = written 5 + rejected 0" in capsys.readouterr().out
    rows = read_sharegpt(tmp_path / "vanilla.json")
    assert [r["messages"][1]["value"] for r in rows] == list(captions.values())
    assert all(r["images"][0].endswith(".bmp") for r in rows)


def test_hme100k_folder_with_jpg_names_and_space_separated_lines(tmp_path):
    folder = tmp_path / "test"
    (folder / "test_images").mkdir(parents=True)
    (folder / CAPTION_FILE).write_text("test_1.jpg\tx + 1\ntest_2.jpg \\frac { a } { b }\ntest_3.jpg y\n",
                                       encoding="utf-8")
    for key in ("test_1", "test_2"):
        Image.new("RGB", (20, 10), "white").save(folder / "test_images" / f"{key}.jpg")
    records = load_records(folder / CAPTION_FILE)
    assert [(r.id, r.caption) for r in records] == [("test_1", "x + 1"), ("test_2", r"\frac { a } { b }"),
                                                    ("test_3", "y")]
    assert [bool(r.image_path) for r in records] == [True, True, False]


def official_json(tmp_path, ids):
    """An official-style prompt JSON (OpenAI-style keys, ./data/... jpg paths) under a fake repo root."""
    images = tmp_path / "repo" / "data" / "CROHME" / "2014" / "images"
    images.mkdir(parents=True)
    rows = []
    for key, caption in ids.items():
        Image.new("RGB", (30, 12), "white").save(images / f"{key}.jpg")
        rows.append({"messages": [{"role": "user", "content": "<image>" + OFFICIAL_PROMPT},
                                  {"role": "assistant", "content": caption}],
                     "images": [f"./data/CROHME/2014/images/{key}.jpg"]})
    path = tmp_path / "crohme_2014.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_official_prompt_json_resolves_images_against_root(tmp_path, capsys):
    path = official_json(tmp_path, {"18_em_0": "a + b", "RIT_2014_30": "x ^ { 2 }"})
    root = tmp_path / "repo"
    records = load_records(path, root=root)
    assert [(r.id, r.caption) for r in records] == [("18_em_0", "a + b"), ("RIT_2014_30", "x ^ { 2 }")]
    assert all(r.image_path.startswith(str(root)) and r.image_path.endswith(".jpg") for r in records)
    out = tmp_path / "tasks"
    assert cli.main(["tasks", "--captions", str(path), "--root", str(root), "--tasks", "vanilla",
                     "--out", str(out), "--allow-test-images"]) == 0
    assert "vanilla: read 2 = written 2 + rejected 0" in capsys.readouterr().out


def test_zero_usable_rows_is_an_error_naming_the_file(tmp_path, capsys):
    path = official_json(tmp_path, {"a1": "a"})
    with pytest.raises(ValueError, match="crohme_2014.json: no usable record: 1 read"):
        load_records(path, root=tmp_path / "elsewhere")
    folder = tmp_path / "noimages"
    folder.mkdir()
    (folder / CAPTION_FILE).write_text("e1\tx\n", encoding="utf-8")
    assert cli.main(["tasks", "--captions", str(folder), "--tasks", "vanilla", "--out", str(tmp_path / "t")]) != 0
    assert f"{folder}: no usable record" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="neither a prompt JSON file nor a folder"):
        load_records(tmp_path / "missing")


def test_tasks_writing_no_row_exits_non_zero(tmp_path, capsys):
    preds = tmp_path / "pred.json"
    preds.write_text(json.dumps([{"img_id": "a", "gt": "x", "pred": "x"}]), encoding="utf-8")
    out = tmp_path / "t"
    assert cli.main(["tasks", "--from-predictions", str(preds), "--tasks", "error_find", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "error_find: read 1 = written 0 + rejected 1" in captured.out and "no row written" in captured.err
