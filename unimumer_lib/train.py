"""Supervised fine-tuning of a Qwen-VL model on the task mixture with TRL's ``SFTTrainer``.

Input: LLaMA-Factory sharegpt JSON files (``unimumer_lib.tasks``), converted to TRL's conversational vision format
``{"images": [...], "messages": [{"role", "content": [...]}]}``; images are decoded lazily by ``datasets``.
Loss on assistant tokens only. Full fine-tuning (the paper) or LoRA/QLoRA through peft. Presets carry the
paper's settings, a single-GPU LoRA recipe and a CPU smoke recipe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .records import (CONTENT_KEY, IMAGE_TOKEN, ROLE_ASSISTANT, ROLE_KEY, ROLE_SYSTEM, ROLE_USER, SHAREGPT_IMAGES,
                      SHAREGPT_MESSAGES, read_sharegpt)

LOSS_HISTORY_FILE = "loss_history.json"
FINAL_DIR = "final"
_ROLES = {ROLE_USER: "user", ROLE_ASSISTANT: "assistant", ROLE_SYSTEM: "system"}
PAPER_EFFECTIVE_BATCH = 512

# Each preset: SFTConfig fields plus "lora" (peft LoraConfig kwargs or None) and "quantize" (4-bit QLoRA).
PRESETS: dict[str, dict] = {
    "paper": dict(learning_rate=1e-5, lr_scheduler_type="cosine", warmup_steps=0.1, num_train_epochs=1,
                  per_device_train_batch_size=4, effective_batch=PAPER_EFFECTIVE_BATCH, bf16=True, max_length=2048,
                  gradient_checkpointing=True, weight_decay=0.0, save_steps=500, logging_steps=10,
                  lora=None, quantize=False),
    "single-gpu-lora": dict(learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.03, num_train_epochs=1,
                            per_device_train_batch_size=4, effective_batch=64, bf16=True, max_length=2048,
                            gradient_checkpointing=True, save_steps=500, logging_steps=10,
                            lora=dict(r=64, lora_alpha=128, lora_dropout=0.05, target_modules="all-linear"),
                            quantize=False),
    "single-gpu-qlora": dict(learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.03, num_train_epochs=1,
                             per_device_train_batch_size=4, effective_batch=64, bf16=True, max_length=2048,
                             gradient_checkpointing=True, save_steps=500, logging_steps=10,
                             lora=dict(r=64, lora_alpha=128, lora_dropout=0.05, target_modules="all-linear"),
                             quantize=True),
    # CPU: bf16 and gradient checkpointing off (TRL's defaults fail or double the step time there); a tiny
    # random model needs a far larger learning rate than a pretrained one.
    "cpu-smoke": dict(learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=0.05, num_train_epochs=1,
                      per_device_train_batch_size=8, effective_batch=8, bf16=False, max_length=None,
                      gradient_checkpointing=False, use_cpu=True, save_steps=50, logging_steps=5,
                      lora=None, quantize=False),
}


def resolve_image(path: str, base: Path) -> str:
    """An image path of a sharegpt row: absolute, else relative to the JSON file's folder, else to the cwd."""
    p = Path(path)
    if p.is_absolute() or not (base / p).exists():
        return str(p)
    return str(base / p)


def sharegpt_to_trl(row: dict, base: Path | None = None) -> dict:
    """One LLaMA-Factory sharegpt row -> TRL's ``{"images": [paths], "messages": [...]}`` with image blocks
    placed where the ``<image>`` placeholders were."""
    base = base or Path(".")
    messages = []
    for m in row[SHAREGPT_MESSAGES]:
        parts = m[CONTENT_KEY].split(IMAGE_TOKEN)
        content = []
        for i, text in enumerate(parts):
            if i:
                content.append({"type": "image"})
            if text:
                content.append({"type": "text", "text": text})
        messages.append({"role": _ROLES[m[ROLE_KEY]], "content": content})
    return {"images": [resolve_image(p, base) for p in row.get(SHAREGPT_IMAGES, [])], "messages": messages}


