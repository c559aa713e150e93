"""Supervised fine-tuning of a Qwen-VL model on the task mixture with TRL's ``SFTTrainer``: one run in one process
(:func:`train`) or one per GPU (:func:`launch`), its run folder (checkpoints, ``final/``, ``run_config.json``, loss
curve) and the ``unimumer train`` command.

Settings come from ``sftconfig`` (presets, :class:`~unimumer_lib.training.sftconfig.Recipe`), the data from ``sftdata``.
Loss on assistant tokens only. Full fine-tuning (the paper) or LoRA/QLoRA through peft.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..core.paths import REPO_ROOT
from ..core.files import atomic_write_text
from ..core.tally import Tally
from . import runfolder
from .runfolder import FINAL_DIR, LOSS_HISTORY_FILE, RUN_CONFIG_FILE, TRAIN_REJECTS_FILE
from .sftconfig import (Recipe, lora_config, make_config, resolve_settings, world_size)
from .sftdata import fit_images_for, load_sharegpt_dataset, mixture_counts
from .callbacks import quiet_notebook_log, task_loss_callback, task_losses, umask_callback
from .saving import save_final


def _load(model_path, settings: dict):
    """Model + processor for training. Full fine-tuning loads fp32: the optimizer then updates fp32 master
    weights while bf16 autocasts the compute (a bf16-loaded model loses lr-1e-5 updates to rounding).
    LoRA keeps the frozen base in bf16; QLoRA quantises it to 4 bits. ``settings``: resolved preset + overrides."""
    from ..models.model import SHIPPED, flash_attention, load_model
    from ..models.tiny import tiny_model

    if str(model_path) in ("tiny", "small"):
        return tiny_model(str(model_path))
    import torch

    kwargs = {}
    if settings.get("quantize"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
        if torch.cuda.is_available():  # 4-bit weights are made on the GPU this process trains on
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    # DeepSpeed's bf16 optimizer keeps its own fp32 master copy, so bf16 weights suffice there (and halve host RAM).
    owns_master = settings.get("lora") is not None or settings.get("deepspeed")
    dtype = "bfloat16" if owns_master and settings.get("bf16") else "float32"
    if str(model_path) not in SHIPPED:
        kwargs.update(flash_attention())
    return load_model(model_path, dtype=dtype, **kwargs)


def one_gpu_unless_launched(args) -> None:
    """A single process never wraps the model in DataParallel (it splits pixel_values by rows, breaking the
    image/token match, and multiplies the batch); it trains on one GPU and says how to use all of them."""
    if args.n_gpu > 1 and world_size() == 1:
        print(f"{args.n_gpu} GPUs visible but one process: training on GPU 0 only. To use all of them: "
              f"accelerate launch --config_file configs/accelerate_multi_gpu.yaml --num_processes {args.n_gpu} "
              f"-m unimumer_lib.pipeline.cli train ...")
        args._n_gpu = 1


@dataclass
class TrainResult:
    """What ``train`` (or ``launch``) did: numbers and paths (``summary()``), and for an in-process run the live
    ``trainer``, ``model`` and ``processor`` (None after ``launch``)."""

    final_dir: str
    global_step: int
    last_loss: float | None
    world_size: int
    effective_batch: int
    train_loss: float | None = None
    wall_s: float | None = None
    records: int | None = None
    rejected: int | None = None
    trainer: object = field(default=None, repr=False, compare=False)
    model: object = field(default=None, repr=False, compare=False)
    processor: object = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        """The numbers and paths (what notebook 03 shows), without the live objects."""
        live = ("trainer", "model", "processor")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in live
                and getattr(self, f.name) is not None}


def train(train_json, out_dir: str | Path = "runs/sft", model=None, processor=None, resume: bool = False,
          force: bool = False, callbacks=None, test_roots=None, allow_test_images: bool = False,
          **recipe) -> TrainResult:
    """Fine-tune and save the final model + processor to ``out_dir/final``.

    ``train_json``: sharegpt JSON path(s) or an already built TRL-format Dataset. ``recipe``: the
    :class:`Recipe` fields by name (``model_path=``, ``preset=``, ``max_steps=``, ``seed=``, ``ratios=``,
    ``lora=``, ``freeze_vision=``, ``config=``), every other key an SFTConfig field. ``model``/``processor``
    replace loading ``model_path``. ``resume``: continue the run in ``out_dir`` from its newest complete
    checkpoint (refused unless the run there has the same settings and data: ``runfolder``). ``force``: replace
    an earlier run in ``out_dir``, or write beside files this tool did not make.
    ``test_roots``/``allow_test_images``: the leak guard (see :func:`load_sharegpt_dataset`).
    ``task_loss_every`` (a recipe field): log each task's loss on a fixed probe every N steps (``task_loss_callback``).
    """
    from ..core.outdir import OutputLock

    recipe = Recipe.of(**recipe)
    out_dir, overrides = Path(out_dir), dict(recipe.overrides)
    settings = resolve_settings(recipe.preset, recipe.config)
    _check_adapter_base(recipe, settings, model)
    rejects: list = []
    dataset = train_json if hasattr(train_json, "column_names") else load_sharegpt_dataset(
        train_json, recipe.ratios, recipe.seed, rejects=rejects, test_roots=test_roots,
        allow_test_images=allow_test_images)
    print(Tally(len(dataset) + len(rejects), len(dataset), len(rejects)).line("train: rows", "used"), file=sys.stderr)
    fingerprint = run_fingerprint(recipe, recipe.model_path if model is None else model, train_json)
    lock = OutputLock(out_dir, "unimumer train") if is_rank_zero() else None
    with lock or _nothing():
        marker = runfolder.claim(out_dir, fingerprint, bool(resume), force) if lock else None
        checkpoint = find_checkpoint(out_dir, resume)
        if marker is not None:
            runfolder.write_marker(out_dir, marker)
            if rejects:
                write_run_rejects(out_dir / TRAIN_REJECTS_FILE, rejects)
        model, processor, own_weights = _starting_model(model, processor, recipe, {**settings, **overrides},
                                                        checkpoint, dataset, ours=dataset is not train_json)
        max_steps = recipe.max_steps
        if max_steps and max_steps > 0 and "logging_steps" not in overrides:  # enough points for a loss curve
            overrides["logging_steps"] = max(1, min(settings["logging_steps"], max_steps // 10))
        trainer = make_trainer(model, processor, dataset, recipe.preset, out_dir, recipe.config, recipe.lora,
                               callbacks, max_steps=max_steps if max_steps is not None else -1, seed=recipe.seed,
                               data_seed=recipe.seed, **overrides)
        if own_weights:  # in place already; the Trainer's loader would only warn that every key is "missing"
            trainer._load_from_checkpoint = lambda *args, **kwargs: None  # (optimizer, scheduler, RNG still load)
        if recipe.task_loss_every:
            trainer.add_callback(task_loss_callback(trainer, recipe.task_loss_every))
        args = trainer.args
        start = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        wall = time.perf_counter() - start
        final = out_dir / FINAL_DIR
        save_final(trainer, processor, final)
        history = [h for h in trainer.state.log_history if "loss" in h]
        if trainer.is_world_process_zero():
            _record_finished_run(trainer, (recipe, train_json, dataset), out_dir, marker, wall)
    return TrainResult(final_dir=str(final), global_step=trainer.state.global_step, train_loss=result.training_loss,
                       last_loss=history[-1]["loss"] if history else None, wall_s=wall, records=len(dataset),
                       rejected=len(rejects), world_size=world_size(),
                       effective_batch=args.per_device_train_batch_size * args.gradient_accumulation_steps
                       * world_size(), trainer=trainer, model=trainer.model, processor=processor)


def _starting_model(model, processor, recipe: Recipe, settings: dict, checkpoint: Path | None, dataset,
                    ours: bool = False):
    """(model, processor, own_weights): what a run trains: ``model`` as given or loaded from ``recipe.model_path``,
    a checkpoint's own weights when resuming a full fine-tune (``own_weights``), the vision tower frozen when the
    recipe says so, and the processor's input spec recorded from the training images. ``ours``: the dataset came
    from ``load_sharegpt_dataset``, and its images are fitted to the model family's grid."""
    from ..models.family import model_family
    from ..models.images import input_spec_of_images

    if model is None:
        model, processor = _load(recipe.model_path, {**settings, **(
            {"lora": recipe.lora} if recipe.lora is not None else {})})
    own_weights = checkpoint is not None and not (checkpoint / "adapter_config.json").exists()
    if own_weights:
        # The Trainer restores optimizer/scheduler/RNG but loads Qwen-VL weights with the wrong key layout
        # (checkpoints use the original names), silently keeping the fresh weights; load them ourselves.
        model = type(model).from_pretrained(str(checkpoint), dtype=model.dtype)
    if freezes_vision(recipe, settings):
        for p in model_family(model).vision(model).parameters():
            p.requires_grad = False
    if ours:
        dataset.set_transform(fit_images_for(model))
    if not getattr(processor, "input_spec", None):  # record what it trains on: inference brings images to it
        processor.input_spec = input_spec_of_images([r[0] for r in dataset[:64]["images"] if r])
    return model, processor, own_weights


