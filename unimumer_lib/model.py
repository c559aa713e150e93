"""Vision-language models: load any Qwen-VL checkpoint + processor, or build an offline tiny Qwen2.5-VL.

``load_model`` goes through the transformers Auto classes (image-text-to-text), so Qwen2-VL, Qwen2.5-VL and
Qwen3-VL checkpoints all work. ``tiny_model`` builds an architecture-faithful Qwen2.5-VL with random weights, a
byte-level BPE tokenizer trained on LaTeX, the Qwen2.5-VL chat template and an image-only processor (the stock
one insists on a video processor, which needs torchvision) -- all offline, in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (AutoModelForImageTextToText, AutoProcessor, PretrainedConfig, Qwen2_5_VLConfig,
                          Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2Tokenizer,
                          Qwen2VLImageProcessorPil)

from .latex import ACCENTS, BIG_OPERATORS, ENV_TOKENS, FRAC_LIKE, RADICALS, ROW_BREAK, SCRIPT_TOKENS

PAPER_MAX_PIXELS = 262_144  # Uni-MuMER: at most 512*512 pixels per image
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                       "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
# The CROHME symbol set (the 101 classes of the CoMER/TAMER dictionary) beyond plain ASCII letters and digits.
CROHME_COMMANDS = ("\\Delta", "\\alpha", "\\beta", "\\cdot", "\\cdots", "\\cos", "\\div", "\\exists", "\\forall",
                   "\\gamma", "\\geq", "\\gt", "\\in", "\\infty", "\\lambda", "\\ldots", "\\leq", "\\log", "\\lt",
                   "\\mu", "\\neq", "\\phi", "\\pi", "\\pm", "\\prime", "\\rightarrow", "\\sigma", "\\sin",
                   "\\tan", "\\theta", "\\times", "\\{", "\\}", "\\limits", "\\mbox", "\\left", "\\right")
TREE_WORDS = ("(above)", "(below)", "(sup)", "(sub)", "(right)", "(nextline)", "(begin_", "(end_", "{cases}",
              "{matrix}", "{pmatrix}", "{bmatrix}", "<error_start>", "<error_end>", "<deleted>", "REPLACE:",
              "INSERT:", "DELETE:", " -> ", " after ")

# Optional keys: "rope_theta" (default 10000) and "mrope" (temporal, height) rotary sections, width taking the rest.
SIZES = {
    # ~1.3M parameters: enough to memorise a few dozen captions; 16x16-pixel LLM tokens so small glyphs matter.
    "tiny": dict(hidden=128, layers=2, heads=4, kv_heads=2, inter=256, v_hidden=96, v_depth=2, v_heads=4,
                 v_inter=192, patch=8),
    "small": dict(hidden=256, layers=4, heads=4, kv_heads=2, inter=512, v_hidden=128, v_depth=4, v_heads=4,
                  v_inter=256, patch=8),
}


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video half, so it works without torchvision."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _ImageOnlyProcessorKey(PretrainedConfig):
    """Registry key only: lets AutoProcessor find the class above by name without overriding Qwen2.5-VL's."""

    model_type = "unimumer_image_only_qwen2_5_vl"


AutoProcessor.register(_ImageOnlyProcessorKey, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)


def load_model(path_or_id: str | Path, dtype: str | torch.dtype = "auto", attn_implementation: str | None = None,
               min_pixels: int | None = None, max_pixels: int | None = PAPER_MAX_PIXELS, device_map=None,
               quantization_config=None):
    """(model, processor) from a local folder or hub id; ``"tiny"``/``"small"`` build a fresh offline model."""
    if str(path_or_id) in SIZES:
        return tiny_model(str(path_or_id))
    kwargs = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    model = AutoModelForImageTextToText.from_pretrained(str(path_or_id), **kwargs)
    processor = AutoProcessor.from_pretrained(str(path_or_id))
    set_pixel_bounds(processor, min_pixels, max_pixels)
    return model, processor


