"""Batched inference: prediction JSON format, left-padded batches equal single runs, resume, sampling."""

from __future__ import annotations

import json

import pytest

from unimumer_lib.infer import PARTIAL_SUFFIX, RUN_SUFFIX, decoding, exprate, generate, predict, run_settings
from unimumer_lib.mining import sample_caption_set
from unimumer_lib.model import tiny_model
from unimumer_lib.predictions import read_predictions
from unimumer_lib.records import Record
from unimumer_lib.tasks import PROMPTS


@pytest.fixture(scope="module")
def setup(crohme_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("crohme5")
    records = sample_caption_set(crohme_root / "test2014", folder, 5, max_tokens=30, height=64, seed=1)
    model, processor = tiny_model()
    return records, folder, model, processor


def test_batched_left_padding_equals_one_by_one(setup):
    records, _, model, processor = setup
    images = [r.image_path for r in records]
    batched = generate(model, processor, images, max_new_tokens=10)
    single = [generate(model, processor, [im], max_new_tokens=10)[0] for im in images]
    assert batched == single


def test_predict_writes_uni_mumer_json_and_reads_folders(setup, tmp_path):
    records, folder, model, processor = setup
    rows = predict(model, processor, folder, tmp_path / "pred.json", batch_size=2, max_new_tokens=8, progress=False)
    preds = read_predictions(tmp_path / "pred.json")
    assert [p.img_id for p in preds] == [r.id for r in records]
    assert [p.gt for p in preds] == [r.caption for r in records]
    assert all(p.image_path.endswith(".png") for p in preds) and len(rows) == 5
    assert not (tmp_path / ("pred.json" + PARTIAL_SUFFIX)).exists()


def test_predict_resumes_and_skips_done_ids(setup, tmp_path):
    records, _, model, processor = setup
    out = tmp_path / "pred.json"
    done = {"img_id": records[0].id, "gt": records[0].caption, "pred": "DONE-BEFORE", "image_path": ""}
    partial = tmp_path / ("pred.json" + PARTIAL_SUFFIX)
    partial.write_text(json.dumps(done) + "\n" + '{"img_id": "cut-by-a-ki', encoding="utf-8")
    ours = run_settings(model, "vanilla", PROMPTS["vanilla"], decoding(processor.tokenizer, max_new_tokens=8), records)
    (tmp_path / ("pred.json" + RUN_SUFFIX)).write_text(json.dumps(ours))  # what a killed run of these settings left
    rows = predict(model, processor, records, out, max_new_tokens=8, progress=False)
    assert rows[0]["pred"] == "DONE-BEFORE"
    assert [r["img_id"] for r in rows] == [r.id for r in records]
    again = predict(model, processor, records, out, max_new_tokens=8, progress=False)
    assert again == rows  # nothing left to do: the finished file is the resume state


def test_record_without_image_is_kept_with_a_reason(setup, tmp_path):
    _, _, model, processor = setup
    rows = predict(model, processor, [Record(id="x", caption="a")], tmp_path / "p.json", progress=False)
    assert rows == [{"img_id": "x", "gt": "a", "pred": "", "image_path": "", "error": "no image"}]


def test_sampling_returns_several_outputs(setup):
    records, _, model, processor = setup
    outs = generate(model, processor, [records[0].image_path], max_new_tokens=6, sampling="sample",
                    temperature=1.5, num_return_sequences=3)
    assert len(outs) == 1 and len(outs[0]) == 3


def test_exprate_counts_exact_token_matches():
    rows = [{"gt": "a + b", "pred": "a  +  b"}, {"gt": "a", "pred": "b"}]
    assert exprate(rows) == 0.5
