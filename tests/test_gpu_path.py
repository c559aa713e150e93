"""The GPU user's path where a CPU can check it: shard device masks, the preset a big model gets, the recipe's
vision freeze reaching run_config.json, checkpoints by fraction of the run."""

from __future__ import annotations

import subprocess

import pytest
from PIL import Image

from unimumer_lib.inference import shards
from unimumer_lib.core import workers


def test_shards_run_on_the_devices_this_process_was_given(monkeypatch, tmp_path):
    """CUDA_VISIBLE_DEVICES=2,3 (a shared node): the two shards run on 2 and 3, never on GPUs 0 and 1."""
    started = []

    class Child:  # a stand-in shard process: records its environment, then fails (nothing to merge)
        def __init__(self, cmd, env):
            started.append(env["CUDA_VISIBLE_DEVICES"])

        def wait(self):
            return 1

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    monkeypatch.setattr(subprocess, "Popen", Child)
    images = [tmp_path / f"{k}.png" for k in "ab"]
    for path in images:
        Image.new("RGB", (64, 32), "white").save(path)
    with pytest.raises(RuntimeError, match="shard"):
        shards._run_shards("tiny", images, tmp_path / "out.json", 2, [], None, False)  # (rows, records)
    assert started == ["2", "3"]


@pytest.mark.parametrize("visible,gpus,expected", [("2,3", 2, ["2", "3", "2"]), ("GPU-aa, GPU-bb", 2,
                                                   ["GPU-aa", "GPU-bb", "GPU-aa"]), (None, 2, ["0", "1", "0"])])
def test_shard_device(visible, gpus, expected):
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert [workers.shard_device(i, gpus, env) for i in range(3)] == expected


def _vanilla_file(folder):
    from unimumer_lib.tasks.build import caption_rows, write_task_files

    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for k, caption in enumerate(["x + 1", "a - b", "2 x", "y = 3"]):
        Image.new("RGB", (96, 48), "white").save(folder / f"i{k}.png")
        items.append((f"i{k}", caption, str(folder / f"i{k}.png")))
    rows, _ = caption_rows(items, ["vanilla"], progress=False)
    return write_task_files(folder / "tasks", rows)["vanilla"]