def set_pixel_bounds(processor, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Clamp the image processor's resize bounds (the paper caps images at 262,144 pixels)."""
    ip = processor.image_processor
    size = dict(getattr(ip, "size", None) or {})
    for key, attr, value in (("shortest_edge", "min_pixels", min_pixels), ("longest_edge", "max_pixels", max_pixels)):
        if value is not None:
            size[key] = value
            if getattr(ip, attr, None) is not None:  # older processors read the attribute, newer ones ``size``
                setattr(ip, attr, value)
    ip.size = size


def latex_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: CROHME symbols, LaTeX structure tokens, task prompts and markers."""
    from .tasks import PROMPTS

    symbols = ([chr(c) for c in range(33, 127)] + list(CROHME_COMMANDS) + list(FRAC_LIKE) + list(BIG_OPERATORS)
               + list(ACCENTS) + list(RADICALS) + list(ENV_TOKENS) + list(SCRIPT_TOKENS) + [ROW_BREAK])
    lines = [" ".join(symbols)] * 20 + list(PROMPTS.values()) * 5 + list(TREE_WORDS) * 10
    lines += [f"{s}: {n}" for s in symbols for n in range(1, 4)]
    lines += [f"{s} ^ {{ 2 }} _ {{ i }} {{ {s} }}" for s in symbols]
    return lines


def build_tokenizer(vocab_size: int = 1024) -> Qwen2Tokenizer:
    """Byte-level BPE (Qwen2 pre-tokenizer) trained offline on ``latex_corpus()`` + the Qwen special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    qwen_split = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(qwen_split), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(latex_corpus(), trainer=trainer)
    state = bpe.model.__getstate__()
    import json

    model_state = json.loads(state)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]
    tok = Qwen2Tokenizer(vocab=model_state["vocab"], merges=merges, unk_token=None, bos_token=None,
                         eos_token="<|im_end|>", pad_token="<|endoftext|>", errors="replace",
                         add_prefix_space=False)
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    return tok


def build_processor(tokenizer=None, patch: int = 8, min_pixels: int = 64 * 64,
                    max_pixels: int = PAPER_MAX_PIXELS, paper_white: bool = True) -> ImageOnlyQwen2_5_VLProcessor:
    """Image-only Qwen2.5-VL processor with the Qwen2.5-VL chat template (the one TRL ships).

    ``paper_white=False`` normalises white paper to 0 (ink to -2) instead of using CLIP's mean and std: the patch
    embedding has no bias, so blank patches then enter the vision tower as zeros and only ink carries signal.
    """
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    norm = {} if paper_white else dict(image_mean=[1.0, 1.0, 1.0], image_std=[0.5, 0.5, 0.5])
    image_processor = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                                               **norm)
    return ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer or build_tokenizer(),
                                        chat_template=qwen2_5_vl_chat_template)


def tiny_config(tokenizer, size: str = "tiny", vision_init: float = 0.1) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config of the given ``SIZES`` preset whose special-token ids match ``tokenizer``."""
    s = SIZES[size]
    head_dim = s["hidden"] // s["heads"]
    half = head_dim // 2  # mrope sections (temporal, height, width) sum to head_dim/2, as 16/24/24 in the 3B
    t_sec, h_sec = s.get("mrope", (half // 4, (half - half // 4) // 2))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text = dict(vocab_size=len(tokenizer), hidden_size=s["hidden"], intermediate_size=s["inter"],
                num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                max_position_embeddings=4096, tie_word_embeddings=True,
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
               max_pixels: int = PAPER_MAX_PIXELS, paper_white: bool = False):
    """(model, processor): a random-weight Qwen2.5-VL of preset ``size`` built offline in seconds.

    ``vision_init`` is the std of the vision tower's weights: with the default 0.02 a tiny model's image
    features are too faint against the text and it learns one string for every image. ``paper_white=False``
    (see ``build_processor``) makes blank paper zero. ``max_pixels`` is the paper's cap, the bound
    ``load_model`` applies at inference, so training and inference resize alike.
    """
    if size not in SIZES:
        raise ValueError(f"unknown tiny model size {size!r}; choose from {sorted(SIZES)}")
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer, patch=SIZES[size]["patch"], min_pixels=min_pixels, max_pixels=max_pixels,
                                paper_white=paper_white)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(tokenizer, size, vision_init))
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    return model, processor


def save(model, processor, out: str | Path) -> Path:
    """Save model + processor so ``load_model(out)`` gets both back."""
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def num_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
