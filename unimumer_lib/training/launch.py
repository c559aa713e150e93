"""The ``unimumer train`` command: its options (TRL's, through its parser, beside ours), and launching one run
over several GPUs with ``accelerate launch`` (one process per GPU, the effective batch kept).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..core.errors import at_least
from ..core.paths import REPO_ROOT
from .callbacks import EVAL_CURVE_DIR, TASK_LOSS_ROWS, curve_callback
from .runfolder import FINAL_DIR, LOSS_CURVE_FILE, RUN_CONFIG_FILE
from .sftconfig import (CPU_PRESET, PRESET_ALIASES, PRESET_DIR, PRESET_NAMES, REPORT_TO, Recipe, default_preset,
                        parse_ratios, parse_trl_options, ratio_options, read_config_file)
from .sftdata import task_files
from .train import TrainResult, plot_loss, read_loss_history, read_task_losses, train


TRL_OPTIONS_HELP = ("Any other option is TRL's, read by TRL's own parser over SFTConfig and ModelConfig and applied "
                    "over the preset and --config: every SFTConfig field (--learning_rate 2e-5, "
                    "--gradient-checkpointing true, --warmup_steps 100, ...) and ModelConfig's LoRA / 4-bit fields "
                    "(--use_peft, --lora_r 16, --lora_alpha 32, --lora_target_modules all-linear, --load_in_4bit).")


def add_train_arguments(ap) -> None:
    """The ``unimumer train`` options (also ``python -m unimumer_lib.training.launch``, the ``accelerate launch``
    target);
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


def train_main(argv=None) -> int:
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
        from ..formats.records import load_records

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
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "unimumer_lib.pipeline.cli",
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
    from ..core.workers import threads

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
    raise SystemExit(train_main())