def test_a_real_model_without_a_preset_is_refused_before_any_download(tmp_path, capsys, monkeypatch):
    from unimumer_lib.pipeline import cli
    from unimumer_lib.models import model
    from unimumer_lib.training.sftconfig import CPU_PRESET, default_preset

    monkeypatch.setattr(model, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    data = _vanilla_file(tmp_path / "d")
    code = cli.main(["train", "--data", str(data), "--model", "Qwen/Qwen2.5-VL-3B-Instruct", "--out",
                     str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "give --preset for a real model" in err and "use_cpu" in err
    assert not (tmp_path / "run").exists()
    big, small = tmp_path / "big", tmp_path / "small"
    for folder, hidden in ((big, 2048), (small, 128)):
        folder.mkdir()
        (folder / "config.json").write_text(f'{{"text_config": {{"hidden_size": {hidden}}}}}')
    with pytest.raises(ValueError, match="give --preset"):
        default_preset(big)
    assert default_preset(small) == default_preset("tiny") == default_preset("tiny-base") == CPU_PRESET


def test_full_is_the_paper_recipe():
    from unimumer_lib.training.sftconfig import PRESETS, resolve_settings

    assert resolve_settings("full") == resolve_settings("paper") and not resolve_settings("full").get("use_cpu")
    assert "freeze_vision" in PRESETS["paper"]  # the choice is stated where the recipe is


def test_freeze_vision_flag_freezes_the_tower_and_reaches_run_config(tmp_path):
    import json

    import torch

    from unimumer_lib.pipeline import cli
    from unimumer_lib.models.model import load_model
    from unimumer_lib.training.sftconfig import Recipe
    from unimumer_lib.training.launch import add_train_arguments, launch_command

    data = _vanilla_file(tmp_path / "d")
    assert cli.main(["train", "--data", str(data), "--model", "tiny", "--out", str(tmp_path / "run"),
                     "--max-steps", "2", "--freeze-vision", "--learning_rate", "0.05"]) == 0
    record = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert record["freeze_vision"] is True and record["preset"] == "cpu-smoke"
    fresh, _ = load_model("tiny")
    trained, _ = load_model(tmp_path / "run" / "final", dtype="float32")
    assert all(torch.equal(a, b) for a, b in zip(fresh.model.visual.parameters(), trained.model.visual.parameters()))
    assert not torch.equal(fresh.lm_head.weight, trained.lm_head.weight)
    cmd = launch_command([data], tmp_path / "run2", 2, Recipe(freeze_vision=True))
    import argparse

    ap = argparse.ArgumentParser()
    add_train_arguments(ap)
    assert ap.parse_known_args(cmd[cmd.index("train") + 1:])[0].freeze_vision is True


def test_a_transparent_image_is_read_on_white_paper(tmp_path):
    """A canvas export (black ink, alpha 0 elsewhere) reads as its opaque copy, in inference and training alike."""
    import numpy as np

    from unimumer_lib.training import stream
    from unimumer_lib.inference.infer import _open_image, predict
    from unimumer_lib.models.images import fit_pixels
    from unimumer_lib.models.model import load_model
    from unimumer_lib.formats.records import Record

    records = stream.held_out_records(tmp_path / "img", 6, offset=2100)
    clear = []
    for r in records:
        grey = np.asarray(Image.open(r.image_path).convert("L"))
        rgba = np.zeros((*grey.shape, 4), np.uint8)
        rgba[..., 3] = 255 - grey  # ink opaque black, paper fully transparent
        path = tmp_path / f"{r.id}_clear.png"
        Image.fromarray(rgba, "RGBA").save(path)
        clear.append(Record(id=r.id, caption=r.caption, image_path=str(path)))
        opened = np.asarray(_open_image(path), dtype=float)
        assert opened.mean() > 200 and abs(opened - np.asarray(_open_image(r.image_path), dtype=float)).max() <= 2
        assert np.asarray(fit_pixels(Image.open(path))).mean() > 200  # the training path too
    model, processor = load_model("tiny-base", dtype="float32")
    a = predict(model, processor, records, tmp_path / "a.json", progress=False)
    b = predict(model, processor, clear, tmp_path / "b.json", progress=False)
    assert [p.pred for p in a] == [p.pred for p in b]


def test_vllm_gets_bf16_a_bounded_context_and_a_seed(monkeypatch):
    import importlib.machinery
    import sys
    import types

    from unimumer_lib.inference.infer import _vllm_runner, decoding
    from unimumer_lib.models.model import load_model

    made = {}

    class LLM:
        def __init__(self, model, **options):
            made.update(options, model=model)

    _, processor = load_model("tiny")
    fake = types.ModuleType("vllm")
    fake.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    fake.LLM, fake.SamplingParams = LLM, lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    _vllm_runner("some/checkpoint", processor, decoding(processor.tokenizer, max_new_tokens=512))
    assert made["dtype"] == "bfloat16" and made["seed"] == 0 and made["limit_mm_per_prompt"] == {"image": 1}
    assert 512 + 334 < made["max_model_len"] <= 4096


def test_the_paper_recipe_checkpoints_by_fraction_and_loads_data_in_workers(tmp_path):
    """save_steps 500 never saved an arm of 17-86 steps; data prepared in the training process starves the GPU.
    The preset's data-loader settings run here on CPU, and a fraction gives a checkpoint per tenth of the run."""
    from unimumer_lib.training.sftconfig import PRESETS
    from unimumer_lib.training.train import train

    paper = PRESETS["paper"]
    assert 0 < paper["save_steps"] < 1 and paper["dataloader_num_workers"] >= 2
    data = _vanilla_file(tmp_path / "d")
    result = train(data, out_dir=tmp_path / "run", max_steps=4, save_steps=0.5,
                   dataloader_num_workers=paper["dataloader_num_workers"],
                   dataloader_persistent_workers=paper["dataloader_persistent_workers"], disable_tqdm=True)
    assert result.global_step == 4
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_flash_attention_where_it_imports_on_a_gpu_else_sdpa(monkeypatch, tmp_path):
    import importlib.util
    import json

    from unimumer_lib.models.model import attention_implementation
    from unimumer_lib.training.train import train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else
                        real(name, *a))
    assert attention_implementation(cuda=True) == "flash_attention_2"
    assert attention_implementation(cuda=False) == "sdpa"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else
                        real(name, *a))
    assert attention_implementation(cuda=True) == "sdpa"
    train(_vanilla_file(tmp_path / "d"), out_dir=tmp_path / "run", max_steps=1, disable_tqdm=True)
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["attn_implementation"] in ("sdpa", "eager")


def test_vllm_runs_a_lora_final_folder_as_base_plus_adapter(monkeypatch, tmp_path):
    """A LoRA final/ holds adapters only: vLLM loads the base it names and applies the adapter to every request."""
    import importlib.machinery
    import json
    import sys
    import types

    from unimumer_lib.inference.infer import _vllm_runner, decoding
    from unimumer_lib.models.model import load_model

    _, processor = load_model("tiny")
    made, asked = {}, []

    class LLM:
        def __init__(self, model, **options):
            made.update(options, model=model)

        def generate(self, requests, params, lora_request=None):
            asked.append(lora_request)
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=" x ")]) for _ in requests]

    class LoRARequest:
        def __init__(self, name, index, path):
            self.path = path

    for name, attrs in (("vllm", {"LLM": LLM, "SamplingParams": lambda **kw: kw}), ("vllm.lora", {}),
                        ("vllm.lora.request", {"LoRARequest": LoRARequest})):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    final = tmp_path / "final"
    final.mkdir()
    (final / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct",
                                                           "r": 16}))
    run = _vllm_runner(final, processor, decoding(processor.tokenizer))
    assert run([Image.new("RGB", (64, 32), "white")]) == [["x"]]
    assert made["model"] == "Qwen/Qwen2.5-VL-3B-Instruct" and made["enable_lora"] and made["max_lora_rank"] == 16
    assert asked[0].path == str(final)
    (final / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="names no base model"):
        _vllm_runner(final, processor, decoding(processor.tokenizer))


