"""The tiny offline Qwen2.5-VL: tokenizer coverage of CROHME, processor, save/reload, pixel bounds."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from unimumer_lib.data.inkml import caption_of, find_inkml, read_inkml
from unimumer_lib.models.images import PAPER_MAX_PIXELS, fit_pixels, set_pixel_bounds
from unimumer_lib.models.model import load_model, num_parameters, save
from unimumer_lib.models.processor import QWEN_SPECIAL_TOKENS, ImageOnlyQwen2_5_VLProcessor
from unimumer_lib.models.tiny import SIZES, tiny_model
from unimumer_lib.tasks.build import PROMPTS


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("tiny")


def _image(width, text_seed=0):
    img = Image.new("RGB", (width, 64), "white")
    img.paste((0, 0, 0), (8 + text_seed * 5, 20, 30 + text_seed * 5, 40))
    return img


def test_tokenizer_round_trips_crohme_captions(tiny, crohme_root):
    tok = tiny[1].tokenizer
    files = find_inkml(crohme_root / "test2014")[:300]
    captions = [caption_of(read_inkml(f)) for f in files]
    assert len(captions) == 300
    for caption in captions:
        ids = tok(caption, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == caption
        assert tok.unk_token_id not in ids


def test_special_tokens_are_single_ids(tiny):
    tok = tiny[1].tokenizer
    for t in QWEN_SPECIAL_TOKENS:
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    assert tiny[0].config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")


def test_chat_template_places_image_tokens(tiny):
    model, processor = tiny
    conv = [{"role": "user", "content": [{"type": "image", "image": _image(128)},
                                         {"type": "text", "text": PROMPTS["vanilla"]}]}]
    out = processor.apply_chat_template([conv], tokenize=True, return_dict=True, return_tensors="pt",
                                        add_generation_prompt=True)
    n_image = int((out["input_ids"] == model.config.image_token_id).sum())
    patch = SIZES["tiny"]["patch"]
    assert n_image == (64 // (2 * patch)) * (128 // (2 * patch))
    text = processor.tokenizer.decode(out["input_ids"][0])
    assert text.endswith("<|im_start|>assistant\n") and PROMPTS["vanilla"] in text


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_sizes_forward(size):
    model, processor = tiny_model(size)
    assert 1e5 < num_parameters(model) < 2e7
    conv = [{"role": "user", "content": [{"type": "image", "image": _image(96)}, {"type": "text", "text": "x"}]}]
    out = processor.apply_chat_template([conv], tokenize=True, return_dict=True, return_tensors="pt")
    logits = model(**out).logits
    assert logits.shape[-1] == model.config.text_config.vocab_size and torch.isfinite(logits).all()


def test_save_reload_gives_identical_generations(tiny, tmp_path):
    model, processor = tiny
    folder = save(model, processor, tmp_path / "m")
    model2, processor2 = load_model(folder)
    assert isinstance(AutoProcessor.from_pretrained(folder), ImageOnlyQwen2_5_VLProcessor)
    assert isinstance(processor2, ImageOnlyQwen2_5_VLProcessor)
    convs = [[{"role": "user", "content": [{"type": "image", "image": _image(w, i)},
                                           {"type": "text", "text": PROMPTS["vanilla"]}]}]
             for i, w in enumerate((96, 160, 224))]
    gens = []
    for m, p in ((model, processor), (model2, processor2)):
        inputs = p.apply_chat_template(convs, tokenize=True, return_dict=True, return_tensors="pt",
                                       add_generation_prompt=True,
                                       processor_kwargs={"padding": True, "padding_side": "left"})
        gens.append(m.generate(**inputs, max_new_tokens=12, do_sample=False))
    assert torch.equal(gens[0], gens[1])


def test_pixel_bounds(tiny):
    _, processor = tiny
    set_pixel_bounds(processor, max_pixels=PAPER_MAX_PIXELS)
    assert processor.image_processor.size["longest_edge"] == PAPER_MAX_PIXELS
    big = Image.new("RGB", (2048, 1024), "white")
    grid = processor.image_processor(images=[big], return_tensors="pt")["image_grid_thw"][0]
    patch = processor.image_processor.patch_size
    assert int(grid[1] * grid[2]) * patch * patch <= PAPER_MAX_PIXELS


def test_fit_pixels_caps_like_llamafactory():
    fitted = fit_pixels(Image.new("L", (2048, 1024)))  # 2,097,152 pixels: scaled by sqrt(1/8), sides truncated
    assert fitted.size == (724, 362) and fitted.mode == "RGB" and 724 * 362 <= PAPER_MAX_PIXELS
    assert fit_pixels(Image.new("RGB", (300, 10))).size == (300, 28)  # no side under 28
    small = Image.new("RGB", (100, 60))
    assert fit_pixels(small) is small


def test_unknown_size_is_rejected():
    with pytest.raises(ValueError, match="unknown tiny model size"):
        tiny_model("huge")


def test_grow_adds_depth_and_keeps_what_the_model_computes(tmp_path):
    from unimumer_lib.models.tiny import grow, grow_sources

    assert grow_sources(2, 4) == [0, 0, 1, 1] and grow_sources(2, 3) == [0, 0, 1] and grow_sources(3, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="only adds"):
        grow_sources(4, 2)
    model, processor = tiny_model("tiny", seed=3)
    for p in model.parameters():  # no zero-initialised projection left: a grown copy must make its own zeros
        p.data.add_(0.01 * torch.randn_like(p))
    grown = grow(model, "tiny4")
    assert grown.config.text_config.num_hidden_layers == 4 and grown.config.vision_config.depth == 4
    # block 1 of tiny is its full-attention block; in the grown tower it sits at 2, its copy at 3
    assert model.config.vision_config.fullatt_block_indexes == [1]
    assert grown.config.vision_config.fullatt_block_indexes == [2, 3]
    layers = grown.model.language_model.layers
    assert torch.equal(layers[1].self_attn.q_proj.weight, layers[0].self_attn.q_proj.weight)
    assert not layers[1].self_attn.o_proj.weight.any() and not layers[1].mlp.down_proj.weight.any()
    assert layers[2].self_attn.o_proj.weight.any()  # an original layer keeps its weights
    conv = [{"role": "user", "content": [{"type": "image", "image": _image(160, 3)},
                                         {"type": "text", "text": PROMPTS["vanilla"]}]}]
    batch = processor.apply_chat_template([conv], tokenize=True, return_dict=True, return_tensors="pt",
                                          add_generation_prompt=True)
    model.eval(), grown.eval()
    with torch.no_grad():
        before, after = model(**batch).logits, grown(**batch).logits
    assert torch.allclose(before, after, atol=1e-5) and before.abs().max() > 0.1
    with torch.no_grad():  # the grown layers take part once they move
        layers[1].self_attn.o_proj.weight.add_(0.05)
        assert not torch.allclose(before, grown(**batch).logits, atol=1e-3)
    reloaded, _ = load_model(save(grown, processor, tmp_path / "g"), dtype="float32")
    assert reloaded.config.vision_config.fullatt_block_indexes == [2, 3] and num_parameters(reloaded) == \
        num_parameters(grown)
    with pytest.raises(ValueError, match="differs in hidden"):
        grow(model, "base5")
