"""Supervised fine-tuning of a Qwen-VL model on the task mixture with TRL's ``SFTTrainer``: one run in one process
(:func:`train`) or one per GPU (:func:`launch`), its run folder (checkpoints, ``final/``, ``run_config.json``, loss
curve) and the ``unimumer train`` command.

Settings come from ``sftconfig`` (presets, :class:`~unimumer_lib.sftconfig.Recipe`), the data from ``sftdata``.
Loss on assistant tokens only. Full fine-tuning (the paper) or LoRA/QLoRA through peft.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from .config import REPO_ROOT
from .files import atomic_write_text, respect_umask, tsv_line
from .tally import Tally
from . import runfolder
from .errors import at_least
from .runfolder import FINAL_DIR, LOSS_CURVE_FILE, LOSS_HISTORY_FILE, RUN_CONFIG_FILE, TRAIN_REJECTS_FILE
from .sftconfig import (CPU_PRESET, PRESET_ALIASES, PRESET_DIR, PRESET_NAMES, REPORT_TO, Recipe, default_preset,
                        lora_config, make_config, parse_ratios, parse_trl_options, ratio_options, read_config_file,
                        resolve_settings, world_size)
from .sftdata import load_sharegpt_dataset, mixture_counts, task_files


def _load(model_path, settings: dict):
    """Model + processor for training. Full fine-tuning loads fp32: the optimizer then updates fp32 master
    weights while bf16 autocasts the compute (a bf16-loaded model loses lr-1e-5 updates to rounding).
    LoRA keeps the frozen base in bf16; QLoRA quantises it to 4 bits. ``settings``: resolved preset + overrides."""
    from .model import SHIPPED, flash_attention, load_model, tiny_model

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
              f"-m unimumer_lib.cli train ...")
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
    from .model import input_spec_of_images
    from .outdir import OutputLock

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
                write_rejects(out_dir / TRAIN_REJECTS_FILE, rejects)
        if model is None:
            model, processor = _load(recipe.model_path, {**settings, **overrides, **(
                {"lora": recipe.lora} if recipe.lora is not None else {})})
        own_weights = checkpoint is not None and not (checkpoint / "adapter_config.json").exists()
        if own_weights:
            # The Trainer restores optimizer/scheduler/RNG but loads Qwen-VL weights with the wrong key layout
            # (checkpoints use the original names), silently keeping the fresh weights; load them ourselves.
            model = type(model).from_pretrained(str(checkpoint), dtype=model.dtype)
        if freezes_vision(recipe, settings):
            for p in model.model.visual.parameters():
                p.requires_grad = False
        if not getattr(processor, "input_spec", None):  # record what it trains on: inference brings images to it
            processor.input_spec = input_spec_of_images([r[0] for r in dataset[:64]["images"] if r])
        max_steps = recipe.max_steps
        if max_steps and max_steps > 0 and "logging_steps" not in overrides:  # enough points for a loss curve
            overrides["logging_steps"] = max(1, min(settings["logging_steps"], max_steps // 10))
        trainer = make_trainer(model, processor, dataset, recipe.preset, out_dir, recipe.config, recipe.lora,
                               callbacks, max_steps=max_steps if max_steps is not None else -1, seed=recipe.seed,
                               data_seed=recipe.seed, **overrides)
        if own_weights:
            # The weights are in place already (above); the Trainer's own loader would only warn that every
            # key is "missing" (its key layout differs). Optimizer, scheduler, RNG and state still load.
            trainer._load_from_checkpoint = lambda *args, **kwargs: None
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
            atomic_write_text(out_dir / LOSS_HISTORY_FILE, json.dumps(trainer.state.log_history, indent=1))
            record_run(out_dir, args, recipe, train_json, marker,
                       getattr(trainer.model.config, "_attn_implementation", None))
            atomic_write_text(final / "README.md", model_card(
                recipe, args, mixture_counts(dataset), trainer.state.global_step, wall,
                history[-1]["loss"] if history else None, git_commit()))
    return TrainResult(final_dir=str(final), global_step=trainer.state.global_step, train_loss=result.training_loss,
                       last_loss=history[-1]["loss"] if history else None, wall_s=wall, records=len(dataset),
                       rejected=len(rejects), world_size=world_size(),
                       effective_batch=args.per_device_train_batch_size * args.gradient_accumulation_steps
                       * world_size(), trainer=trainer, model=trainer.model, processor=processor)


TASK_LOSS_ROWS = 8  # rows of each task in the per-task loss probe


def task_loss_callback(trainer, every: int, n: int = TASK_LOSS_ROWS):
    """A TrainerCallback logging ``loss_<task>`` every ``every`` steps: each task's loss (the trainer's own loss:
    assistant tokens, token mean) on a fixed probe, the first ``n`` training rows of that task, in eval mode
    without gradients. One overall loss hides which task the model is learning; this curve shows each. Every
    process runs the probe (a sharded model needs all of them in each forward pass); the points land in the log
    history, so in ``loss_history.json`` and the trackers."""
    import torch
    from transformers import TrainerCallback

    from .sftdata import task_of

    data = trainer.train_dataset
    picks: dict[str, list[int]] = {}
    for i, messages in enumerate(data["messages"]):
        rows = picks.setdefault(task_of({"messages": messages}), [])
        if len(rows) < n:
            rows.append(i)

    class TaskLoss(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if not every or state.global_step % every:
                return
            was_training, point = model.training, {"step": state.global_step}
            model.eval()
            with torch.no_grad():
                for task, rows in picks.items():
                    batch = trainer._prepare_inputs(trainer.data_collator([data[i] for i in rows]))
                    point[f"loss_{task}"] = round(float(model(**batch).loss), 4)
            model.train(was_training)
            state.log_history.append(point)

    return TaskLoss()


def task_losses(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{task: [(step, loss)]} of the per-task probe points in a run's log history."""
    out: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        for key, value in h.items():
            if key.startswith("loss_"):
                out.setdefault(key[len("loss_"):], []).append((h["step"], value))
    return out


