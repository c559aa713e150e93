"""`unimumer prepare crohme`: split discovery, counts that reconcile, rejects, idempotent reruns, real CROHME."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unimumer_lib.formats.rejects import REJECTS_HEADER
from unimumer_lib.pipeline import cli
from unimumer_lib.data.inkml import Ink, write_inkml
from unimumer_lib.data.explore import brace_depth, caption_stats, token_frequencies
from unimumer_lib.data.prepare import find_splits, load_rejects, load_split, prepare_crohme
from unimumer_lib.formats.records import (CAPTION_FILE, IMAGE_SUFFIX, IMAGES_DIR, MANIFEST_FILE, REJECTS_FILE,
                                  read_captions)


def ink(id: str, latex: str) -> Ink:
    t = np.array([[0, 0], [10, 5], [20, 0]], np.float32)
    return Ink(id=id, traces={"0": t, "1": t + [0, 10]}, latex=latex)


@pytest.fixture
def src(tmp_path):
    """train/ with two sources, a duplicate stem, an empty and a truncated file; flat test/ and synthetic/."""
    root = tmp_path / "src"
    write_inkml(root / "train/A/a1.inkml", ink("a1", "$a+b$"))
    write_inkml(root / "train/A/a2.inkml", ink("a2", "$x^{2}$"))
    write_inkml(root / "train/B/b1.inkml", ink("b1", "$1-c$"))
    write_inkml(root / "train/B/a1.inkml", ink("a1", "$y$"))  # duplicate id of train/A/a1
    (root / "train/B/empty.inkml").write_bytes(b"")
    (root / "train/B/cut.inkml").write_text((root / "train/A/a1.inkml").read_text()[:150])
    write_inkml(root / "test/t1.inkml", ink("t1", "$z$"))
    write_inkml(root / "synthetic/s1.inkml", ink("s1", "$p+q$"))
    (root / "captions.tsv").write_text("s1\tp + q\n")  # beside the splits, not a split
    (root / "notes").mkdir()  # a folder without InkML is not a split
    return root


def test_find_splits(src):
    assert list(find_splits(src)) == ["synthetic", "test", "train"]
    with pytest.raises(FileNotFoundError, match="not found"):
        find_splits(src / "missing")


def test_prepare_writes_captions_images_manifest_and_rejects(src, tmp_path):
    out = tmp_path / "out"
    summary = prepare_crohme(src, out, workers=1, height=64)
    assert summary == {"synthetic": {"read": 1, "written": 1, "rejected": 0},
                       "test": {"read": 1, "written": 1, "rejected": 0},
                       "train": {"read": 6, "written": 3, "rejected": 3}}
    assert read_captions(out / "train" / CAPTION_FILE) == {"a1": "a + b", "a2": "x ^ { 2 }", "b1": "1 - c"}
    assert read_captions(out / "synthetic" / CAPTION_FILE) == {"s1": "p + q"}

    rejects = (out / "train" / REJECTS_FILE).read_text().splitlines()
    assert rejects[0].split("\t") == list(REJECTS_HEADER)
    reasons = {file: why for file, _, why in (line.split("\t") for line in rejects[1:])}
    assert reasons["train/B/empty.inkml"] == "empty file"
    assert reasons["train/B/cut.inkml"].startswith("malformed or truncated XML")
    assert reasons["train/B/a1.inkml"] == "duplicate id 'a1' (also train/A/a1.inkml)"

    manifest = json.loads((out / "train" / MANIFEST_FILE).read_text())
    assert manifest["read"] == manifest["written"] + manifest["rejected"] == 6
    assert manifest["sources"] == {"A": 2, "B": 1} and manifest["height"] == 64
    assert json.loads((out / "test" / MANIFEST_FILE).read_text())["sources"] == {"test": 1}
    assert load_rejects(out / "train") == manifest["rejects"]

    images = sorted(p.name for p in (out / "train" / IMAGES_DIR).iterdir())
    assert images == [f"{i}{IMAGE_SUFFIX}" for i in ("a1", "a2", "b1")]
    with Image.open(out / "train" / IMAGES_DIR / f"a1{IMAGE_SUFFIX}") as im:
        assert im.mode == "L" and im.height == 64 and np.asarray(im).min() < 128

    recs = load_split(out / "train")
    assert [(r.id, r.source, r.split) for r in recs] == [("a1", "A", "train"), ("a2", "A", "train"),
                                                         ("b1", "B", "train")]
    assert all(r.image_path and r.image_path.endswith(IMAGE_SUFFIX) for r in recs)


def test_rerun_is_idempotent_and_removes_stale_images(src, tmp_path):
    out = tmp_path / "out"
    prepare_crohme(src, out, splits=["train"], workers=1, height=32)
    files = {p: p.read_bytes() for p in (out / "train").rglob("*") if p.is_file()}
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    assert prepare_crohme(src, out, splits=["train"], workers=2, height=32)["train"]["written"] == 3
    assert {p: p.read_bytes() for p in (out / "train").rglob("*") if p.is_file()} == files
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items() if p.suffix == IMAGE_SUFFIX)  # reused

    (src / "train/A/a2.inkml").unlink()
    prepare_crohme(src, out, splits=["train"], workers=1, height=32)
    assert not (out / "train" / IMAGES_DIR / f"a2{IMAGE_SUFFIX}").exists()
    assert "a2" not in read_captions(out / "train" / CAPTION_FILE)


def test_no_images_and_limit(src, tmp_path):
    out = tmp_path / "out"
    summary = prepare_crohme(src, out, splits=["train"], images=False, limit=2, workers=1)
    # one file of each source in turn: A/a1, then B/a1 (a duplicate id of A/a1, rejected with its reason)
    assert summary == {"train": {"read": 2, "written": 1, "rejected": 1}}
    assert "duplicate id 'a1'" in load_rejects(out / "train")[0]["reason"]
    assert not (out / "train" / IMAGES_DIR).exists()
    with pytest.raises(FileNotFoundError, match="nope"):
        prepare_crohme(src, out, splits=["nope"])


def test_cli_prepare(src, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["prepare", "crohme", "--src", str(src), "--out", str(out), "--no-images",
                     "--splits", "train,test", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train: read 6 = written 3 + rejected 3" in printed and "test: read 1" in printed
    assert sorted(p.name for p in out.iterdir()) == ["test", "train"]
    assert cli.main(["prepare", "crohme", "--src", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_caption_statistics():
    caption = "\\frac { a ^ { 2 } } { \\sqrt { b _ { i } } } + 1"
    stats = caption_stats(caption)
    assert stats["length"] == len(caption.split())
    assert (stats["depth"], stats["frac"], stats["sqrt"], stats["sup"], stats["sub"]) == (3, 1, 1, 1, 1)
    assert brace_depth("x + 1".split()) == 0 and brace_depth("} { {".split()) == 2
    assert token_frequencies(["x ^ { 2 }", "x + 2"]) == {"x": 2, "2": 2, "^": 1, "+": 1}


# ---- real CROHME -------------------------------------------------------------------------------

def test_crohme_captions_only(crohme_root, tmp_path):
    out = tmp_path / "crohme"
    summary = prepare_crohme(crohme_root, out, splits=["train", "test2014", "test2016"], images=False, workers=2)
    assert summary == {"train": {"read": 8836, "written": 8835, "rejected": 1},
                       "test2014": {"read": 986, "written": 986, "rejected": 0},
                       "test2016": {"read": 1147, "written": 1147, "rejected": 0}}
    assert load_rejects(out / "train") == [{"file": "train/MfrDB/MfrDB3088.inkml", "reason": "empty file"}]
    manifest = json.loads((out / "train" / MANIFEST_FILE).read_text())
    assert manifest["sources"] == {"HAMEX": 2484, "KAIST": 1051, "MathBrush": 2989, "MfrDB": 1666,
                                   "expressmatch": 620, "extension": 25}
    captions = read_captions(out / "test2014" / CAPTION_FILE)
    assert captions["18_em_0"] == "x _ { k } x x _ { k } + y _ { k } y x _ { k }"  # the README's example
    assert "MfrDB0104" in read_captions(out / "train" / CAPTION_FILE)


def test_crohme_images_sample(crohme_root, tmp_path):
    out = tmp_path / "crohme"
    prepare_crohme(crohme_root, out, splits=["test2016"], limit=10, workers=2)
    recs = load_split(out / "test2016")
    assert len(recs) == 10
    for r in recs:
        with Image.open(r.image_path) as im:
            assert im.height == 128 and im.mode == "L"


def test_frames_for_the_notebook(src, tmp_path):
    from unimumer_lib.data.explore import counts_frame, describe_rejects, reconcile_frame, rejects_frame, stats_frame

    out = tmp_path / "out"
    prepare_crohme(src, out, images=False, workers=1)
    counts = counts_frame(out)
    assert counts.to_dict("records") == [{"split": "synthetic", "source": "synthetic", "expressions": 1},
                                         {"split": "test", "source": "test", "expressions": 1},
                                         {"split": "train", "source": "A", "expressions": 2},
                                         {"split": "train", "source": "B", "expressions": 1}]
    rec = reconcile_frame(out)
    assert (rec["read"] == rec["written"] + rec["rejected"]).all() and rec["read"].sum() == 8
    rejects = rejects_frame(out)
    assert list(rejects.columns) == ["split", "file", "reason"] and len(rejects) == 3
    sentence = describe_rejects(rejects)  # notebook 01 says what the table holds (issue 32 item 3)
    assert sentence.startswith("3 files rejected (") and sentence.count(" ") > 6
    assert describe_rejects(rejects.iloc[:0]) == "No file was rejected: every file read was written."
    stats = stats_frame(load_split(out / "train"))
    assert stats.set_index("id").loc["a2", ["length", "depth", "sup"]].tolist() == [5, 1, 1]


def test_inventory_counts_files_without_parsing(src):
    from unimumer_lib.data.explore import describe_inventory, inventory_frame

    inv = inventory_frame(src)
    assert inv.to_dict("records") == [{"split": "synthetic", "source": "synthetic", "files": 1},
                                      {"split": "test", "source": "test", "files": 1},
                                      {"split": "train", "source": "A", "files": 2},
                                      {"split": "train", "source": "B", "files": 4}]
    assert describe_inventory(inv) == ("This run's data: synthetic: 1 file from 1 source (synthetic 1); test: 1 "
                                       "file from 1 source (test 1); train: 6 files from 2 sources (B 4, A 2).")


def test_progress_bar_reaches_its_total(tmp_path, capsys):
    # zip(jobs, tqdm(results)) stopped one short of the bar's end: it stayed at n-1/n and red in JupyterLab
    from unimumer_lib.data.prepare import prepare_split
    from unimumer_lib.data.synth import synthesize_dataset

    synthesize_dataset(n=3, seed=0, out=tmp_path / "raw", workers=1)
    capsys.readouterr()
    prepare_split(tmp_path / "raw" / "synthetic", tmp_path / "prep", height=32, workers=1)
    err = capsys.readouterr().err
    assert "3/3" in err and "2/3" not in err.split("\r")[-1]


def test_a_sample_represents_every_source(crohme_root, tmp_path):
    # The first 300 files of CROHME train are all HAMEX: a sample takes files from each source in turn.
    from collections import Counter

    from unimumer_lib.data.inkml import find_inkml
    from unimumer_lib.data.prepare import source_of

    first = Counter(source_of(p, crohme_root / "train") for p in find_inkml(crohme_root / "train")[:300])
    assert list(first) == ["HAMEX"]
    prepare_crohme(crohme_root, tmp_path / "out", splits=["train"], images=False, limit=300, workers=1)
    counts = Counter(r.source for r in load_split(tmp_path / "out" / "train"))
    sources = {source_of(p, crohme_root / "train") for p in find_inkml(crohme_root / "train")}
    files = Counter(source_of(p, crohme_root / "train") for p in find_inkml(crohme_root / "train"))
    assert set(counts) == sources and sum(counts.values()) == 300 - len(load_rejects(tmp_path / "out" / "train"))
    # an equal share each: a source with fewer files gives all it has, the others fill in (water level L with
    # sum(min(files, L)) = 300); rejected files only lower a source's count
    level = next(L for L in range(301) if sum(min(n, L) for n in files.values()) >= 300)
    assert all(counts[s] <= min(files[s], level) for s in sources)
    assert sum(min(n, level) for n in files.values()) == 300 and level == 55


def test_a_broader_pen_is_rendered_recorded_and_never_reused_for_the_default(src, tmp_path):
    """``stroke``: the pen width as a multiple of the renderer's default (the smoke's fine-tuning domain writes at
    2.0); the manifest records it, and a rerun at another stroke renders again instead of reusing."""
    out = tmp_path / "out"
    prepare_crohme(src, out, splits=["train"], workers=1, height=64)
    thin = {p.name: np.asarray(Image.open(p)) for p in (out / "train" / IMAGES_DIR).iterdir()}
    prepare_crohme(src, out, splits=["train"], workers=1, height=64, stroke=2.0)
    thick = {p.name: np.asarray(Image.open(p)) for p in (out / "train" / IMAGES_DIR).iterdir()}
    assert set(thin) == set(thick)
    for name in thin:  # more ink (dark pixels) with the broader pen
        assert (thick[name] < 128).sum() > 1.4 * (thin[name] < 128).sum()
    manifest = json.loads((out / "train" / MANIFEST_FILE).read_text())
    assert manifest["stroke"] == 2.0 and all(item["stroke"] == 2.0 for item in manifest["items"].values())
    prepare_crohme(src, out, splits=["train"], workers=1, height=64)  # back to the default pen: rendered again
    again = {p.name: np.asarray(Image.open(p)) for p in (out / "train" / IMAGES_DIR).iterdir()}
    assert all(np.array_equal(again[k], thin[k]) for k in thin) and "stroke" not in json.loads(
        (out / "train" / MANIFEST_FILE).read_text())
    with pytest.raises(ValueError, match="within 0.25-8"):
        prepare_crohme(src, out, splits=["train"], workers=1, stroke=0)
