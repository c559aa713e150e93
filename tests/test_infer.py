"""Batched inference: prediction JSON format, left-padded batches equal single runs, resume, sampling."""

from __future__ import annotations

import json

import pytest

from unimumer_lib.inference.infer import RUN_SUFFIX, decoding, exprate, generate, predict
from unimumer_lib.inference.resume import PARTIAL_SUFFIX, run_settings
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.models.tiny import tiny_model
from unimumer_lib.formats.predictions import Prediction, read_predictions
from unimumer_lib.formats.records import Record
from unimumer_lib.tasks.build import PROMPTS


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
    assert rows[0].pred == "DONE-BEFORE"
    assert [r.img_id for r in rows] == [r.id for r in records]
    again = predict(model, processor, records, out, max_new_tokens=8, progress=False)
    assert again == rows  # nothing left to do: the finished file is the resume state


def test_record_without_image_is_kept_with_a_reason(setup, tmp_path):
    _, _, model, processor = setup
    rows = predict(model, processor, [Record(id="x", caption="a")], tmp_path / "p.json", progress=False)
    assert [r.to_json() for r in rows] == [
        {"img_id": "x", "gt": "a", "pred": "", "image_path": "", "error": "no image"}]


def test_sampling_returns_several_outputs(setup):
    records, _, model, processor = setup
    outs = generate(model, processor, [records[0].image_path], max_new_tokens=6, sampling="sample",
                    temperature=1.5, num_return_sequences=3)
    assert len(outs) == 1 and len(outs[0]) == 3


def test_exprate_counts_exact_token_matches():
    rows = [Prediction("1", "a + b", "a  +  b"), Prediction("2", "a", "b")]
    assert exprate(rows) == 0.5


def test_vllm_gets_the_test_set_in_one_call_not_per_batch(setup, tmp_path, monkeypatch):
    """Issue 21: vLLM was called once per batch of 8, so it never batched across the test set."""
    from unimumer_lib.inference import infer

    records, _, model, processor = setup
    calls = []

    def fake_runner(model_path, processor, settings, prompt):
        def run(images):
            calls.append(len(images))
            return [["x"] for _ in images]
        return run

    monkeypatch.setattr(infer, "_vllm_runner", fake_runner)
    rows = predict(infer.VllmModel("some/checkpoint"), processor, records, tmp_path / "v.json", batch_size=2,
                   progress=False)
    assert calls == [len(records)] and [r.pred for r in rows] == ["x"] * len(records)


def test_inference_keeps_a_model_that_fits_on_one_gpu(monkeypatch, tmp_path):
    """Issue 21: device_map="auto" spread the 3B model over every visible GPU (slower than one GPU)."""
    from types import SimpleNamespace

    from unimumer_lib.inference import infer
    from unimumer_lib.models import model as M

    placed = []
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.get_device_properties", lambda i: SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(M, "load_model", lambda path, **kw: placed.append(kw) or ("model", "processor"))
    for name in ("small", "big"):  # checkpoint folders as check_model accepts them (config.json + weights)
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(b"0" * 1000)
    infer.load_for_inference(tmp_path / "small")
    monkeypatch.setattr(infer, "weights_bytes", lambda path: 70 * 2**30)  # more than 80 % of one GPU
    infer.load_for_inference(tmp_path / "big")
    assert placed == [{"dtype": "auto", "device_map": {"": 0}}, {"dtype": "auto", "device_map": "auto"}]


def test_two_inference_processes_merge_to_the_one_process_file(tmp_path):
    """Issue 21: one process per GPU (data-parallel shards merged in order) instead of device_map="auto"."""
    from unimumer_lib.pipeline import cli
    from unimumer_lib.data.synth import synthesize
    from unimumer_lib.data.render import render_ink

    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        render_ink(synthesize(i, seed=9), height=64).save(images / f"e{i}.png")
    base = ["infer", "--model", "tiny-base", "--data", str(images), "--max-new-tokens", "16"]
    assert cli.main([*base, "--out", str(tmp_path / "one.json"), "--processes", "1"]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "two.json"), "--processes", "2"]) == 0
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert sorted(p.name for p in tmp_path.glob("two.shard-*-of-2.json")) == ["two.shard-0-of-2.json",
                                                                             "two.shard-1-of-2.json"]
    assert cli.main([*base, "--out", str(tmp_path / "two.json"), "--processes", "2"]) == 0  # resumes: no work left
    # Issue 34 (item 31): the same run with only --processes changed is not "another run"
    assert cli.main([*base, "--out", str(tmp_path / "one.json"), "--processes", "2"]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "two.json"), "--processes", "1"]) == 0
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert cli.main([*base, "--out", str(tmp_path / "two.json"), "--processes", "1", "--max-new-tokens", "8"]) == 2


