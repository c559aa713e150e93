"""The shipped tiny base: it reads held-out synthetic handwriting, its data is disjoint from every test set, its
run_config names what made it, and the smoke/cpu profiles fine-tune from it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from unimumer_lib.pipeline import cli, reproduce
from unimumer_lib.pipeline import runplan
from unimumer_lib.pipeline import profiles
from unimumer_lib.training import pretrain
from unimumer_lib.training import stream
from unimumer_lib.core.paths import REPO_ROOT
from unimumer_lib.inference.infer import exprate, predict, recognize
from unimumer_lib.data.inkml import caption_of, find_inkml, read_inkml
from unimumer_lib.pipeline.mining import MINED_PREDICTIONS, Mining, mine_with_model
from unimumer_lib.models.model import SHIPPED, load_model
from unimumer_lib.formats.predictions import read_predictions
from unimumer_lib.formats.records import write_comer

BASE = SHIPPED[pretrain.BASE_NAME]
RUN_CONFIG = json.loads((BASE / "run_config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return load_model(pretrain.BASE_NAME, dtype="float32")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """100 freshly synthesised held-out expressions (the held-out pool, past the learning curve's 200)."""
    return stream.held_out_records(tmp_path_factory.mktemp("fresh"), 100, offset=1000)


def as_split(folder, records):
    """A prepared-style split (caption.txt + images/) of rendered records."""
    return write_comer(folder, [replace(r, image=Image.open(r.image_path)) for r in records]).parent


def test_shipped_base_is_a_hugging_face_folder():
    names = {p.name for p in BASE.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "run_config.json",
            "README.md", "preprocessor_config.json", pretrain.CAPTION_LIST} <= names
    assert "training_args.bin" not in names  # no pickle is shipped
    assert (BASE / "model.safetensors").stat().st_size < 8 * 2**20


def test_shipped_base_reads_fresh_held_out_expressions(base, fresh, tmp_path):
    model, processor = base
    preds = predict(model, processor, fresh, tmp_path / "pred.json", batch_size=16, max_new_tokens=96,
                    progress=False)
    print(f"tiny-base on {len(preds)} fresh held-out expressions: ExpRate {exprate(preds):.2f}")
    assert len(preds) == 100
    assert exprate(preds) >= 0.25
    assert len({p.pred for p in preds}) >= 0.9 * len({p.gt for p in preds})  # not a few strings


def test_run_config_names_the_profile_and_the_commit_that_made_it():
    assert RUN_CONFIG["profile"] == pretrain.PROFILE
    commit = RUN_CONFIG["commit"]
    assert commit and len(commit) == 40
    # The commit is in this repository's history and holds the pretraining code that made the base.
    tree = subprocess.run(["git", "ls-tree", "-r", "--name-only", commit], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert tree.returncode == 0, tree.stderr
    assert {"unimumer_lib/pretrain.py", "unimumer_lib/training/pretrain.py"} & set(tree.stdout.split())
    assert RUN_CONFIG["steps"] >= 10_000 and RUN_CONFIG["learning_curve"]
    assert RUN_CONFIG["pretrain_seeds"] == stream.shard_seeds(RUN_CONFIG["stream"]["settings"]["n"])


def test_pretraining_seeds_are_disjoint_from_every_profile_seed(tmp_path):
    assert min(RUN_CONFIG["pretrain_seeds"]) >= stream.PRETRAIN_SEED
    with pytest.raises(ValueError, match="pretraining range"):
        stream.check_seed(stream.PRETRAIN_SEED + 3)
    with pytest.raises(ValueError, match="pretraining range"):
        reproduce.synthetic_root(tmp_path, n_train=10, n_test=5, seed=stream.PRETRAIN_SEED)
    with pytest.raises(ValueError, match="held-out pool"):
        reproduce.synthetic_root(tmp_path, n_train=10, n_test=5, seed=4)  # test seed 5 is not the pool's


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_synthetic_test_sets_share_no_caption_with_pretraining(tmp_path, profile):
    p = profiles.PROFILES[profile]
    trained = pretrain.read_caption_list(SHIPPED[p.model])  # the base the profile fine-tunes
    assert len(trained) > 10_000
    n_test = p.synth_test
    root = reproduce.synthetic_root(tmp_path, n_train=20, n_test=n_test, writers=p.writers)
    test_captions = {caption_of(read_inkml(p)) for p in find_inkml(root / "test")}
    assert len(find_inkml(root / "test")) == n_test >= 500  # (a few short captions occur twice among them)
    assert not pretrain.trained_on(SHIPPED[p.model], test_captions)


def test_stream_leaves_out_excluded_captions(tmp_path):
    first = stream.make_stream(tmp_path / "a", 12, progress=False, workers=1)
    captions = [line.split("\t")[1] for line in (tmp_path / "a" / "caption.txt").read_text().splitlines()]
    assert first["written"] == 12 and first["settings"]["seeds"] == [stream.PRETRAIN_SEED]
    second = stream.make_stream(tmp_path / "b", 12, exclude={captions[0], captions[5]}, progress=False, workers=1)
    assert second["read"] == 12 == second["written"] + second["excluded_held_out"] + second["rejected"]
    assert second["excluded_held_out"] >= 2
    kept = (tmp_path / "b" / "caption.txt").read_text()
    assert f"\t{captions[0]}\n" not in kept and len(list((tmp_path / "b" / "images").glob("*.png"))) == 10


def test_infer_cli_runs_the_shipped_base_on_a_prepared_split(fresh, tmp_path, capsys):
    split = as_split(tmp_path / "split", fresh[:5])
    out = tmp_path / "pred.json"
    assert cli.main(["infer", "--model", "tiny-base", "--data", str(split), "--out", str(out)]) == 0
    preds = read_predictions(out)
    assert [p.img_id for p in preds] == [r.id for r in fresh[:5]]
    assert "5 records" in capsys.readouterr().out


def test_infer_recognises_plain_images_without_captions(fresh, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for r in fresh[:5]:
        (folder / Path(r.image_path).name).write_bytes(Path(r.image_path).read_bytes())
    out = tmp_path / "pred.json"
    assert cli.main(["infer", "--model", "tiny-base", "--data", str(folder), "--out", str(out)]) == 0
    preds = read_predictions(out)
    assert len(preds) == 5 and {p.gt for p in preds} == {""} and all(p.pred for p in preds)
    capsys.readouterr()
    images = [str(folder / Path(r.image_path).name) for r in fresh[:2]]
    assert cli.main(["infer", "--model", "tiny-base", "--image", *images]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_id = {p.img_id: p.pred for p in preds}
    assert [line.split("\t") for line in lines] == [[img, by_id[Path(img).stem]] for img in images]
    assert recognize(images, model="tiny-base") == [by_id[Path(img).stem] for img in images]
    assert cli.main(["infer", "--model", "tiny-base", "--image", str(tmp_path / "none.png")]) == 2
    assert "none.png: no such file" in capsys.readouterr().err  # (issue 32: it said "not an image file")


def test_base_mining_samples_errors_on_training_images(fresh, tmp_path):
    split = as_split(tmp_path / "train", fresh[:12])
    summary = mine_with_model(split, tmp_path / "mining", Mining(from_model="tiny-base", samples=2, limit=10,
                                                                 max_new_tokens=96, batch_size=16), progress=False)
    (fold,) = summary["folds"]
    assert fold["held_out"] == 10 and fold["samples"] == 20 and fold["model"] == "tiny-base"
    mined = json.loads((tmp_path / "mining" / MINED_PREDICTIONS).read_text())
    assert summary["errors"] == len(mined) > 0
    assert all(r["pred"].split() != r["gt"].split() for r in mined)
    assert {r["img_id"] for r in mined} <= {r.id for r in fresh[:12]}
    for task in ("error_find", "error_fix"):
        assert summary["tasks"][task]["written"] == len(mined)


def test_smoke_profile_is_the_ablation_from_the_base(tmp_path):
    p = profiles.PROFILES["smoke"]
    steps = runplan.paper_steps("smoke", tmp_path, tmp_path / "raw", ["test"], list(p.paper.arms))
    by_key = {key: params for key, _, params, _, _ in steps}
    assert {"03[vanilla]", "03[all]", f"04[{profiles.ZERO_SHOT}]", "tables"} <= set(by_key)
    base = pretrain.GLYPH_BASE_NAME  # the real-glyph base, fine-tuned on other writers' compositions
    assert p.model == base and p.writers == ("finetune", "test") and p.synth_test >= 1000
    assert by_key[f"04[{profiles.ZERO_SHOT}]"]["model_path"] == base  # no SFT
    assert by_key["03[vanilla]"]["model_path"] == by_key["03[all]"]["model_path"] == base
    assert by_key["03[vanilla]"]["preset"] == by_key["03[all]"]["preset"]  # the same recipe
    assert by_key["02"]["mining"]["from_model"] == base and by_key["02"]["mining"]["k"] == 0
    assert by_key["02"]["mining"]["temperature"] < 1.0  # near misses, as a trained model's errors are
    assert by_key["04[all]"]["gate_images"] >= 200 and list(by_key["tables"]["gate_paths"]) == ["all"]
    assert "gate_images" not in by_key["04[vanilla]"]  # smoke gates the all arm; smoke-full every arm
    full = profiles.PROFILES["smoke-full"]
    steps = runplan.paper_steps("smoke-full", tmp_path, tmp_path / "raw", ["test"], list(full.paper.arms))
    assert set({key: params for key, _, params, _, _ in steps}["tables"]["gate_paths"]) == {
        profiles.ZERO_SHOT, "vanilla", "vanilla-matched", "all"}
    # the fine-tuning domain is new to the base: other writers, with a pen twice as broad as pretraining's
    assert p.stroke == 2.0 and by_key["01"]["stroke"] == 2.0
    assert by_key["tables"]["paper_arms"] == [profiles.ZERO_SHOT, "vanilla", "all"]
    assert len(by_key["03[all]"]["train_json"]) == len(profiles.arm_tasks("all")) == 5