CURVE_POINTS = "points.jsonl"  # beside the curve predictions: one line per point, so a checkpoint can be published
EVAL_CURVE_DIR = "eval_curve"  # in a run folder: train --eval-data's predictions and points


def curve_callback(processor, sets: dict, work: Path, every: int, max_new_tokens: int = 96):
    """A TrainerCallback scoring each record set of ``sets`` ({name: records}) greedily with the vanilla prompt
    every ``every`` steps: ``.points`` = [{step, exprate, ...}] of the first set, each point holding the others
    under their names; each point is also appended to ``work/points.jsonl`` and to the Trainer's log
    (``eval_exprate``...: the validation curve of ``train --eval-data``, and of pretraining)."""
    from transformers import TrainerCallback

    from .infer import predict
    from .metrics import score

    def measure(model, processor, name: str, records, step: int) -> dict:
        preds = predict(model, processor, records, work / f"curve_{name}_{step}.json", batch_size=16,
                        max_new_tokens=max_new_tokens, progress=False)
        m = score([p.gt for p in preds], [p.pred for p in preds])
        return {"exprate": m.exprate, "le1": m.le1, "le2": m.le2, "cer": m.cer,
                "distinct": len({p.pred for p in preds}), "n": len(preds)}

    class Curve(TrainerCallback):
        def __init__(self):
            self.points: list[dict] = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if every and state.global_step % every == 0:
                proc = processor or kwargs["processing_class"]  # None given: the Trainer's own processor
                model.eval()
                (first, records), *others = sets.items()
                point = {"step": state.global_step, **measure(model, proc, first, records, state.global_step)}
                point.update({name: measure(model, proc, name, recs, state.global_step) for name, recs in others})
                model.train()
                point["wall_s"] = round(time.perf_counter() - start, 1)
                self.points.append(point)
                state.log_history.append({"step": state.global_step, **{f"eval_{k}": point[k] for k in
                                                                        ("exprate", "le1", "le2", "cer")}})
                work.mkdir(parents=True, exist_ok=True)
                with open(work / CURVE_POINTS, "a", encoding="utf-8") as f:
                    f.write(json.dumps(point) + "\n")
                print(f"curve: {json.dumps(point)}", flush=True)

    start = time.perf_counter()
    return Curve()