def test_a_users_files_named_like_the_side_files_are_never_replaced(tmp_path, capsys):
    """Issue 34 (item 5): ``infer --out side/p.json`` replaced a user's ``p.json.rejects.tsv`` and
    ``p.json.run.json``."""
    from PIL import Image

    from unimumer_lib.pipeline import cli

    Image.new("L", (60, 24), 255).save(tmp_path / "a.png")
    for suffix in (".rejects.tsv", ".run.json"):
        side = tmp_path / "side"
        side.mkdir(exist_ok=True)
        theirs = side / f"p.json{suffix}"
        theirs.write_text("my notes")
        assert cli.main(["infer", "--model", "tiny-base", "--image", str(tmp_path / "a.png"), "--max-new-tokens",
                         "4", "--out", str(side / "p.json")]) == 2
        assert "not made by unimumer infer" in capsys.readouterr().err
        assert theirs.read_text() == "my notes" and not (side / "p.json").exists()
        theirs.unlink()


def test_a_rerun_over_replaced_image_bytes_does_not_reuse_the_old_predictions(tmp_path):
    """Issue 34 (item 6): replace an image (same name) or prepare again at another height, rerun: the old
    predictions came back ("predicted 2"); the data digest covered id, caption and path, not the image."""
    import os

    from PIL import Image

    from unimumer_lib.core.provenance import ProvenanceMismatch as StaleOutput
    from unimumer_lib.models.model import load_model
    from unimumer_lib.formats.records import Record

    model, processor = load_model("tiny-base", dtype="float32")
    records = []
    for k in range(2):
        path = tmp_path / f"i{k}.png"
        Image.new("RGB", (96, 48), "white").save(path)
        records.append(Record(id=f"i{k}", caption="x", image_path=str(path)))
    out = tmp_path / "pred.json"
    predict(model, processor, records, out, max_new_tokens=4, progress=False)
    predict(model, processor, records, out, max_new_tokens=4, progress=False)  # unchanged: resumes
    Image.new("RGB", (120, 48), "white").save(records[1].image_path)
    os.utime(records[1].image_path, ns=(1, 1))
    with pytest.raises(StaleOutput, match="differs in data"):
        predict(model, processor, records, out, max_new_tokens=4, progress=False)
    assert len(predict(model, processor, records, out, max_new_tokens=4, progress=False, force=True)) == 2


def test_an_unknown_task_is_an_error_never_the_vanilla_prompt_in_silence(setup, tmp_path):
    """Issue 33 item 3: decoding, predict, recognize and extract looked an unknown task up with a vanilla
    fallback (its prompt, its budget, the whole output); each now names the task and the known ones."""
    from unimumer_lib.inference import infer
    from unimumer_lib.tasks.spec import BASE_TASK, names

    records, folder, model, processor = setup
    calls = {"decoding": lambda: decoding(processor.tokenizer, task="vanila"),
             "extract": lambda: infer.extract("x", "vanila"),
             "predict": lambda: predict(model, processor, folder, tmp_path / "p.json", task="vanila", progress=False),
             "recognize": lambda: infer.recognize([records[0].image_path], model=(model, processor), task="vanila")}
    for name, call in calls.items():
        with pytest.raises(ValueError, match="unknown task 'vanila'; known: vanilla") as err:
            call()
        assert all(t in str(err.value) for t in names()), name
    assert not (tmp_path / "p.json").exists()
    assert BASE_TASK in names() and infer.extract("x ^ { 2 }", BASE_TASK) == "x ^ { 2 }"