def _record_finished_run(trainer, run: tuple, out_dir: Path, marker, wall: float) -> None:
    """The run folder's records once training ended: the loss history, ``run_config.json`` and the final model's
    card (``run``: the recipe, the data it was given and the dataset it trained on)."""
    recipe, train_json, dataset = run
    history = [h for h in trainer.state.log_history if "loss" in h]
    atomic_write_text(out_dir / LOSS_HISTORY_FILE, json.dumps(trainer.state.log_history, indent=1))
    record_run(out_dir, trainer.args, recipe, train_json, marker,
               getattr(trainer.model.config, "_attn_implementation", None))
    atomic_write_text(out_dir / FINAL_DIR / "README.md", checkpoint_card(
        recipe, trainer.args, mixture_counts(dataset), trainer.state.global_step, wall,
        history[-1]["loss"] if history else None, git_commit()))


def _check_adapter_base(recipe: Recipe, settings: dict, model) -> None:
    """Refuse, before anything is written, LoRA on a fresh random shape: the adapter's ``base_model_name_or_path``
    would be null (or a shape name no hub knows), so it could never be loaded again."""
    from ..models.tiny import SIZES

    if (recipe.lora is not None or settings.get("lora") is not None) and model is None and \
            str(recipe.model_path) in SIZES:
        raise ValueError(f"--use_peft: an adapter is saved against its base, and --model {recipe.model_path!r} is a "
                         f"fresh random shape with no weights to load it on again; give --model a shipped base "
                         f"(tiny-base, glyph-base), a checkpoint folder or a hub id")