def _check_adapter_base(recipe: Recipe, settings: dict, model) -> None:
    """Refuse, before anything is written, LoRA on a fresh random shape: the adapter's ``base_model_name_or_path``
    would be null (or a shape name no hub knows), so it could never be loaded again."""
    from .model import SIZES

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


def write_rejects(path: Path, rejects: list[tuple]) -> None:
    """``rejects.tsv`` of a run folder: file, row, reason."""
    atomic_write_text(path, "file\trow\treason\n" + "".join(tsv_line(f, i, why) for f, i, why in rejects))


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _nothing():
    from contextlib import nullcontext

    return nullcontext()


def run_fingerprint(recipe: Recipe, model, data) -> dict:
    """What makes two runs the same run (``runfolder``): model, data digest, recipe, steps and seed. A frozen
    vision tower is part of it only when asked for, so the runs that never froze it keep their fingerprints."""
    from .model import model_identity
    from .runfolder import data_digest

    knobs = {k: v for k, v in recipe.overrides.items() if v is not None and k not in ("report_to", "logging_steps")}
    return json.loads(json.dumps({"model": model_identity(model), "data": data_digest(data), "preset": recipe.preset,
                                  "config": recipe.config or {}, "lora": recipe.lora, "seed": recipe.seed,
                                  "max_steps": recipe.max_steps, "ratios": recipe.ratios, "overrides": knobs,
                                  **({"freeze_vision": True} if recipe.freeze_vision else {})},
                                 default=str, sort_keys=True))


