"""Vision-language models: load a checkpoint + processor by shipped name, folder or hub id, and save one.

``load_model`` goes through the transformers Auto classes (image-text-to-text) and the checkpoint's model family
(``family``: Qwen2.5-VL and Qwen2-VL registered; ``register_family`` adds one); ``check_model`` decides what a
name means before anything is loaded. The tiny offline models are ``tiny``, their tokenizer and processor
``processor``, image sizing ``images``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from ..core.files import atomic_write_text
from ..core.paths import RESOURCES
from .images import INPUT_SPEC_FILE, set_pixel_bounds
from .family import DEFAULT_FAMILY, checkpoint_family, model_family, get_family
from .processor import save_processor
from .tiny import SIZES, tiny_model


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

# Checkpoints shipped inside the package, loaded by name through the same ``from_pretrained`` as a hub checkpoint.
# ``tiny-base``: the tiny shape pretrained on synthetic handwriting (``training.pretrain``, its model card).
# ``glyph-base``: tiny-base continued on expressions composed from real CROHME-train glyphs, with every task's format
# (its model card; CC BY-NC-SA 3.0, as the glyphs).
SHIPPED = {name: RESOURCES / name for name in ("tiny-base", "glyph-base")}
HUB_ID_PATTERN = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # "org/name" (or a legacy single name)
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
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or not HUB_ID_PATTERN.fullmatch(name):
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
    model.generation_config = model_family(model).generation_config(processor.tokenizer)
    return model, processor


def load_processor(path_or_id: str | Path, min_pixels: int | None = None, max_pixels: int | None = None):
    """The checkpoint's processor, marked with its model family; the family's own (Qwen: the image-only one) when
    the stock processor cannot be built (its video half needs torchvision) or the folder only yields a bare
    tokenizer."""
    path_or_id = resolve_model_path(path_or_id)
    try:
        family = checkpoint_family(path_or_id)
    except OSError:  # no config.json (a LoRA adapter folder): its base is not read here
        family = get_family(DEFAULT_FAMILY)
    try:
        processor = AutoProcessor.from_pretrained(str(path_or_id))
    except ImportError:
        processor = None
    if (processor is None or not hasattr(processor, "image_processor")) and family.processor is not None:
        processor = family.processor(path_or_id)
    if processor is None or not hasattr(processor, "image_processor"):
        raise ValueError(f"{path_or_id}: no image processor could be built for model family {family.name!r}")
    family.mark(processor, processor.tokenizer)
    set_pixel_bounds(processor, min_pixels, max_pixels)
    processor.input_spec = read_input_spec(path_or_id)
    return processor


def attention_implementation(cuda: bool | None = None) -> str:
    """The attention kernels for a real model: ``flash_attention_2`` on a GPU where the ``flash-attn`` package
    imports (Qwen2.5-VL's vision tower otherwise loops over its windows, one sdpa call per window per layer),
    else ``sdpa``. The choice is recorded in ``run_config.json`` / the prediction run file."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    return "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") is not None else "sdpa"


def flash_attention() -> dict:
    """``{"attn_implementation": "flash_attention_2"}`` where it runs (``attention_implementation``), else {}:
    transformers' own default is sdpa."""
    choice = attention_implementation()
    return {"attn_implementation": choice} if choice == "flash_attention_2" else {}


def read_input_spec(path_or_id: str | Path) -> dict | None:
    """The input a checkpoint was trained on (its ``INPUT_SPEC_FILE``), None when it records none."""
    from transformers.utils import cached_file

    found = cached_file(str(resolve_model_path(path_or_id)), INPUT_SPEC_FILE,
                        _raise_exceptions_for_missing_entries=False)
    return json.loads(Path(found).read_text(encoding="utf-8")) if found else None


def save(model, processor, out: str | Path) -> Path:
    """Save model + processor so ``load_model(out)`` gets both back, and transformers 4.5x / vLLM can read it."""
    out = Path(out)
    model.save_pretrained(out)
    save_processor(processor, out)
    add_legacy_config(out)
    return out


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
