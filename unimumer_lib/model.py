"""Vision-language models: load any Qwen-VL checkpoint + processor, or build an offline tiny Qwen2.5-VL.

``load_model`` goes through the transformers Auto classes (image-text-to-text), so Qwen2-VL, Qwen2.5-VL and
Qwen3-VL checkpoints all work. ``tiny_model`` builds an architecture-faithful Qwen2.5-VL with random weights, a
byte-level BPE tokenizer trained on LaTeX, the Qwen2.5-VL chat template and an image-only processor (the stock
one insists on a video processor, which needs torchvision) -- all offline, in seconds.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch
from transformers import (AutoModelForImageTextToText, AutoProcessor, GenerationConfig, PretrainedConfig,
                          Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2Tokenizer,
                          Qwen2VLImageProcessorPil)

from .latex import ACCENTS, BIG_OPERATORS, ENV_TOKENS, FRAC_LIKE, RADICALS, ROW_BREAK, SCRIPT_TOKENS
from .files import atomic_write_text

# Two warnings every load of our checkpoints printed (the pink blocks of executed notebooks): config.json keeps the
# legacy ``rope_scaling`` key beside ``rope_parameters`` for transformers 4.5x and vLLM (``add_legacy_config``), and
# transformers 5 has no validator for the mrope type Qwen2.5-VL itself uses. Both are expected; they are dropped
# at their loggers, every other message of those loggers is kept.
KNOWN_NOISE = ("got `key=rope_scaling` in kwargs but hasn't set it as attribute",
               "Missing validation function in 'RotaryEmbeddingConfigMixin' for 'rope_type'='mrope'")


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in KNOWN_NOISE)


for _name in ("transformers.configuration_utils", "transformers.modeling_rope_utils"):
    logging.getLogger(_name).addFilter(_DropKnownNoise())

PAPER_MAX_PIXELS = 262_144  # Uni-MuMER: at most 512*512 pixels per image
MIN_PIXELS = 32 * 32  # LLaMA-Factory's default image_min_pixels
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                       "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
# The CROHME symbol set (the 101 classes of the CoMER/TAMER dictionary) beyond plain ASCII letters and digits.
CROHME_COMMANDS = ("\\Delta", "\\alpha", "\\beta", "\\cdot", "\\cdots", "\\cos", "\\div", "\\exists", "\\forall",
                   "\\gamma", "\\geq", "\\gt", "\\in", "\\infty", "\\lambda", "\\ldots", "\\leq", "\\log", "\\lt",
                   "\\mu", "\\neq", "\\phi", "\\pi", "\\pm", "\\prime", "\\rightarrow", "\\sigma", "\\sin",
                   "\\tan", "\\theta", "\\times", "\\{", "\\}", "\\limits", "\\mbox", "\\left", "\\right")

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


# Checkpoints shipped inside the package, loaded by name through the same ``from_pretrained`` as a hub checkpoint.
# ``tiny-base``: the tiny shape pretrained on synthetic handwriting (``unimumer_lib.pretrain``, its model card).
# ``glyph-base``: tiny-base continued on expressions composed from real CROHME-train glyphs, with every task's format
# (its model card; CC BY-NC-SA 3.0, as the glyphs).
SHIPPED = {name: Path(__file__).resolve().parent / "resources" / name for name in ("tiny-base", "glyph-base")}


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # "org/name" (or a legacy single name)
HUB_PROBE_TIMEOUT_S = 5.0  # one metadata request to the hub before any download (no retries)


class ModelNotFound(ValueError):
    """A ``--model`` that is no shipped name, no checkpoint folder and no reachable hub id (the message says which
    and why)."""


def check_model(path_or_id: str | Path, inference: bool = False, allow_untrained: bool = False) -> None:
    """Decide, before anything is loaded, what ``path_or_id`` names: a shipped name, a fresh random shape (refused
    for ``inference`` unless ``allow_untrained``), an existing checkpoint folder, or a hub id (cached, or answered
    by one request to the hub within ``HUB_PROBE_TIMEOUT_S``). A near miss of a shipped name or shape gets "did you
    mean"; anything else a message naming what was given and why it cannot be used. Raises ``ModelNotFound``."""
    import difflib
    import os

    name = str(path_or_id)
    if name in SHIPPED:
        return
    if name in SIZES:
        if inference and not allow_untrained:
            raise ModelNotFound(f"model {name!r} is a freshly initialised {name} shape with random weights: its "
                                f"output is noise. Use a trained checkpoint (e.g. {', '.join(SHIPPED)} or a run's "
                                f"final/ folder), or pass --allow-untrained to run it anyway")
        return
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise ModelNotFound(f"model {name!r}: {'a file' if not path.is_dir() else 'a folder without config.json'}"
                                f", not a checkpoint folder (a run's final/ or a saved model holds config.json)")
        return
    near = difflib.get_close_matches(name, [*SHIPPED, *SIZES], n=1, cutoff=0.75)
    if near:
        raise ModelNotFound(f"model {name!r}: no shipped model, folder or hub id of that name; did you mean "
                            f"{near[0]!r}?")
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or not HUB_ID.fullmatch(name):
        raise ModelNotFound(f"model {name!r}: no such folder (and not a hub id of the form org/name); shipped "
                            f"models: {', '.join(SHIPPED)}")
    from huggingface_hub import constants, model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # in the local hub cache
    if constants.HF_HUB_OFFLINE or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        raise ModelNotFound(f"model {name!r}: not in the local hub cache, and the hub is switched off "
                            f"(HF_HUB_OFFLINE); download it where there is a network, or give a checkpoint folder")
    try:
        model_info(name, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as err:  # no network, no such repo, no access: say which, once, without retries
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        why = ("no such model on the hub (or it is private: log in with `hf auth login`)"
               if isinstance(err, RepositoryNotFoundError) else
               "gated on the hub: accept its licence on its page and log in" if isinstance(err, GatedRepoError)
               else f"the hub at {constants.ENDPOINT} cannot be reached ({type(err).__name__}: "
                    f"{str(err).splitlines()[0][:120]}) and it is not in the local cache")
        raise ModelNotFound(f"model {name!r}: {why}") from None


def resolve_model_path(path_or_id: str | Path) -> str | Path:
    """A shipped checkpoint's folder for its name (``"tiny-base"``); an existing folder as an absolute path (the
    origin the model records); a hub id unchanged."""
    if str(path_or_id) in SHIPPED:
        return SHIPPED[str(path_or_id)]
    return Path(os.path.abspath(path_or_id)) if Path(path_or_id).is_dir() else path_or_id


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video half, so it works without torchvision."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class _ImageOnlyProcessorKey(PretrainedConfig):
    """Registry key only: lets AutoProcessor find the class above by name without overriding Qwen2.5-VL's."""

    model_type = "unimumer_image_only_qwen2_5_vl"


AutoProcessor.register(_ImageOnlyProcessorKey, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)


def load_model(path_or_id: str | Path, dtype: str | torch.dtype = "auto", attn_implementation: str | None = None,
               min_pixels: int | None = None, max_pixels: int | None = None, device_map=None,
               quantization_config=None):
    """(model, processor) from a local folder or hub id; ``"tiny"``/``"small"`` build a fresh offline model and
    a ``SHIPPED`` name (``"tiny-base"``) loads the checkpoint that comes with the package.

    The processor is resolved first, so a missing dependency fails before gigabytes of weights are read; its
    pixel bounds stay the checkpoint's unless given (the paper's 262,144-pixel cap is applied to the images
    themselves by :func:`fit_pixels`, as LLaMA-Factory does). The
    checkpoint's sampling defaults (the hub ships repetition_penalty 1.05, do_sample, top_k 1) are replaced by
    neutral ones: decoding settings are always passed explicitly (``infer.decoding``).
    """
    if str(path_or_id) in SIZES:
        return tiny_model(str(path_or_id))
    check_model(path_or_id)
    path_or_id = resolve_model_path(path_or_id)
    processor = load_processor(path_or_id, min_pixels, max_pixels)
    kwargs = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    model = AutoModelForImageTextToText.from_pretrained(str(path_or_id), **kwargs)
    model.generation_config = neutral_generation_config(processor.tokenizer)
    return model, processor


def stop_token_ids(tokenizer) -> list[int]:
    """Generation stops on ``<|im_end|>`` (end of the assistant turn) or ``<|endoftext|>``."""
    return [tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]


def neutral_generation_config(tokenizer) -> GenerationConfig:
    """Greedy, no repetition penalty, Qwen stop tokens: what a saved checkpoint carries and generate falls back on."""
    return GenerationConfig(do_sample=False, repetition_penalty=1.0, eos_token_id=stop_token_ids(tokenizer),
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.pad_token_id)


def load_processor(path_or_id: str | Path, min_pixels: int | None = None, max_pixels: int | None = None):
    """The checkpoint's processor; the image-only one when the stock processor cannot be built (its video half
    needs torchvision) or the folder only yields a bare tokenizer."""
    path_or_id = resolve_model_path(path_or_id)
    try:
        processor = AutoProcessor.from_pretrained(str(path_or_id))
    except ImportError:
        processor = None
    if processor is None or not hasattr(processor, "image_processor"):
        processor = image_only_processor(path_or_id)
    set_pixel_bounds(processor, min_pixels, max_pixels)
    processor.input_spec = read_input_spec(path_or_id)
    return processor


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


def attention_implementation(cuda: bool | None = None) -> str:
    """The attention kernels for a real model: ``flash_attention_2`` on a GPU where the ``flash-attn`` package
    imports (Qwen2.5-VL's vision tower otherwise loops over its windows, one sdpa call per window per layer),
    else ``sdpa``. The choice is recorded in ``run_config.json`` / the prediction run file."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    return "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") is not None else "sdpa"


SIZINGS = ("paper", "official")  # paper: fit_pixels (LLaMA-Factory, the 262,144 cap); official: official_size
OFFICIAL_FACTOR, OFFICIAL_MIN_PIXELS, OFFICIAL_MAX_PIXELS = 28, 4 * 28 * 28, 16384 * 28 * 28  # qwen_vl_utils'


def official_size(image):
    """The official inference script's sizing (``qwen_vl_utils``' ``smart_resize``): sides rounded to multiples
    of 28, the area brought into 3,136..12,845,056 pixels (no 262,144 cap), on white paper."""
    import math

    image = on_white(image)
    f, h, w = OFFICIAL_FACTOR, image.height, image.width
    hb, wb = max(f, round(h / f) * f), max(f, round(w / f) * f)
    if hb * wb > OFFICIAL_MAX_PIXELS:
        beta = math.sqrt(h * w / OFFICIAL_MAX_PIXELS)
        hb, wb = max(f, math.floor(h / beta / f) * f), max(f, math.floor(w / beta / f) * f)
    elif hb * wb < OFFICIAL_MIN_PIXELS:
        beta = math.sqrt(OFFICIAL_MIN_PIXELS / (h * w))
        hb, wb = math.ceil(h * beta / f) * f, math.ceil(w * beta / f) * f
    return image if (wb, hb) == image.size else image.resize((wb, hb), resample=3)  # bicubic, as PIL's default


def sized(image, sizing: str = "paper"):
    """An image brought to what the model sees: ``fit_pixels`` (paper) or ``official_size`` (official)."""
    if sizing not in SIZINGS:
        raise ValueError(f"sizing {sizing!r}: choose one of {', '.join(SIZINGS)}")
    return official_size(image) if sizing == "official" else fit_pixels(image)


def flash_attention() -> dict:
    """``{"attn_implementation": "flash_attention_2"}`` where it runs (``attention_implementation``), else {}:
    transformers' own default is sdpa."""
    choice = attention_implementation()
    return {"attn_implementation": choice} if choice == "flash_attention_2" else {}