def umask_callback():
    """A TrainerCallback fixing the file modes of every checkpoint folder as it is saved (rank 0)."""
    from transformers import TrainerCallback

    class RespectUmask(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                respect_umask(folder)

    return RespectUmask()


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


def quiet_notebook_log(trainer) -> None:
    """In a headless notebook run (``UNIMUMER_TEXT_PROGRESS``), keep the Trainer's notebook progress bar but not
    the loss table it grows under it (one row per logging step): the loss is plotted from ``loss_history.json``."""
    from transformers.utils.notebook import NotebookProgressCallback

    from . import TEXT_PROGRESS

    if os.environ.get(TEXT_PROGRESS) != "1" or not any(isinstance(c, NotebookProgressCallback)
                                                       for c in trainer.callback_handler.callbacks):
        return

    class BarOnly(NotebookProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            self.training_tracker.inner_table = None  # no table under the bar, not even its header

        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.remove_callback(NotebookProgressCallback)
    trainer.add_callback(BarOnly())


def save_final(trainer, processor, final: Path) -> None:
    """Weights through the Trainer (every rank takes part: ZeRO gathers shards); processor, legacy files and a
    neutral generation config from rank 0 only."""
    from .model import add_legacy_config, neutral_generation_config, save_processor

    model = trainer.model
    if hasattr(model, "generation_config"):
        model.generation_config = neutral_generation_config(processor.tokenizer)
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

    from .files import atomic_write_with

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


def model_card(recipe: Recipe, args, counts: dict[str, int], steps: int, wall_s: float, last_loss: float | None,
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
    from .figures import new_axes, save_figure

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


TRL_OPTIONS_HELP = ("Any other option is TRL's, read by TRL's own parser over SFTConfig and ModelConfig and applied "
                    "over the preset and --config: every SFTConfig field (--learning_rate 2e-5, "
                    "--gradient-checkpointing true, --warmup_steps 100, ...) and ModelConfig's LoRA / 4-bit fields "
                    "(--use_peft, --lora_r 16, --lora_alpha 32, --lora_target_modules all-linear, --load_in_4bit).")


def add_train_arguments(ap) -> None:
    """The ``unimumer train`` options (also ``python -m unimumer_lib.train``, the ``accelerate launch`` target);
    the SFTConfig / ModelConfig options are TRL's (``sftconfig.parse_trl_options``)."""
    ap.epilog = TRL_OPTIONS_HELP
    ap.add_argument("--data", nargs="+", required=True, help="<task>.json files or a task folder")
    ap.add_argument("--model", default="tiny", help="tiny | small | checkpoint folder | hub id")
    ap.add_argument("--preset", default=None, choices=PRESET_NAMES,
                    help=f"recipe from {PRESET_DIR.relative_to(REPO_ROOT)}/<name>.yaml (full = paper); required "
                         f"for a real model (a hub id or checkpoint), {CPU_PRESET} for the offline CPU models")
    ap.add_argument("--freeze-vision", action="store_true", help="train with the vision tower frozen "
                    "(LLaMA-Factory's freeze_vision_tower; also the presets' freeze_vision key)")
    ap.add_argument("--config", default=None, help="YAML of SFTConfig fields (+ effective_batch, lora, quantize) "
                                                   "applied over the preset")
    ap.add_argument("--out", required=True, help="run folder: checkpoints, final/, run_config.json, loss curve")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N steps (default: the preset's epochs)")
    ap.add_argument("--report-to", choices=REPORT_TO, default=None, help="default: the preset's, else none")
    ap.add_argument("--deepspeed", default=None, help="DeepSpeed JSON (e.g. configs/ds_zero2.json; a relative "
                                                      "path is looked up in the cwd, then the repo root)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its newest complete "
                    "checkpoint (only a run with the same model, data, recipe and seed)")
    ap.add_argument("--force", action="store_true", help="replace the earlier run in --out, or write beside files "
                    "this tool did not make (they are never overwritten)")
    ap.add_argument("--test-root", action="append", default=None, help="folder whose test*/ splits must never "
                    "enter training (repeatable; default: the CROHME root)")
    ap.add_argument("--allow-test-images", action="store_true", help="train on rows from test-split images anyway "
                    "(warns loudly; the test set is then not held out)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (data order, initialisation of new weights)")
    ap.add_argument("--eval-data", default=None, metavar="SPLIT",
                    help="a captioned split (caption.txt + images/) read greedily during training: the validation "
                         "ExpRate every --eval-every steps (eval_curve/points.jsonl, the loss history, the plot)")
    ap.add_argument("--eval-every", type=at_least(1), default=500, metavar="N", help="steps between validation "
                    "points (default 500)")
    ap.add_argument("--eval-n", type=at_least(1), default=200, metavar="N", help="the first N images of "
                    "--eval-data (default 200)")
    ap.add_argument("--task-loss-every", type=at_least(0), default=0, metavar="N",
                    help=f"log each task's loss (loss_<task>) on a fixed probe of its first {TASK_LOSS_ROWS} training "
                         f"rows every N steps (0, the default: never)")
    ap.add_argument("--ratio", action="append", default=None, metavar="TASK=FRACTION",
                    help="train on that fraction of a task's rows (repeatable, e.g. --ratio tree=0.5; default: all)")


def deepspeed_file(path: str | None) -> str | None:
    if path is None or Path(path).is_file():
        return path
    if (REPO_ROOT / path).is_file():
        return str(REPO_ROOT / path)
    raise FileNotFoundError(f"DeepSpeed config {path} not found (cwd or {REPO_ROOT})")


def main(argv=None) -> int:
    """Train from parsed ``unimumer train`` arguments or an argv list."""
    import argparse

    args = argv
    if not isinstance(argv, argparse.Namespace):
        ap = argparse.ArgumentParser(description="SFT on sharegpt task files with TRL")
        add_train_arguments(ap)
        args, args.trl_options = ap.parse_known_args(argv)
    overrides, lora = parse_trl_options(getattr(args, "trl_options", None))
    files = [f for d in args.data for f in (task_files(d) if Path(d).is_dir() else [Path(d)])]
    config = read_config_file(args.config) if args.config else None
    callbacks = None
    if getattr(args, "eval_data", None):  # checked before any training: a bad split fails here
        from .records import load_records

        records = [r for r in load_records(args.eval_data) if r.image_path][:args.eval_n]
        if not records:
            raise ValueError(f"--eval-data {args.eval_data}: no captioned image to validate on")
        callbacks = [curve_callback(None, {"eval": records}, Path(args.out) / EVAL_CURVE_DIR, args.eval_every)]
    result = train(files, out_dir=args.out, resume=args.resume, force=args.force, callbacks=callbacks,
                   test_roots=[Path(r) for r in args.test_root] if args.test_root else None,
                   allow_test_images=args.allow_test_images, model_path=args.model,
                   preset=args.preset or default_preset(args.model), freeze_vision=args.freeze_vision,
                   max_steps=args.max_steps, seed=args.seed, ratios=parse_ratios(args.ratio), config=config,
                   report_to=args.report_to, deepspeed=deepspeed_file(args.deepspeed), lora=lora,
                   task_loss_every=args.task_loss_every, **overrides)
    if result.trainer.is_world_process_zero():
        history = read_loss_history(args.out)
        if history:
            plot_loss(history, Path(args.out) / LOSS_CURVE_FILE, per_task=read_task_losses(args.out))
        print(f"trained {result.global_step} steps on {result.records} records; saved to {result.final_dir}")
    _finish_distributed()
    return 0


def launch_command(files, out_dir, processes: int, recipe: Recipe, force: bool = False,
                   deepspeed: str | None = None) -> list[str]:
    """``accelerate launch`` of ``unimumer train`` with one process per GPU (``--multi_gpu``: NCCL on GPUs,
    gloo where there are none, as tests/test_multiprocess.py runs it on CPU)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "unimumer_lib.cli",
           "train", "--data", *map(str, files), "--model", str(recipe.model_path), "--preset", recipe.preset,
           "--out", str(out_dir), "--seed", str(recipe.seed)]
    cmd += ["--max-steps", str(recipe.max_steps)] if recipe.max_steps is not None else []
    cmd += ratio_options(recipe.ratios)
    cmd += ["--force"] if force else []
    cmd += ["--freeze-vision"] if recipe.freeze_vision else []
    cmd += ["--deepspeed", deepspeed] if deepspeed else []
    cmd += ["--task-loss-every", str(recipe.task_loss_every)] if recipe.task_loss_every else []
    return cmd


def launch(files, out_dir, processes: int, force: bool = False, **recipe) -> TrainResult:
    """Train in ``processes`` processes (notebook 03 with several GPUs), ``recipe`` as for :func:`train` (the
    ``unimumer train`` options: model, preset, steps, seed, ratios); the paper preset on GPUs runs DeepSpeed
    ZeRO-2, as the paper. Returns the run folder's result (step, loss, final folder) once all ranks end."""
    import subprocess

    import torch

    recipe = Recipe.of(**recipe)
    if recipe.overrides or recipe.lora is not None or recipe.config:
        raise ValueError(f"launch passes model, preset, steps, seed and ratios to `unimumer train`; use a config "
                         f"file (--config) for the other settings (got {sorted(recipe.overrides) or 'lora/config'})")

    zero2 = (str(REPO_ROOT / "configs" / "ds_zero2.json") if PRESET_ALIASES.get(recipe.preset, recipe.preset) == "paper"
             and torch.cuda.is_available()
             else None)
    cmd = launch_command(files, out_dir, processes, recipe, force, zero2)
    print(f"training in {processes} processes ({'DeepSpeed ZeRO-2, ' if zero2 else ''}accelerate launch): "
          + " ".join(cmd[2:]), flush=True)
    from .workers import threads

    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": str(threads(workers=processes))})  # never more threads x processes than cores
    if done.returncode:
        raise RuntimeError(f"{out_dir}: training in {processes} processes failed (exit {done.returncode}); the "
                           f"ranks' messages are above")
    record = json.loads((Path(out_dir) / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
    history = read_loss_history(out_dir)
    sft = record["sft_config"]
    return TrainResult(final_dir=str(Path(out_dir) / FINAL_DIR), global_step=history[-1]["step"] if history else 0,
                       last_loss=history[-1]["loss"] if history else None, world_size=record["world_size"],
                       effective_batch=sft["per_device_train_batch_size"] * sft["gradient_accumulation_steps"]
                       * record["world_size"])


def _finish_distributed() -> None:
    """Under ``accelerate launch``: wait for every rank, then close the process group (a rank leaving early
    aborts the others' gloo/NCCL teardown)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
