"""Tokenizer and processor of the Qwen2.5-VL models here: the image-only processor (the stock one needs
torchvision for its video half), the chat template, stop tokens and neutral generation settings, and the offline
byte-level BPE tokenizer trained on LaTeX that the tiny models use; saving a processor so that transformers 4.5x
and vLLM read it too.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import (AutoProcessor, GenerationConfig, PretrainedConfig,
                          Qwen2_5_VLProcessor, Qwen2Tokenizer,
                          Qwen2VLImageProcessorPil)

from ..core.files import atomic_write_text
from ..latex.tokens import ACCENTS, BIG_OPERATORS, ENV_TOKENS, FRAC_LIKE, RADICALS, ROW_BREAK, SCRIPT_TOKENS
from .images import INPUT_SPEC_FILE, PAPER_MAX_PIXELS


QWEN_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")  # the Qwen families' (``family.ModelFamily.stop_tokens``)
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                       "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
# The CROHME symbol set (the 101 classes of the CoMER/TAMER dictionary) beyond plain ASCII letters and digits.
CROHME_COMMANDS = ("\\Delta", "\\alpha", "\\beta", "\\cdot", "\\cdots", "\\cos", "\\div", "\\exists", "\\forall",
                   "\\gamma", "\\geq", "\\gt", "\\in", "\\infty", "\\lambda", "\\ldots", "\\leq", "\\log", "\\lt",
                   "\\mu", "\\neq", "\\phi", "\\pi", "\\pm", "\\prime", "\\rightarrow", "\\sigma", "\\sin",
                   "\\tan", "\\theta", "\\times", "\\{", "\\}", "\\limits", "\\mbox", "\\left", "\\right")


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video half, so it works without torchvision."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _ImageOnlyProcessorKey(PretrainedConfig):
    """Registry key only: lets AutoProcessor find the class above by name without overriding Qwen2.5-VL's."""

    model_type = "unimumer_image_only_qwen2_5_vl"


AutoProcessor.register(_ImageOnlyProcessorKey, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)


def stop_token_ids(tokenizer, tokens: tuple[str, ...] = QWEN_STOP_TOKENS) -> list[int]:
    """The ids of the stop ``tokens`` (Qwen: ``<|im_end|>``, the end of the assistant turn, or ``<|endoftext|>``);
    a token the tokenizer lacks is an error naming it."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    unk = getattr(tokenizer, "unk_token_id", None)
    missing = [t for t, i in zip(tokens, ids) if i is None or (unk is not None and i == unk)]
    if missing:
        raise ValueError(f"the tokenizer has no stop token {missing[0]!r}")
    return ids


def neutral_generation_config(tokenizer, stop_tokens: tuple[str, ...] = QWEN_STOP_TOKENS) -> GenerationConfig:
    """Greedy, no repetition penalty, the family's stop tokens: what a saved checkpoint carries and generate falls
    back on."""
    return GenerationConfig(do_sample=False, repetition_penalty=1.0,
                            eos_token_id=stop_token_ids(tokenizer, stop_tokens),
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.pad_token_id)


def image_only_processor(path_or_id: str | Path) -> ImageOnlyQwen2_5_VLProcessor:
    """Image processor + tokenizer + chat template of a checkpoint, assembled without the video processor."""
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path_or_id))
    image_processor = AutoImageProcessor.from_pretrained(str(path_or_id))
    return ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=read_chat_template(path_or_id) or tokenizer.chat_template)


def read_chat_template(path_or_id: str | Path) -> str | None:
    """The chat template a checkpoint ships in ``chat_template.jinja`` or ``chat_template.json`` (None if neither)."""
    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        found = cached_file(str(path_or_id), name, _raise_exceptions_for_missing_entries=False)
        if found:
            text = Path(found).read_text(encoding="utf-8")
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    return None


def latex_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: CROHME symbols, LaTeX structure tokens, task prompts and markers."""
    from ..tasks.spec import PROMPTS, vocabulary

    symbols = ([chr(c) for c in range(33, 127)] + list(CROHME_COMMANDS) + list(FRAC_LIKE) + list(BIG_OPERATORS)
               + list(ACCENTS) + list(RADICALS) + list(ENV_TOKENS) + list(SCRIPT_TOKENS) + [ROW_BREAK])
    lines = [" ".join(symbols)] * 20 + list(PROMPTS.values()) * 5 + list(vocabulary()) * 10
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
                    max_pixels: int = PAPER_MAX_PIXELS, clip_norm: bool = True) -> ImageOnlyQwen2_5_VLProcessor:
    """Image-only Qwen2.5-VL processor with the Qwen2.5-VL chat template (the one TRL ships).

    ``clip_norm=False`` normalises white paper to 0 (ink to -2) instead of using CLIP's mean and std: the patch
    embedding has no bias, so blank patches then enter the vision tower as zeros and only ink carries signal.
    """
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    norm = {} if clip_norm else dict(image_mean=[1.0, 1.0, 1.0], image_std=[0.5, 0.5, 0.5])
    image_processor = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
                                               **norm)
    return ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer or build_tokenizer(),
                                        chat_template=qwen2_5_vl_chat_template)


def save_processor(processor, out: str | Path) -> None:
    """``processor.save_pretrained`` plus the files transformers 4.5x and vLLM read instead of
    ``processor_config.json``/``chat_template.jinja``: ``preprocessor_config.json`` and ``chat_template.json``."""
    out = Path(out)
    processor.save_pretrained(out)
    ip = processor.image_processor
    size = dict(getattr(ip, "size", None) or {})
    legacy = {**ip.to_dict(), "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
              "min_pixels": size.get("shortest_edge"), "max_pixels": size.get("longest_edge")}
    legacy.pop("_processor_class", None)
    atomic_write_text(out / "preprocessor_config.json", json.dumps(legacy, indent=2) + "\n")
    if processor.chat_template:
        atomic_write_text(out / "chat_template.json", json.dumps({"chat_template": processor.chat_template}) + "\n")
    legacy_tokenizer_config(out)
    if getattr(processor, "input_spec", None):
        atomic_write_text(out / INPUT_SPEC_FILE, json.dumps(processor.input_spec) + "\n")


def legacy_tokenizer_config(out: Path) -> None:
    """``tokenizer_config.json`` that transformers 4.5x also reads: 5.x saves the special tokens as a list under
    ``extra_special_tokens``, which 4.5x takes for a name -> token mapping and fails on; the same list under
    ``additional_special_tokens`` is read alike by both (same ids, same special tokens)."""
    path = out / "tokenizer_config.json"
    if not path.exists():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(cfg.get("extra_special_tokens"), list):
        cfg["additional_special_tokens"] = cfg.pop("extra_special_tokens")
        atomic_write_text(path, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