def epoch_steps(train_json, preset: str, ratios: dict | None = None, config: dict | None = None) -> int:
    """Optimizer steps the preset's epochs over ``train_json`` take (rows / effective batch, rounded up): the
    ``max_steps`` of a run that gets the same compute as one trained on those files (the compute-matched
    control)."""
    import math

    settings = resolve_settings(preset, config)
    rows = len(load_sharegpt_dataset(train_json, ratios, shuffle=False))
    return math.ceil(rows * settings["num_train_epochs"] / settings["effective_batch"])


def freezes_vision(recipe: Recipe, settings: dict) -> bool:
    """Whether the run trains with the vision tower frozen: the recipe asks for it, or its preset / config does
    (``freeze_vision``: LLaMA-Factory's ``freeze_vision_tower``)."""
    return bool(recipe.freeze_vision or settings.get("freeze_vision"))


def write_run_rejects(path: Path, rejects: list[tuple]) -> None:
    """``rejects.tsv`` of a run folder: the rows left out, (file, row, reason) as ``formats.rejects`` writes them."""
    from ..formats.rejects import Reject, write_rejects

    write_rejects(path, [Reject(str(f), str(i), why) for f, i, why in rejects])


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _nothing():
    from contextlib import nullcontext

    return nullcontext()


def run_fingerprint(recipe: Recipe, model, data) -> dict:
    """What makes two runs the same run (``runfolder``): model, data digest, recipe, steps and seed. A frozen
    vision tower is part of it only when asked for, so the runs that never froze it keep their fingerprints."""
    from ..models.model import model_identity
    from .runfolder import data_digest

    knobs = {k: v for k, v in recipe.overrides.items() if v is not None and k not in ("report_to", "logging_steps")}
    return json.loads(json.dumps({"model": model_identity(model), "data": data_digest(data), "preset": recipe.preset,
                                  "config": recipe.config or {}, "lora": recipe.lora, "seed": recipe.seed,
                                  "max_steps": recipe.max_steps, "ratios": recipe.ratios, "overrides": knobs,
                                  **({"freeze_vision": True} if recipe.freeze_vision else {})},
                                 default=str, sort_keys=True))


