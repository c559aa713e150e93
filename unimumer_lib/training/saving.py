"""Saving a trained model: the final folder (weights, processor, the input it was trained on), without the tied
output layer's duplicate and, for bf16 runs, in bf16 as the hub checkpoint is.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.files import atomic_write_text, respect_umask


def save_final(trainer, processor, final: Path) -> None:
    """Weights through the Trainer (every rank takes part: ZeRO gathers shards); processor, legacy files and a
    neutral generation config from rank 0 only."""
    from ..models.model import add_legacy_config
    from ..models.family import model_family
    from ..models.processor import save_processor

    model = trainer.model
    if hasattr(model, "generation_config"):
        model.generation_config = model_family(model).generation_config(processor.tokenizer)
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        drop_tied_duplicate(final)
        if _saves_bf16(trainer):  # fp32 master weights of a bf16 run: final/ in bf16, as the released checkpoints
            weights_to_bf16(final)
        save_processor(processor, final)
        if (final / "config.json").exists():
            add_legacy_config(final)
        respect_umask(final)


TIED_OUTPUT = "lm_head.weight"


def drop_tied_duplicate(folder: Path) -> bool:
    """Remove ``lm_head.weight`` from a saved model whose config ties it to the input embeddings: DeepSpeed's
    gathered ZeRO-2 state dict holds both as separate tensors, so the file carries a second copy (~0.6 GB at 3B)
    that a tied model never reads. Returns True when a copy was removed (single-file checkpoints)."""
    from safetensors import safe_open

    path = Path(folder) / "model.safetensors"
    if not path.exists():
        return False
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    if not config.get("tie_word_embeddings", (config.get("text_config") or {}).get("tie_word_embeddings")):
        return False
    with safe_open(str(path), "pt") as f:
        if TIED_OUTPUT not in f.keys():
            return False
    _rewrite_weights(path, lambda tensors: {k: t for k, t in tensors.items() if k != TIED_OUTPUT})
    return True


def weights_to_bf16(folder: Path) -> None:
    """Rewrite a saved model's fp32 weights files in bf16 (the live model keeps its fp32 master weights) and
    record ``dtype: bfloat16`` in its config, so loaders with dtype "auto" run it in bf16."""
    import torch

    folder = Path(folder)
    for path in sorted(folder.glob("*.safetensors")):
        _rewrite_weights(path, lambda tensors: {k: t.to(torch.bfloat16) if t.dtype == torch.float32 else t
                                                for k, t in tensors.items()})
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "bfloat16"
    for sub in ("text_config", "vision_config"):
        if isinstance(config.get(sub), dict) and "dtype" in config[sub]:
            config[sub]["dtype"] = "bfloat16"
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")


def _rewrite_weights(path: Path, transform) -> None:
    """Replace a safetensors file, atomically, by ``transform({name: tensor})``, keeping its metadata."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..core.files import atomic_write_with

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = transform({k: f.get_tensor(k) for k in f.keys()})
    atomic_write_with(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _saves_bf16(trainer) -> bool:
    """A bf16 run without DeepSpeed or peft keeps fp32 master weights: round them once, at the end, so final/
    is half the size and ``infer`` (dtype "auto") runs it in bf16. (DeepSpeed saves its bf16 module; peft saves
    adapters only.)"""
    import torch

    model = trainer.model
    return bool(trainer.args.bf16 and not trainer.args.deepspeed and not hasattr(model, "peft_config")
                and getattr(model, "dtype", None) == torch.float32)
