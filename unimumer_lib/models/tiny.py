"""The tiny offline Qwen2.5-VL shapes (``SIZES``): an architecture-faithful model with random weights built in
seconds (``tiny_model``), and ``grow``, which makes a deeper model that computes what a trained one computes.
"""

from __future__ import annotations

import re

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from .images import PAPER_MAX_PIXELS
from .processor import QWEN_SPECIAL_TOKENS, build_processor, build_tokenizer, neutral_generation_config


# Optional keys: "rope_theta" (default 10000) and "mrope" (temporal, height) rotary sections, width taking the rest.
SIZES = {
    # 0.87M parameters; 16x16-pixel LLM tokens so small glyphs matter. rope_theta 20: mrope gives the image's width
    # the lowest rotary frequencies, which at theta 10000 barely turn across a 60-token-wide image.
    "tiny": dict(hidden=128, layers=2, heads=8, kv_heads=8, inter=256, v_hidden=96, v_depth=2, v_heads=4,
                 v_inter=192, patch=8, rope_theta=20.0),
    "small": dict(hidden=256, layers=4, heads=4, kv_heads=2, inter=512, v_hidden=128, v_depth=4, v_heads=4,
                  v_inter=256, patch=8),
    # The real-glyph base's candidates (benchmarks/bench_shapes.py; 3-8 M parameters, the size of the small HMER
    # models that read CROHME well): wider matrices run nearer this CPU's fp32 peak.
    "base3": dict(hidden=256, layers=3, heads=4, kv_heads=4, inter=768, v_hidden=192, v_depth=3, v_heads=4,
                  v_inter=576, patch=8, rope_theta=20.0),
    "base5": dict(hidden=256, layers=4, heads=4, kv_heads=4, inter=768, v_hidden=192, v_depth=5, v_heads=4,
                  v_inter=576, patch=8, rope_theta=20.0),
    "base7": dict(hidden=320, layers=4, heads=5, kv_heads=5, inter=960, v_hidden=224, v_depth=5, v_heads=4,
                  v_inter=672, patch=8, rope_theta=20.0),
    # tiny's widths at twice its depth: what ``grow`` makes of a trained tiny base (the 3-8 M shapes did not train
    # from random weights on this CPU; a grown base starts where the trained one ends).
    "tiny4": dict(hidden=128, layers=4, heads=8, kv_heads=8, inter=256, v_hidden=96, v_depth=4, v_heads=4,
                  v_inter=192, patch=8, rope_theta=20.0),
}