def make_trainer(model, processor, dataset, preset: str, out_dir: str | Path, config: dict | None = None,
                 lora: dict | None = None, callbacks=None, **overrides):
    """The SFTTrainer of a preset (its collator builds the training sequences; see tests/test_llamafactory.py)."""
    from trl import SFTTrainer

    args = make_config(preset, out_dir, config=config, **overrides)
    one_gpu_unless_launched(args)
    spec = resolve_settings(preset, config)["lora"]
    peft_config = lora_config(spec, lora)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         peft_config=peft_config, callbacks=[umask_callback(), *(callbacks or [])])
    quiet_notebook_log(trainer)
    return trainer


def git_commit() -> str | None:
    """The repository's HEAD commit (None when git gives none): the provenance every run records."""
    import subprocess

    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    return sha or None


# How the tasks of a mixture weigh in the loss (run_config.json, the model card): TRL's mean over every supervised
# token of the batch, so a task with longer answers (Tree-CoT, counting) weighs more per row than vanilla.
LOSS_BALANCE = "token mean"


def record_run(out_dir: Path, args, recipe: Recipe, data, marker: dict | None = None, attn: str | None = None) -> None:
    """``run_config.json``: the run marker (``runfolder``) completed with preset, config-file settings, model,
    the training data (its files, or an in-memory dataset's size and fingerprint), git commit and the resolved
    SFTConfig."""
    sha = git_commit()
    if hasattr(data, "column_names"):
        data = {"dataset_rows": len(data), "dataset_fingerprint": data._fingerprint}
    else:
        data = [os.path.abspath(d) for d in data] if isinstance(data, (list, tuple)) else os.path.abspath(data)
    settings = resolve_settings(recipe.preset, recipe.config)
    record = {**(marker or {}), "complete": True, "preset": recipe.preset, "config": recipe.config or {},
              "freeze_vision": freezes_vision(recipe, settings), "attn_implementation": attn,
              "model": str(recipe.model_path), "data": data, "ratios": recipe.ratios, "git": sha or None,
              "world_size": world_size(), "loss_balance": LOSS_BALANCE, "sft_config": args.to_dict()}
    atomic_write_text(out_dir / RUN_CONFIG_FILE, json.dumps(record, indent=1, default=str))


