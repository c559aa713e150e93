"""The real-glyph pretraining on a miniature recipe: every task's rows from one stream (one task per sample), the
curve on held-out real glyphs, Hershey and CROHME 2014, a checkpoint published as a base, and a second segment
continuing from it, recorded in run_config.json."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from unimumer_lib.pipeline import cli
from unimumer_lib.training import pretrain
from unimumer_lib.training import stream
from unimumer_lib.models.model import load_model
from unimumer_lib.formats.records import read_captions
from unimumer_lib.data.splits import HeldOutImageLeak


def mini_crohme(root, crohme_root, per_source=8):
    """A CROHME root of the real test splits and ``per_source`` real train files of each source, plus one
    defective train file."""
    (root / "train").mkdir(parents=True)
    for split in ("test2014", "test2016"):
        (root / split).symlink_to(crohme_root / split)
    for source in sorted(p for p in (crohme_root / "train").iterdir() if p.is_dir()):
        (root / "train" / source.name).mkdir()
        for path in sorted(source.glob("*.inkml"))[:per_source]:
            (root / "train" / source.name / path.name).symlink_to(path)
    (root / "train" / "HAMEX" / "broken.inkml").write_text("<ink xmlns='http://www.w3.org/2003/InkML'><trace>")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory, crohme_root):
    root = tmp_path_factory.mktemp("glyph_pretrain")
    recipe = replace(pretrain.GLYPH_RECIPE, n=160, steps=4, size="tiny", save_steps=2, curve_every=2, curve_n=6,
                     init=None)  # (the shipped recipe continues tiny-base: test_glyph_base.py)
    assert recipe.crohme_train  # the last segment mixes in real CROHME-train expressions: here, of a small root
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIMUMER_CROHME", str(mini_crohme(root / "crohme", crohme_root)))
        record = pretrain.pretrain(root / "base", root / "work", recipe, workers=1)
    return root, recipe, record


def test_real_crohme_train_expressions_join_the_stream_and_their_counts_reconcile(run):
    root, recipe, record = run
    real = record["crohme_train"]
    files = len(list((root / "crohme" / "train").rglob("*.inkml")))
    assert real["read"] == files == real["written"] + real["excluded_held_out"] + real["other_writers"] + \
        real["rejected"]
    assert real["written"] > 0 and real["other_writers"] > 0 and real["repeats"] == recipe.crohme_train
    assert any("broken.inkml" in why for _, why in real["rejects"])  # named, with its reason
    assert sum(record["rows"].values()) == record["stream"]["written"] + recipe.crohme_train * real["written"]
    captions = set(read_captions(root / "work" / pretrain.CROHME_STREAM / "caption.txt").values())
    # the disjointness tests see them, as hashes (CROHME's text is not shipped)
    assert pretrain.read_caption_hashes(root / "base") == {stream.caption_hash(c) for c in captions}
    assert pretrain.trained_on(root / "base", captions) == captions
    assert not captions & stream.crohme_test_captions(root / "crohme")
    assert "Real handwriting" in (root / "base" / "README.md").read_text()


def test_the_crohme_train_part_refuses_test_images(tmp_path, crohme_root):
    with pytest.raises(ValueError, match="a test split"):
        stream.crohme_train_stream(tmp_path / "out", crohme_root / "test2014")
    root = mini_crohme(tmp_path / "crohme", crohme_root, per_source=1)
    leaked = next((crohme_root / "test2014").rglob("*.inkml"))
    (root / "train" / "HAMEX" / leaked.name).symlink_to(leaked)  # a test image slipped into train
    with pytest.raises(HeldOutImageLeak, match="test2014"):
        stream.crohme_train_stream(tmp_path / "out", root / "train", workers=1, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIMUMER_CROHME", str(tmp_path / "nowhere"))
        with pytest.raises(FileNotFoundError, match="UNIMUMER_CROHME"):
            pretrain.check_recipe(pretrain.GLYPH_RECIPE)  # refused before any work


def test_the_stream_trains_every_task_with_its_share(run):
    root, recipe, record = run
    rows = record["rows"]
    real = recipe.crohme_train * record["crohme_train"]["written"]  # (the CROHME-train part: the test above)
    assert set(rows) == set(recipe.tasks) and sum(rows.values()) == record["stream"]["written"] + real
    assert rows["vanilla"] > max(rows[t] for t in recipe.tasks if t != "vanilla")
    assert record["stream"]["settings"]["glyph_share"] == 0.8 and record["glyphs"]["writer_group"] == "pretrain"
    assert record["stream"]["read"] == record["stream"]["written"] + record["stream"]["excluded_held_out"] + \
        record["stream"]["rejected"]


def test_the_curve_reads_three_sets_and_the_card_shows_them(run):
    root, recipe, record = run
    points = record["learning_curve"]
    assert [p["step"] for p in points] == [2, 4]
    assert {"hershey", "crohme2014"} <= set(points[-1]) and points[-1]["crohme2014"]["n"] == 6
    card = (root / "base" / "README.md").read_text()
    assert "CC BY-NC-SA 3.0" in card and "| 1 | `" in card  # the segments table
    assert {p.dtype for p in load_model(root / "base")[0].parameters()} == {__import__("torch").float32}


def test_a_checkpoint_is_published_and_a_second_segment_continues_from_it(run):
    root, recipe, record = run
    assert cli.main(["pretrain", "--recipe", "glyph-base", "--size", "tiny", "--n", "160", "--steps", "4",
                     "--work", str(root / "work"), "--out", str(root / "step2"), "--publish", "2"]) == 0
    step2 = json.loads((root / "step2" / "run_config.json").read_text())
    assert step2["steps"] == 2 and step2["published_from"] == "checkpoint-2"
    started = json.loads((root / "work" / pretrain.RUN_START).read_text())["commit"]
    assert step2["segments"][0]["commit"] == started == record["commit"]  # the commit the run started from
    assert len(step2["learning_curve"]) == 1
    again = pretrain.pretrain(root / "base2", root / "work2", replace(recipe, init=str(root / "base"), size="tiny4",
                                                                         crohme_train=0),
                              workers=1)  # a segment may grow the base it continues (model.grow)
    assert [s["steps"] for s in again["segments"]] == [4, 4] and again["segments"][1]["init"] == str(root / "base")
    grown = load_model(root / "base2")[0].config
    assert (grown.text_config.num_hidden_layers, grown.vision_config.depth) == (4, 4) == \
        (again["shape"]["layers"], again["shape"]["v_depth"])
    assert "| 2 | `" in (root / "base2" / "README.md").read_text() and "| tiny4 |" in \
        (root / "base2" / "README.md").read_text()
    assert again["segments"][1]["recipe"]["init"] == str(root / "base")  # each segment records its recipe
    # the continued base lists the captions of both segments (the disjointness tests read that list)
    first, both = pretrain.read_caption_list(root / "base"), pretrain.read_caption_list(root / "base2")
    assert first and first <= both
    with pytest.raises(FileExistsError, match="not a new or empty folder"):
        pretrain.pretrain(root / "base", root / "work3", recipe, workers=1)  # refused before any work
    assert not (root / "work3").exists()


def test_a_segment_drawing_new_shards_trains_on_new_samples(tmp_path):
    old = stream.make_stream(tmp_path / "a", 12, workers=1, progress=False)
    new = stream.make_stream(tmp_path / "b", 12, workers=1, progress=False, first_shard=6)
    assert new["settings"]["seeds"] == [stream.PRETRAIN_SEED + 6] != old["settings"]["seeds"]
    captions = [set(read_captions(tmp_path / k / "caption.txt").values()) for k in ("a", "b")]
    assert captions[0] and captions[1] and captions[0] != captions[1]
    assert pretrain.GLYPH_RECIPE.first_shard * stream.SHARD_SIZE >= pretrain.GLYPH_SEGMENTS[0].n  # no repeat