def on_white(image):
    """RGB, a transparent background composited onto white paper (what a canvas or a drawing program exports:
    black ink, alpha 0 elsewhere; ``convert("RGB")`` alone would turn that paper black)."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, image).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


INPUT_SPEC_FILE = "unimumer_input.json"  # beside a checkpoint: the input it was trained on ({"height": px, "ink"})
DARK_INK = "dark-on-light"  # the ink polarity every renderer of this project writes (black strokes, white paper)


def read_input_spec(path_or_id: str | Path) -> dict | None:
    """The input a checkpoint was trained on (its ``INPUT_SPEC_FILE``), None when it records none."""
    from transformers.utils import cached_file

    found = cached_file(str(resolve_model_path(path_or_id)), INPUT_SPEC_FILE,
                        _raise_exceptions_for_missing_entries=False)
    return json.loads(Path(found).read_text(encoding="utf-8")) if found else None


def input_spec_of_images(paths: list, limit: int = 64) -> dict | None:  # paths or PIL images
    """``{"height": h, "ink": DARK_INK}`` when the first ``limit`` training images all share height ``h`` and have
    light paper (prepared or synthetic data), else None (images of many sizes: nothing to bring them to)."""
    from contextlib import nullcontext

    from PIL import Image

    heights, light = set(), True
    for path in list(paths)[:limit]:
        with Image.open(path) if isinstance(path, (str, Path)) else nullcontext(path) as im:
            heights.add(im.height)
            light = light and not _dark_paper(im)
    return {"height": heights.pop(), "ink": DARK_INK} if len(heights) == 1 and light else None


def _dark_paper(image) -> bool:
    """Whether the image's border (its paper) is darker than mid-grey."""
    import numpy as np

    a = np.asarray(on_white(image).convert("L"), dtype=np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return float(np.median(border)) < 128


def to_model_input(image, spec: dict | None):
    """``image`` brought to what a checkpoint with input ``spec`` was trained on: RGB on white, light paper (a dark
    background is inverted), ``spec["height"]`` pixels high. An image laid out as the renderer lays ink out (a
    margin of about height/16 around it) is only scaled; one with wider margins is first cropped to its ink plus
    that margin. Scaling averages pixels (box filter): a sharper filter rings, and the tiny base reads 40 held-out
    expressions rendered at 128 px at 27.5 % box-scaled, 15.0 % Lanczos-scaled. Unchanged (RGB on white) without a
    spec."""
    import numpy as np
    from PIL import Image, ImageOps

    from .render import MAX_ASPECT

    image = on_white(image)
    if not spec or not spec.get("height"):
        return image
    if _dark_paper(image):
        image = ImageOps.invert(image)
    height = int(spec["height"])
    pad = max(1, round(height / 16))
    ys, xs = np.nonzero(np.asarray(image.convert("L")) < 200)
    if len(xs):
        scale = height / image.height
        margins = (ys.min() * scale, height - (ys.max() + 1) * scale, xs.min() * scale,
                   (image.width - xs.max() - 1) * scale)
        if max(margins) > 2 * pad:  # wide margins: crop to the ink and the renderer's margin
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            box_h = max(y1 - y0, (x1 - x0) / MAX_ASPECT)
            margin = pad * box_h / (height - 2 * pad)
            top = (y0 + y1) / 2 - box_h / 2 - margin
            box = (round(x0 - margin), round(top), round(x1 + margin), round(top + box_h + 2 * margin))
            canvas = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), "white")
            canvas.paste(image, (-box[0], -box[1]))
            image = canvas
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.BOX)