def checkpoint_card(recipe: Recipe, args, counts: dict[str, int], steps: int, wall_s: float, last_loss: float | None,
               commit: str | None) -> str:
    """``final/README.md``: what this checkpoint is: its base, the rows of each task it trained on, the recipe,
    steps, wall time, final loss, how to use it and the licence that applies (the base's). Held-out metrics are
    not known here: ``unimumer eval`` on its predictions gives them."""
    rows = "\n".join(f"| {task} | {n:,} |" for task, n in sorted(counts.items()))
    lr = args.learning_rate
    frozen = ", vision tower frozen" if freezes_vision(recipe, resolve_settings(recipe.preset, recipe.config)) else ""
    schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    loss = f"{last_loss:.4f}" if last_loss is not None else "not logged"
    return f"""---
library_name: transformers
pipeline_tag: image-text-to-text
base_model: {recipe.model_path}
tags: [handwritten-mathematical-expression-recognition, qwen2_5_vl, unimumer]
---
# A unimumer fine-tune of `{recipe.model_path}`

Fine-tuned with `unimumer train` (TRL `SFTTrainer`, assistant-only loss) for handwritten mathematical expression
recognition: image -> LaTeX with the Uni-MuMER prompts, on {sum(counts.values()):,} rows:

| task | rows |
| --- | --- |
{rows}

- **Recipe**: preset `{recipe.preset}`{f" + config {recipe.config}" if recipe.config else ""}, learning rate {lr:g}
  ({schedule}), effective batch {args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size()},
  {steps:,} steps, seed {recipe.seed}{frozen}; loss balance: {LOSS_BALANCE} over every task's answer tokens (no
  per-task weighting).
- **Compute**: {wall_s / 60:.1f} min of training; final logged loss {loss}; commit `{commit or "unknown"}`.
- **Files**: `../{RUN_CONFIG_FILE}` (every setting), `../{LOSS_HISTORY_FILE}` (the loss curve).
- **Use**: `unimumer infer --model THIS_FOLDER --data SPLIT --out preds.json`, then `unimumer eval preds.json`
  (held-out metrics are not part of this card: they depend on the test set you choose).
- **Licence**: the base model's licence applies to these weights (`{recipe.model_path}`: see its own card); the
  training data's licence applies to what it taught (CROHME: CC BY-NC-SA 3.0).
"""


def find_checkpoint(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from: with ``resume``, the newest complete one in ``out_dir`` (None, with a note,
    when no save finished: the run starts at step 0)."""
    if not resume:
        return None
    last = runfolder.newest_complete_checkpoint(out_dir, say=lambda m: print(m, file=sys.stderr))
    if last is None:
        print(f"resume: {out_dir} holds no complete checkpoint; the run starts at step 0", file=sys.stderr)
    return last


def read_loss_history(out_dir: str | Path) -> list[dict]:
    """Logged training-loss points ``[{"step", "loss", ...}]`` of a run folder."""
    log = json.loads((Path(out_dir) / LOSS_HISTORY_FILE).read_text(encoding="utf-8"))
    return [h for h in log if "loss" in h]


def read_task_losses(out_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{task: [(step, probe loss)]} of a run folder trained with ``task_loss_every`` ({} without)."""
    return task_losses(json.loads((Path(out_dir) / LOSS_HISTORY_FILE).read_text(encoding="utf-8")))


def plot_loss(history: list[dict], path: str | Path, title: str = "SFT training loss",
              per_task: dict[str, list[tuple[int, float]]] | None = None):
    """Save the loss curve (training loss vs step, and each task's probe loss of ``per_task``: ``task_losses``)
    to ``path``; returns the path."""
    from ..core.files import save_figure
    from ..evaluation.figures import new_axes

    if not history:
        raise ValueError("no logged loss points to plot (train longer than logging_steps)")
    fig, ax = new_axes(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".", label="training loss")
    for task, points in (per_task or {}).items():
        ax.plot([s for s, _ in points], [v for _, v in points], marker="x", linestyle="--", label=f"{task} (probe)")
    if per_task:
        ax.legend(fontsize=7)
    ax.set(xlabel="step", ylabel="loss (assistant tokens)", title=title, yscale="log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, show=False)  # notebook 03 displays the saved file