def load_sharegpt_dataset(paths, ratios: dict | None = None, seed: int = 0, limit: int | None = None):
    """A ``datasets.Dataset`` in TRL vision format from one or more sharegpt JSON files.

    ``ratios`` maps a file stem (e.g. ``"tree"``) to the fraction of its rows to keep (sampled with ``seed``).
    Images stay paths until a batch is built (``Image`` feature), so million-row mixtures fit in memory.
    """
    import random

    from datasets import Dataset, Image, List

    rows = []
    for path in ([paths] if isinstance(paths, (str, Path)) else paths):
        path = Path(path)
        part = [sharegpt_to_trl(r, path.parent) for r in read_sharegpt(path)]
        ratio = (ratios or {}).get(path.stem, 1.0)
        if ratio < 1.0:
            part = random.Random(seed).sample(part, round(len(part) * ratio))
        rows += part
    if not rows:
        raise ValueError(f"no training records in {paths}")
    random.Random(seed).shuffle(rows)
    if limit is not None:
        rows = rows[:limit]
    ds = Dataset.from_list(rows)
    return ds.cast_column("images", List(Image()))


def task_of(example: dict) -> str:
    """The task of a TRL-format example, recognised by its published user prompt ("other" if none matches)."""
    from .tasks import PROMPTS

    text = "".join(c.get("text") or "" for c in example["messages"][0]["content"])
    return next((task for task, prompt in PROMPTS.items() if text.startswith(prompt)), "other")


def mixture_counts(dataset) -> dict[str, int]:
    """{task: examples} of a training dataset (the mixture actually trained on)."""
    from collections import Counter

    return dict(Counter(task_of({"messages": m}) for m in dataset["messages"]))


def task_files(data_dir: str | Path) -> list[Path]:
    """The ``<task>.json`` sharegpt files of a task folder (``dataset_info.json`` excluded)."""
    from .tasks import DATASET_INFO

    files = sorted(p for p in Path(data_dir).glob("*.json") if p.name != DATASET_INFO)
    if not files:
        raise FileNotFoundError(f"{data_dir}: no <task>.json files")
    return files


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_config(preset: str, out_dir: str | Path, devices: int | None = None, **overrides):
    """SFTConfig for a preset; ``overrides`` replace any field (``max_steps``, ``learning_rate``, ...).

    The effective batch (per device x accumulation x ``devices``, default $WORLD_SIZE) is kept at the preset's value.
    """
    from trl import SFTConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = {k: v for k, v in PRESETS[preset].items() if k not in ("lora", "quantize")}
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    effective = cfg.pop("effective_batch")
    if "gradient_accumulation_steps" not in overrides:
        cfg["gradient_accumulation_steps"] = max(1, effective // (cfg["per_device_train_batch_size"] * (devices or world_size())))
    cfg.setdefault("gradient_checkpointing_kwargs", {"use_reentrant": False})
    cfg.setdefault("logging_first_step", True)
    return SFTConfig(output_dir=str(out_dir), assistant_only_loss=True, report_to="none", save_strategy="steps",
                     remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}, **cfg)


def lora_config(preset: str, **overrides):
    """peft LoraConfig of a preset (None for full fine-tuning)."""
    spec = PRESETS[preset]["lora"]
    if spec is None and not overrides:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **{**(spec or {}), **overrides})


def _load(model_path, preset: str):
    from .model import load_model, tiny_model

    if str(model_path) in ("tiny", "small"):
        return tiny_model(str(model_path))
    kwargs = {}
    if PRESETS[preset]["quantize"]:
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    dtype = "bfloat16" if PRESETS[preset].get("bf16") else "float32"
    return load_model(model_path, dtype=dtype, **kwargs)