def fit_pixels(image, max_pixels: int = PAPER_MAX_PIXELS, min_pixels: int = MIN_PIXELS):
    """Resize a PIL image the way LLaMA-Factory's Qwen2-VL plugin does before the image processor sees it
    (Uni-MuMER's training path): scale into [min_pixels, max_pixels] (int-truncated sides), each side at least
    28, aspect ratio at most 200; RGB. The processor then only rounds the sides to its patch grid."""
    import math

    for bound, outside in ((max_pixels, lambda a: a > max_pixels), (min_pixels, lambda a: a < min_pixels)):
        if outside(image.width * image.height):
            scale = math.sqrt(bound / (image.width * image.height))
            image = image.resize((int(image.width * scale), int(image.height * scale)))
    if min(image.width, image.height) < 28:
        image = image.resize((max(image.width, 28), max(image.height, 28)))
    if image.width / image.height > 200:
        image = image.resize((image.height * 180, image.height))
    if image.height / image.width > 200:
        image = image.resize((image.width, image.width * 180))
    return on_white(image)


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
    from .taskspec import PROMPTS, vocabulary

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
        src = (t_src if ".layers." in key else v_src)[int(m.group(2))]
        renamed[key] = state[f"{m.group(1)}{src}{m.group(3)}"].clone()
        first = (t_src if ".layers." in key else v_src).index(src) == int(m.group(2))
        if not first and re.search(r"\.(o_proj|attn\.proj|down_proj)\.(weight|bias)$", key):
            renamed[key].zero_()
    grown.load_state_dict(renamed, strict=True)
    grown.generation_config = copy.deepcopy(model.generation_config)
    grown.config._name_or_path = cfg._name_or_path
    return grown


