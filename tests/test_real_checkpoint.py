"""The real-checkpoint path through the hub-faithful fixture: precision, the CLI round trip, decoding settings."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from unimumer_lib.pipeline import cli
from unimumer_lib.models.hubfixture import build_fixture
from unimumer_lib.inference.infer import OFFICIAL_MAX_TOKENS, OFFICIAL_SAMPLING, decoding, generate
from unimumer_lib.tasks.spec import MAX_NEW_TOKENS
from unimumer_lib.pipeline.mining import mining_decoding, sample_caption_set
from unimumer_lib.models.model import load_model
from unimumer_lib.models.processor import stop_token_ids
from unimumer_lib.formats.predictions import REQUIRED_KEYS
from unimumer_lib.tasks.build import caption_rows, write_task_files
from unimumer_lib.training.train import FINAL_DIR, train
from unimumer_lib.training.sftconfig import PRESETS

ONE_STEP = dict(max_steps=1, use_cpu=True, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                warmup_steps=0, save_steps=10**6, disable_tqdm=True)


@pytest.fixture(scope="module")
def hub():
    return build_fixture()


@pytest.fixture(scope="module")
def vanilla(crohme_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    records = sample_caption_set(crohme_root / "train", folder / "set", 4, max_tokens=12, height=64, seed=2)
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in records], ["vanilla"], progress=False)
    return records, write_task_files(folder / "tasks", rows)["vanilla"]


def _changed(before: dict, model) -> dict[str, bool]:
    return {n: not torch.equal(before[n], p.detach().float()) for n, p in model.named_parameters()}


def test_paper_precision_updates_every_tensor(hub, vanilla, tmp_path):
    """lr 1e-5, one step, bf16 autocast: fp32 master weights move everywhere, norms included; bf16 ones do not."""
    assert PRESETS["paper"]["learning_rate"] == 1e-5 and PRESETS["paper"]["bf16"]
    _, path = vanilla
    start, _ = load_model(hub, dtype="float32")
    before = {n: p.detach().clone() for n, p in start.named_parameters()}
    result = train(path, model_path=hub, preset="paper", out_dir=tmp_path / "fp32", **ONE_STEP)
    assert result.global_step == 1 and result.trainer.args.bf16
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    changed = _changed(before, result.model)
    assert all(changed.values()), [n for n, c in changed.items() if not c]
    # the old recipe, for contrast: bf16 weights lose the same update to rounding (norm weights = 1.0 never move)
    bf16, processor = load_model(hub, dtype="bfloat16")
    stale = train(path, model=bf16, processor=processor, preset="paper", out_dir=tmp_path / "bf16", **ONE_STEP)
    lost = [n for n, c in _changed(before, stale.model).items() if not c]
    assert any("norm" in n for n in lost)


def _modes(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_cli_train_infer_eval_on_the_fixture(hub, crohme_root, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        data, tasks, run = tmp_path / "data", tmp_path / "tasks", tmp_path / "run"
        assert cli.main(["prepare", "crohme", "--src", str(crohme_root), "--out", str(data), "--splits",
                         "train,test2014", "--limit", "3", "--height", "64", "--workers", "1"]) == 0
        assert cli.main(["tasks", "--captions", str(data / "train" / "caption.txt"), "--tasks", "vanilla",
                         "--out", str(tasks)]) == 0
        assert cli.main(["train", "--data", str(tasks), "--model", str(hub), "--preset", "cpu-smoke",
                         "--max-steps", "2", "--out", str(run)]) == 0
        pred = tmp_path / "p.json"
        assert cli.main(["infer", "--model", str(run / FINAL_DIR), "--data", str(data / "test2014"), "--out",
                         str(pred), "--max-new-tokens", "6", "--batch-size", "2"]) == 0
        assert cli.main(["eval", str(pred)]) == 0
    finally:
        os.umask(old)
    rows = json.loads(pred.read_text())
    ids = [line.split("\t")[0] for line in (data / "test2014" / "caption.txt").read_text().splitlines()]
    assert [r["img_id"] for r in rows] == ids
    assert all(set(REQUIRED_KEYS) <= set(r) and r["image_path"] for r in rows)
    assert (run / FINAL_DIR / "preprocessor_config.json").is_file()
    modes = {**_modes(data), **_modes(tasks), **_modes(run)}
    assert "final/model.safetensors" in modes and any(k.startswith("checkpoint-2/") for k in modes)
    assert {k: m for k, m in modes.items() if m != 0o644} == {}
    recorded = json.loads((run / "run_config.json").read_text())
    assert recorded["preset"] == "cpu-smoke" and recorded["model"] == str(hub)


class _Recorder:
    """Stands in for ``model.generate``: keeps the generation config each call received, generates nothing
    (the default budget of hundreds of tokens would be slow on a random model that never stops)."""

    def __init__(self, model):
        self.configs, self._generate = [], model.generate
        model.generate = self

    def __call__(self, **kwargs):
        self.configs.append(kwargs["generation_config"])
        return kwargs["input_ids"]


def test_decoding_settings_used_by_infer_and_mining(hub, vanilla):
    records, _ = vanilla
    model, processor = load_model(hub, dtype="float32")  # the hub ships repetition_penalty 1.05, top_k 1, sampling
    stops = stop_token_ids(processor.tokenizer)
    recorder = _Recorder(model)
    generate(model, processor, [records[0].image_path])
    used = recorder.configs[-1]
    assert (used.do_sample, used.repetition_penalty, used.num_beams) == (False, 1.0, 1)
    assert used.eos_token_id == stops == [151645, 151643] and used.max_new_tokens == MAX_NEW_TOKENS["vanilla"]
    # nothing reshapes the logits: greedy scores are the raw logits (a repetition penalty would change them)
    inputs = processor.apply_chat_template(
        [[{"role": "user", "content": [{"type": "image", "image": records[0].image_path},
                                       {"type": "text", "text": "x"}]}]],
        tokenize=True, return_dict=True, return_tensors="pt", add_generation_prompt=True)
    settings = decoding(processor.tokenizer, max_new_tokens=8)
    settings.update(output_scores=True, output_logits=True, return_dict_in_generate=True)
    out = recorder._generate(**inputs, generation_config=settings)
    assert out.scores and all(torch.equal(s, lg) for s, lg in zip(out.scores, out.logits))
    official = decoding(processor.tokenizer, "official")
    assert (official.do_sample, official.temperature, official.top_p, official.top_k) == (
        True, OFFICIAL_SAMPLING["temperature"], OFFICIAL_SAMPLING["top_p"], OFFICIAL_SAMPLING["top_k"])
    assert official.max_new_tokens == OFFICIAL_MAX_TOKENS == 2048 and official.repetition_penalty == 1.0
    mining = mining_decoding(processor.tokenizer, samples=3, temperature=0.7)
    assert (mining.do_sample, mining.top_k, mining.temperature, mining.repetition_penalty) == (True, 0, 0.7, 1.0)
    assert mining.num_return_sequences == 3 and mining.eos_token_id == stops
    assert decoding(processor.tokenizer, num_beams=4).num_beams == 4
