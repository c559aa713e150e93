"""K-fold EDL mining: fold split, error filtering, and an end-to-end run with a tiny model on real CROHME."""

from __future__ import annotations

import json
import subprocess

import pytest

from unimumer_lib.tasks.edl import apply_corrections
from unimumer_lib.pipeline.mining import (MINED_PREDICTIONS, Mining, distinct_errors, kfold, mine_errors,
                                 sample_caption_set)
from unimumer_lib.formats.predictions import Prediction, read_rows
from unimumer_lib.formats.sharegpt import read_sharegpt
from unimumer_lib.tasks.build import PROMPTS, split_answer


def test_kfold_is_a_seeded_partition():
    ids = [f"id{i}" for i in range(23)]
    folds = kfold(ids, 5, seed=3)
    assert sorted(sum(folds, [])) == sorted(ids)
    assert {len(f) for f in folds} == {4, 5}
    assert kfold(list(reversed(ids)), 5, seed=3) == folds
    assert kfold(ids, 5, seed=4) != folds
    with pytest.raises(ValueError):
        kfold(ids[:3], 5)


def test_distinct_errors_drops_correct_and_repeated_outputs():
    rows = [Prediction("a", "x + 1", "x + 1"), Prediction("a", "x + 1", "x - 1"), Prediction("a", "x + 1", "x  - 1"),
            Prediction("b", "x + 1", "x - 1")]
    assert distinct_errors(rows) == [rows[1], rows[3]]


def test_kfold_mining_end_to_end(crohme_root, tmp_path):
    sample_caption_set(crohme_root / "train", tmp_path / "set", 8, min_tokens=3, max_tokens=8, height=64)
    settings = Mining(k=2, samples=2, max_steps=10, max_new_tokens=20, temperature=1.5)
    summary = mine_errors(tmp_path / "set", tmp_path / "out", settings, progress=False, disable_tqdm=True,
                          save_steps=10**6)
    assert [f["held_out"] for f in summary["folds"]] == [4, 4]
    mined = json.loads((tmp_path / "out" / MINED_PREDICTIONS).read_text())
    assert len(mined) == summary["errors"] > 0
    held = {f: set() for f in range(2)}
    for row in mined:
        held[row["fold"]].add(row["img_id"])
    assert not held[0] & held[1]  # each image is sampled only by the model that never saw it
    train_ids = {r["images"][0] for r in read_sharegpt(tmp_path / "out" / "fold0" / "data" / "vanilla.json")}
    assert not {row["image_path"] for row in mined if row["fold"] == 0} & train_ids
    find = read_sharegpt(tmp_path / "out" / "error_find.json")
    fix = read_sharegpt(tmp_path / "out" / "error_fix.json")
    assert len(find) == len(fix) == summary["tasks"]["error_fix"]["written"] == len(mined)
    for f, x, row in zip(find, fix, mined):
        assert f["messages"][0]["value"].startswith("<image>" + PROMPTS["error_find"])
        marked = f["messages"][1]["value"]
        log, caption = split_answer(x["messages"][1]["value"])
        assert caption == row["gt"] and apply_corrections(marked, log).split() == row["gt"].split()
    again = mine_errors(tmp_path / "set", tmp_path / "out", Mining(k=2, samples=2), progress=False)  # reused
    assert again["errors"] == summary["errors"]


def test_each_fold_frees_its_model_before_the_next_fold(crohme_root, tmp_path, monkeypatch):
    """Issue 21: while fold k trained, fold k-1's model and optimizer state were still alive (OOM at 3B)."""
    import gc
    import weakref

    from unimumer_lib.pipeline import mining
    from unimumer_lib.models.tiny import tiny_model
    from unimumer_lib.training.train import train as real_train

    sample_caption_set(crohme_root / "train", tmp_path / "set", 6, min_tokens=3, max_tokens=8, height=64)
    made, live_at_train = [], []

    def make_model():
        model, processor = tiny_model()
        made.append(weakref.ref(model))
        return model, processor

    def counting_train(*args, **kwargs):
        gc.collect()
        live_at_train.append(sum(ref() is not None for ref in made))
        return real_train(*args, **kwargs)

    monkeypatch.setattr("unimumer_lib.training.train.train", counting_train)
    mining.mine_errors(tmp_path / "set", tmp_path / "out", Mining(k=3, samples=1, max_steps=2, max_new_tokens=8),
                       make_model=make_model, progress=False, disable_tqdm=True, save_steps=10**6)
    gc.collect()
    assert live_at_train == [1, 1, 1]  # only the fold's own model while it trains
    assert sum(ref() is not None for ref in made) == 0


def test_each_fold_samples_from_its_saved_model_with_the_trainer_gone(crohme_root, tmp_path, monkeypatch):
    """Issue 31: mining sampled from the fp32 master model with its optimizer state alive; it now samples the saved
    final/ loaded as for inference (bf16 on a GPU), once the trainer is freed."""
    import gc
    import weakref

    from unimumer_lib.pipeline import mining
    from unimumer_lib.models.tiny import tiny_model

    sample_caption_set(crohme_root / "train", tmp_path / "set", 6, min_tokens=3, max_tokens=8, height=64)
    made, live_at_sampling, real_sample = [], [], mining.sample_outputs

    def make_model():
        model, processor = tiny_model()
        made.append(weakref.ref(model))
        return model, processor

    def counting_sample(model, *args, **kwargs):
        gc.collect()
        live_at_sampling.append((sum(ref() is not None for ref in made), any(ref() is model for ref in made)))
        return real_sample(model, *args, **kwargs)

    monkeypatch.setattr(mining, "sample_outputs", counting_sample)
    mining.mine_errors(tmp_path / "set", tmp_path / "out", Mining(k=2, samples=1, max_steps=2, max_new_tokens=8),
                       make_model=make_model, progress=False, disable_tqdm=True, save_steps=10**6)
    assert live_at_sampling == [(0, False), (0, False)]


def test_folds_run_side_by_side_in_their_own_processes(crohme_root, tmp_path, monkeypatch):
    """Issue 31: the k folds used one GPU of a multi-GPU box. With processes=2 each fold runs in its own process
    (here on CPU: no GPU to give it), and the mined data equals the in-process run's."""
    from unimumer_lib.pipeline import mining

    sample_caption_set(crohme_root / "train", tmp_path / "set", 6, min_tokens=3, max_tokens=8, height=64)
    settings = Mining(k=2, samples=1, max_steps=2, max_new_tokens=8)
    started = []
    real_popen = subprocess.Popen

    def spy(cmd, env):
        started.append(cmd[cmd.index("unimumer_lib.pipeline.mining") + 3])
        return real_popen(cmd, env=env)

    monkeypatch.setattr("subprocess.Popen", spy)
    mining.mine_errors(tmp_path / "set", tmp_path / "side", settings, progress=False, processes=2)
    monkeypatch.setattr("subprocess.Popen", real_popen)
    mining.mine_errors(tmp_path / "set", tmp_path / "alone", settings, progress=False, processes=1)
    assert sorted(started) == ["0", "1"]
    # the same folds, each sampled once per held-out image (threads differ, so samples may differ in their digits)
    for f in (0, 1):
        one, two = (read_rows(tmp_path / run / f"fold{f}" / "samples.json") for run in ("side", "alone"))
        assert [r.img_id for r in one] == [r.img_id for r in two] and len(one) == 3