def save(model, processor, out: str | Path) -> Path:
    """Save model + processor so ``load_model(out)`` gets both back, and transformers 4.5x / vLLM can read it."""
    out = Path(out)
    model.save_pretrained(out)
    save_processor(processor, out)
    add_legacy_config(out)
    return out


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


# Text-model fields transformers < 4.53 (and vLLM on it) read from the top level of a Qwen2.5-VL config.json.
LEGACY_TEXT_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                    "num_key_value_heads", "vocab_size", "rms_norm_eps", "max_position_embeddings", "hidden_act",
                    "attention_dropout", "initializer_range", "sliding_window", "use_sliding_window",
                    "max_window_layers", "bos_token_id", "eos_token_id")


def add_legacy_config(out: str | Path) -> None:
    """Copy the nested ``text_config`` fields to the top level of ``config.json`` (the pre-5 flat layout)."""
    path = Path(out) / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    text = cfg.get("text_config") or {}
    for key in LEGACY_TEXT_KEYS:
        if key in text:
            cfg.setdefault(key, text[key])
    rope = text.get("rope_parameters") or {}
    if "mrope_section" in rope:
        cfg.setdefault("rope_theta", rope.get("rope_theta"))
        cfg.setdefault("rope_scaling", {"type": "mrope", "mrope_section": rope["mrope_section"]})
        # transformers 4.5x builds the text model from text_config alone: without these it loses the mrope
        # sections (forward raises TypeError) and unties the output layer (which then loads random).
        text.setdefault("rope_theta", rope.get("rope_theta"))
        text.setdefault("rope_scaling", {"type": "mrope", "rope_type": "default",
                                         "mrope_section": rope["mrope_section"]})
    if text and "tie_word_embeddings" in cfg:
        text.setdefault("tie_word_embeddings", cfg["tie_word_embeddings"])
    if "dtype" in cfg:
        cfg.setdefault("torch_dtype", cfg["dtype"])
    atomic_write_text(path, json.dumps(cfg, indent=2) + "\n")


def model_identity(model) -> dict:
    """What identifies the weights a run uses (recorded by ``train`` and ``infer`` to tell runs apart): a
    folder's weights files (name, size, mtime), a hub id or built-in name as given, a loaded model's origin and
    size."""
    if not isinstance(model, (str, Path)):
        origin = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        return {"loaded": str(origin), "parameters": num_parameters(model),
                **({"files": _weights_stats(Path(origin))} if origin and Path(origin).is_dir() else {})}
    path = Path(model)
    return {"path": str(path.resolve()), "files": _weights_stats(path)} if path.is_dir() else {"id": str(model)}


def _weights_stats(folder: Path) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir())
            if p.suffix in (".safetensors", ".bin") and p.is_file()]


def num_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
