"""The model-family registry: a made-up family (another patch grid, stop token and vision module) added by one
``register_family`` call in this file goes train -> save -> load -> infer; the registered Qwen families and the
errors for an unknown one."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from unimumer_lib.inference.infer import decoding, predict
from unimumer_lib.models import family as fam
from unimumer_lib.models.model import load_model
from unimumer_lib.models.processor import build_processor, build_tokenizer, image_only_processor
from unimumer_lib.models.tiny import tiny_config
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.tasks.build import build_task_files
from unimumer_lib.training.sftdata import task_files
from unimumer_lib.training.train import train

PATCH = 16  # the tiny Qwen2.5-VL uses 8; the family's grid is patch x merge = 32


def toy_tiny(size: str = "tiny", seed: int = 0):
    """The made-up family's offline stand-in: a tiny Qwen2.5-VL on a 16-px patch grid, marked as ``toyvl``."""
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, size)
    config.vision_config.patch_size, config.vision_config.window_size = PATCH, PATCH * 2 * 4
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    processor = build_processor(tokenizer, patch=PATCH)
    family = fam.get_family("toyvl")
    family.mark(model.config, processor, tokenizer)
    model.generation_config = family.generation_config(tokenizer)
    return model, processor


TOY = fam.ModelFamily("toyvl", factor=2 * PATCH, stop_tokens=("<|endoftext|>",), vision_module="model.visual.blocks",
                      processor=image_only_processor, tiny=toy_tiny)


@pytest.fixture
def toy_family():
    fam.register_family(TOY)
    yield TOY
    del fam.MODEL_FAMILIES[TOY.name]


def test_a_made_up_family_trains_saves_loads_and_infers(toy_family, crohme_root, tmp_path):
    records = sample_caption_set(crohme_root / "train", tmp_path / "set", 6, min_tokens=3, max_tokens=8, height=20)
    build_task_files(tmp_path / "tasks", ["vanilla"], captions=tmp_path / "set" / "caption.txt", test_roots=[])
    model, processor = toy_family.tiny()
    assert fam.model_family(model) is fam.model_family(processor) is toy_family
    seen = []
    original = processor.image_processor.__class__.__call__

    def spy(self, images=None, **kwargs):  # the images the processor is given, after the family's fit
        flat = [images]
        while any(isinstance(x, list) for x in flat):
            flat = [y for x in flat for y in (x if isinstance(x, list) else [x])]
        seen.extend(im.size for im in flat)
        return original(self, images=images, **kwargs)

    processor.image_processor.__class__.__call__ = spy
    try:
        result = train(task_files(tmp_path / "tasks"), model=model, processor=processor, out_dir=tmp_path / "run",
                       max_steps=2, disable_tqdm=True, save_steps=10**6, freeze_vision=True, test_roots=[])
    finally:
        processor.image_processor.__class__.__call__ = original
    assert seen and min(min(size) for size in seen) >= toy_family.factor  # 20-px images fitted to its grid
    blocks, embed = toy_family.vision(result.model), result.model.model.visual.patch_embed
    assert not any(p.requires_grad for p in blocks.parameters())  # its vision module frozen, and only that
    assert all(p.requires_grad for p in embed.parameters())

    loaded, loaded_processor = load_model(result.final_dir)  # a saved checkpoint knows its family
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())[fam.FAMILY_ATTR] == "toyvl"
    assert fam.model_family(loaded) is fam.model_family(loaded_processor) is toy_family
    stop = loaded_processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert loaded.generation_config.eos_token_id == [stop]
    assert decoding(loaded_processor.tokenizer).eos_token_id == [stop]
    preds = predict(loaded, loaded_processor, records, tmp_path / "pred.json", progress=False)
    assert len(preds) == 6 and not any(p.error for p in preds)


def test_the_qwen_families_are_registered_and_an_unknown_one_is_an_error():
    from unimumer_lib.models.tiny import tiny_model

    model, processor = tiny_model("tiny")
    qwen = fam.model_family(model)
    assert qwen.name == "qwen2_5_vl" and fam.model_family(processor) is qwen and qwen.factor == 28
    assert qwen.vision(model) is model.model.visual
    assert fam.get_family("qwen2_vl").model_types == ("qwen2_vl",)
    assert qwen.chat("IMG", "p")[0]["content"] == [{"type": "image", "image": "IMG"}, {"type": "text", "text": "p"}]
    with pytest.raises(fam.UnknownFamily, match="'internvl'.*register_family"):
        fam.model_family(type("Config", (), {"model_type": "internvl"})())
    with pytest.raises(fam.UnknownFamily, match="not registered"):
        fam.get_family("nope")
    with pytest.raises(ValueError, match="registered already"):
        fam.register_family(fam.ModelFamily("qwen2_5_vl"))
    with pytest.raises(ValueError, match="belongs to family 'qwen2_vl'"):
        fam.register_family(fam.ModelFamily("other", ("qwen2_vl",)))
    with pytest.raises(ValueError, match="no stop token '<end>'"):
        fam.ModelFamily("x", stop_tokens=("<end>",)).stop_token_ids(processor.tokenizer)


def test_the_readme_registers_qwen3_vl_in_one_call():
    """The README's example: Qwen3-VL (patch 16) as one ``register_family`` call; a tiny random Qwen3-VL then has
    that family, its 32-px grid and a vision tower where the family says."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from unimumer_lib.core.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    code = readme[readme.index("## Another model family"):].split("```python\n", 1)[1].split("```", 1)[0]
    try:
        exec(compile(code, "README.md", "exec"), {})
        text = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True})
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
                      spatial_merge_size=2, deepstack_visual_indexes=[0])
        model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(text_config=text, vision_config=vision))
        family = fam.model_family(model)
        cfg = model.config.vision_config
        assert family.name == "qwen3_vl" and family.factor == cfg.patch_size * cfg.spatial_merge_size
        assert family.vision(model) is model.model.visual
    finally:
        fam.MODEL_FAMILIES.pop("qwen3_vl", None)