def test_official_sizing_is_qwen_vl_utils_smart_resize(tmp_path):
    """Official inference resizes with qwen_vl_utils (multiples of 28, 3,136-12,845,056 pixels, no 262,144 cap);
    `infer --sizing official` does the same, and the default stays the training fit."""
    from unimumer_lib.pipeline import cli
    from unimumer_lib.models.images import fit_pixels, official_size

    # smart_resize by hand: 1000 x 700 -> round to 28: 1008 x 700 (25 x 36 patches), no cap
    assert official_size(Image.new("RGB", (1000, 700))).size == (1008, 700)
    assert fit_pixels(Image.new("RGB", (1000, 700))).size[0] * fit_pixels(Image.new("RGB", (1000, 700))).size[1] \
        <= 262_144
    tiny = official_size(Image.new("RGB", (20, 10)))
    assert tiny.size[0] % 28 == tiny.size[1] % 28 == 0 and tiny.size[0] * tiny.size[1] >= 3136
    huge = official_size(Image.new("RGB", (20000, 1000)))
    assert huge.size[0] * huge.size[1] <= 12_845_056 and huge.size[0] % 28 == 0
    clear = Image.new("RGBA", (56, 56), (0, 0, 0, 0))
    assert official_size(clear).getpixel((5, 5)) == (255, 255, 255)
    image = tmp_path / "x.png"
    Image.new("RGB", (300, 100), "white").save(image)
    for sizing in ("paper", "official"):
        assert cli.main(["infer", "--model", "tiny-base", "--data", str(image), "--out",
                         str(tmp_path / f"{sizing}.json"), "--sizing", sizing, "--max-new-tokens", "4"]) == 0
    import json

    assert json.loads((tmp_path / "official.json.run.json").read_text())["sizing"] == "official"
    assert "sizing" not in json.loads((tmp_path / "paper.json.run.json").read_text())


def test_notebook_04_inference_shards_over_the_gpus(tmp_path):
    """Issue 31: notebook 04 recognised every split on one GPU of a multi-GPU box. predict_splits runs one shard
    process per GPU (here 2 processes on CPU) and its files equal the one-process run's."""
    from unimumer_lib.inference.shards import predict_splits
    from unimumer_lib.formats.predictions import read_rows
    from unimumer_lib.formats.records import write_comer
    from unimumer_lib.training import stream

    from dataclasses import replace

    records = stream.held_out_records(tmp_path / "img", 6, offset=2200)
    split = write_comer(tmp_path / "split", [replace(r, image=Image.open(r.image_path)) for r in records]).parent
    one = predict_splits("tiny-base", {"t": (split, tmp_path / "one.json")}, batch_size=4, max_new_tokens=48,
                         processes=1)
    two = predict_splits("tiny-base", {"t": (split, tmp_path / "two.json")}, batch_size=4, max_new_tokens=48,
                         processes=2)
    assert [(r.img_id, r.pred) for r in read_rows(one["t"])] == [(r.img_id, r.pred) for r in read_rows(two["t"])]
    assert len(read_rows(two["t"])) == 6 and (tmp_path / "two.shard-1-of-2.json").exists()


@pytest.mark.parametrize("argv,says", [
    (["--learning_rate", "1e400"], "--learning_rate inf: not a finite number"),
    (["--learning_rate", "0"], "--learning_rate 0.0: must be above 0"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must be at least 1"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps 0: must be at least 1"),
    (["--learning_rate", "abc"], "argument --learning_rate/--learning-rate: invalid float value: 'abc'"),
])
def test_a_bad_trl_option_is_one_line_naming_it(argv, says, tmp_path, capsys):
    """Issue 34 (items 10, 26): lr 1e400 trained every weight to NaN with exit 0; batch 0 died of a division by
    zero; a bad value printed ~140 lines of usage first."""
    from unimumer_lib.pipeline import cli

    code = cli.main(["train", "--data", str(_vanilla_file(tmp_path / "d")), "--model", "tiny", "--out",
                     str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0], err
    assert not (tmp_path / "run").exists()