def tiny_config(tokenizer, size: str = "tiny", vision_init: float = 0.1, text_init: float = 0.1) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config of the given ``SIZES`` preset whose special-token ids match ``tokenizer``."""
    s = SIZES[size]
    head_dim = s["hidden"] // s["heads"]
    half = head_dim // 2  # mrope sections (temporal, height, width) sum to head_dim/2, as 16/24/24 in the 3B
    t_sec, h_sec = s.get("mrope", (half // 4, (half - half // 4) // 2))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text = dict(vocab_size=len(tokenizer), hidden_size=s["hidden"], intermediate_size=s["inter"],
                num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                max_position_embeddings=4096, tie_word_embeddings=True, initializer_range=text_init,
                rope_parameters={"rope_type": "default", "rope_theta": s.get("rope_theta", 10000.0),
                                 "mrope_section": [t_sec, h_sec, half - t_sec - h_sec]},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=s["v_depth"], hidden_size=s["v_hidden"], intermediate_size=s["v_inter"],
                  num_heads=s["v_heads"], out_hidden_size=s["hidden"], patch_size=s["patch"], spatial_merge_size=2,
                  temporal_patch_size=2, window_size=s["patch"] * 2 * 4,
                  fullatt_block_indexes=[s["v_depth"] - 1], initializer_range=vision_init)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)


def tiny_model(size: str = "tiny", seed: int = 0, vision_init: float = 0.1, min_pixels: int = 64 * 64,
               max_pixels: int = PAPER_MAX_PIXELS, clip_norm: bool = False, text_init: float = 0.1):
    """(model, processor): a random-weight Qwen2.5-VL of preset ``size`` built offline in seconds.

    ``vision_init`` is the std of the vision tower's weights: with the default 0.02 a tiny model's image
    features are too faint against the text and it learns one string for every image. ``text_init`` is the
    std of the language model's weights: at the usual 0.02 its attention starts uniform over the ~60 prompt
    tokens and the image, and it learns to read glyphs ~3x slower (benchmarks/bench_glyphs.py). ``clip_norm=False``
    (see ``build_processor``) makes blank paper zero. ``max_pixels`` is the paper's cap, the bound
    ``load_model`` applies at inference, so training and inference resize alike.
    """
    if size not in SIZES:
        raise ValueError(f"unknown tiny model size {size!r}; choose from {sorted(SIZES)}")
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer, patch=SIZES[size]["patch"], min_pixels=min_pixels, max_pixels=max_pixels,
                                clip_norm=clip_norm)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(tokenizer, size, vision_init, text_init))
    model.generation_config = neutral_generation_config(tokenizer)
    return model, processor


def grow_sources(old: int, new: int) -> list[int]:
    """For each of ``new`` layers, the one of ``old`` it starts as a copy of: each old layer followed by its copies
    (2 -> 4: [0, 0, 1, 1])."""
    if new < old:
        raise ValueError(f"cannot grow {old} layers to {new}: growing only adds layers")
    return [i * old // new for i in range(new)]


def grow(model, size: str):
    """A deeper model of shape ``SIZES[size]`` that computes exactly what ``model`` computes (function-preserving
    growth, as Net2DeeperNet / model stacking): each new language layer and vision block starts as a copy of the one
    before it with its output projections (attention's ``o_proj``/``proj``, the MLP's ``down_proj``) zeroed, so
    it adds nothing to the residual stream until training moves it. Only depth may grow: ``size``'s widths must be
    ``model``'s."""
    import copy

    shape, cfg = SIZES[size], model.config
    text, vision = cfg.text_config, cfg.vision_config
    have = dict(hidden=text.hidden_size, inter=text.intermediate_size, heads=text.num_attention_heads,
                kv_heads=text.num_key_value_heads, v_hidden=vision.hidden_size, v_inter=vision.intermediate_size,
                v_heads=vision.num_heads, patch=vision.patch_size)
    differ = [k for k, v in have.items() if shape[k] != v]
    if differ:
        raise ValueError(f"cannot grow this model to {size!r}: it differs in {', '.join(differ)} (only depth grows)")
    t_src = grow_sources(text.num_hidden_layers, shape["layers"])
    v_src = grow_sources(vision.depth, shape["v_depth"])
    new_cfg = copy.deepcopy(cfg)
    new_cfg.text_config.num_hidden_layers = shape["layers"]
    if getattr(text, "layer_types", None):
        new_cfg.text_config.layer_types = [text.layer_types[s] for s in t_src]
    new_cfg.vision_config.depth = shape["v_depth"]
    full = set(vision.fullatt_block_indexes)
    new_cfg.vision_config.fullatt_block_indexes = [j for j, s in enumerate(v_src) if s in full]
    grown = Qwen2_5_VLForConditionalGeneration(new_cfg).to(next(model.parameters()).dtype)
    state, renamed = model.state_dict(), {}
    for key in grown.state_dict():
        m = re.match(r"(.*\.(?:layers|blocks)\.)(\d+)(\..*)", key)
        if m is None:
            renamed[key] = state[key]
            continue
        sources, index = (t_src if ".layers." in key else v_src), int(m.group(2))
        renamed[key] = state[f"{m.group(1)}{sources[index]}{m.group(3)}"].clone()
        copy_of_earlier = sources.index(sources[index]) != index
        if copy_of_earlier and re.search(r"\.(o_proj|attn\.proj|down_proj)\.(weight|bias)$", key):
            renamed[key].zero_()
    grown.load_state_dict(renamed, strict=True)
    grown.generation_config = copy.deepcopy(model.generation_config)
    grown.config._name_or_path = cfg._name_or_path
    return grown