def train(train_json, model_path="tiny", preset: str = "cpu-smoke", out_dir: str | Path = "runs/sft",
          max_steps: int | None = None, resume: bool | str = False, ratios: dict | None = None, seed: int = 0,
          model=None, processor=None, lora: dict | None = None, freeze_vision: bool = False, callbacks=None,
          **overrides) -> dict:
    """Fine-tune and save the final model + processor to ``out_dir/final``; returns a summary dict.

    ``train_json``: sharegpt JSON path(s) or an already built TRL-format Dataset. ``model``/``processor``
    replace loading ``model_path``. ``resume``: True resumes from the last checkpoint in ``out_dir``, a path
    from that checkpoint. ``lora``: LoraConfig kwargs overriding the preset's (``{}`` turns LoRA on with defaults).
    """
    import time

    from trl import SFTTrainer

    out_dir = Path(out_dir)
    dataset = train_json if hasattr(train_json, "column_names") else load_sharegpt_dataset(train_json, ratios, seed)
    checkpoint = find_checkpoint(out_dir, resume)
    if model is None:
        model, processor = _load(model_path, preset)
    if checkpoint and not (checkpoint / "adapter_config.json").exists():
        # The Trainer restores optimizer/scheduler/RNG but loads Qwen-VL weights with the wrong key layout
        # (checkpoints use the original names), silently keeping the fresh weights; load them ourselves.
        model = type(model).from_pretrained(str(checkpoint), dtype=model.dtype)
    if freeze_vision:
        for p in model.model.visual.parameters():
            p.requires_grad = False
    if max_steps and max_steps > 0 and "logging_steps" not in overrides:  # enough points for a loss curve
        overrides["logging_steps"] = max(1, min(PRESETS[preset]["logging_steps"], max_steps // 10))
    args = make_config(preset, out_dir, max_steps=max_steps if max_steps is not None else -1, seed=seed,
                       data_seed=seed, **overrides)
    peft_config = lora_config(preset, **lora) if lora is not None else lora_config(preset)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         peft_config=peft_config, callbacks=callbacks)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    wall = time.perf_counter() - start
    final = out_dir / FINAL_DIR
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    history = [h for h in trainer.state.log_history if "loss" in h]
    (out_dir / LOSS_HISTORY_FILE).write_text(json.dumps(trainer.state.log_history, indent=1), encoding="utf-8")
    return {"final_dir": str(final), "global_step": trainer.state.global_step, "train_loss": result.training_loss,
            "last_loss": history[-1]["loss"] if history else None, "wall_s": wall, "records": len(dataset),
            "trainer": trainer, "model": trainer.model, "processor": processor}


def find_checkpoint(out_dir: Path, resume: bool | str) -> Path | None:
    """The checkpoint to resume from: ``resume`` itself when a path, the latest in ``out_dir`` when True."""
    if not resume:
        return None
    if resume is not True:
        path = Path(resume)
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint {path} not found")
        return path
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(out_dir)) if out_dir.is_dir() else None
    if last is None:
        raise FileNotFoundError(f"resume=True but {out_dir} holds no checkpoint-* folder")
    return Path(last)


def read_loss_history(out_dir: str | Path) -> list[dict]:
    """Logged training-loss points ``[{"step", "loss", ...}]`` of a run folder."""
    log = json.loads((Path(out_dir) / LOSS_HISTORY_FILE).read_text(encoding="utf-8"))
    return [h for h in log if "loss" in h]


def plot_loss(history: list[dict], path: str | Path, title: str = "SFT training loss"):
    """Save the loss curve (training loss vs step) to ``path``; returns the path."""
    from .figures import new_axes, save_figure

    if not history:
        raise ValueError("no logged loss points to plot (train longer than logging_steps)")
    fig, ax = new_axes(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".")
    ax.set(xlabel="step", ylabel="loss (assistant tokens)", title=title, yscale="log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, show=False)  # notebook 03 displays the saved file


def main(argv: list[str] | None = None) -> int:
    """``python -m unimumer_lib.train`` (also the target of ``accelerate launch``, see ``configs/``)."""
    import argparse

    ap = argparse.ArgumentParser(description="SFT on sharegpt task files with TRL")
    ap.add_argument("--data", nargs="+", required=True, help="<task>.json files or a task folder")
    ap.add_argument("--model", default="tiny", help="tiny | small | checkpoint folder | hub id")
    ap.add_argument("--preset", default="cpu-smoke", choices=sorted(PRESETS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    files = [f for d in args.data for f in (task_files(d) if Path(d).is_dir() else [Path(d)])]
    result = train(files, model_path=args.model, preset=args.preset, out_dir=args.out, max_steps=args.max_steps,
                   resume=args.resume, seed=args.seed)
    plot_loss(read_loss_history(args.out), Path(args.out) / "loss_curve.png")
    print(f"trained {result['global_step']} steps on {result['records']} records; saved to {result['final_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
