"""The hub-faithful offline Qwen2.5-VL-3B-Instruct folder: real Qwen tokenizer, hub configs, loads like the hub id."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from transformers import AutoTokenizer

from unimumer_lib.models.hubfixture import ADDED_TOKENS, FIRST_ADDED_ID, PREPROCESSOR, build_fixture
from unimumer_lib.models.model import load_model, save
from unimumer_lib.models.processor import ImageOnlyQwen2_5_VLProcessor
from unimumer_lib.tasks.build import TASKS
from crohme_tasks import task_rows


@pytest.fixture(scope="module")
def hub():
    return build_fixture()


def test_tokenizer_matches_the_hub_ids(hub):
    tok = AutoTokenizer.from_pretrained(hub)
    assert tok("Hello")["input_ids"] == [9707]
    assert tok("What is this?")["input_ids"] == [3838, 374, 419, 30]
    assert len(tok) == FIRST_ADDED_ID + len(ADDED_TOKENS) == 151665
    ids = {t: tok.convert_tokens_to_ids(t) for t, _ in ADDED_TOKENS}
    assert (ids["<|endoftext|>"], ids["<|im_start|>"], ids["<|im_end|>"]) == (151643, 151644, 151645)
    assert (ids["<|vision_start|>"], ids["<|vision_end|>"], ids["<|image_pad|>"]) == (151652, 151653, 151655)
    assert ids["<|file_sep|>"] == 151664
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_every_task_text_round_trips(hub, crohme_root):
    tok = AutoTokenizer.from_pretrained(hub)
    rows = task_rows(crohme_root, 20)
    assert set(rows) == set(TASKS)
    for task, task_rows_ in rows.items():
        for row in task_rows_:
            for m in row["messages"]:
                ids = tok(m["value"], add_special_tokens=False)["input_ids"]
                assert tok.decode(ids) == m["value"], (task, m["value"])


def test_folder_has_the_hub_files(hub):
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "chat_template.json",
                 "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "model.safetensors"):
        assert (hub / name).is_file(), name
    cfg = json.loads((hub / "config.json").read_text())
    assert cfg["vocab_size"] == 151936 and cfg["rope_scaling"]["mrope_section"] == [16, 24, 24]
    assert cfg["vision_config"]["patch_size"] == 14 and cfg["vision_config"]["spatial_merge_size"] == 2
    gen = json.loads((hub / "generation_config.json").read_text())
    assert gen["repetition_penalty"] == 1.05 and gen["do_sample"] is True


def test_loads_like_the_hub_id_processor_before_weights(hub, tmp_path):
    import shutil

    model, processor = load_model(hub)  # the call a user makes with "Qwen/Qwen2.5-VL-3B-Instruct"
    assert importlib.util.find_spec("torchvision") is not None or isinstance(processor, ImageOnlyQwen2_5_VLProcessor)
    assert processor.tokenizer("Hello")["input_ids"] == [9707]
    assert processor.image_processor.size["longest_edge"] == PREPROCESSOR["max_pixels"]  # the cap: fit_pixels
    assert model.generation_config.repetition_penalty == 1.0 and not model.generation_config.do_sample
    assert model.config.text_config.vocab_size == 151936
    # no weights and a broken image-processor file: the processor error comes first, no weights were needed
    broken = tmp_path / "broken"
    shutil.copytree(hub, broken, ignore=shutil.ignore_patterns("model.safetensors"))
    (broken / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(Exception) as err:
        load_model(broken)
    assert "safetensors" not in str(err.value) and "weights" not in str(err.value).lower()


def test_saved_folder_has_the_legacy_files(hub, tmp_path):
    model, processor = load_model(hub, dtype="float32")
    out = save(model, processor, tmp_path / "final")
    legacy = json.loads((out / "preprocessor_config.json").read_text())
    assert legacy["image_processor_type"] == "Qwen2VLImageProcessor"
    assert legacy["max_pixels"] == PREPROCESSOR["max_pixels"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden_size"] == cfg["text_config"]["hidden_size"] and cfg["rope_scaling"]["type"] == "mrope"
    assert json.loads((out / "generation_config.json").read_text()).get("repetition_penalty", 1.0) == 1.0
    again, _ = load_model(out, dtype="float32")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
