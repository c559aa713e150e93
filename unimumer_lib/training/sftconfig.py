"""Training settings as data: the presets (``configs/sft/<name>.yaml``), config files and keyword overrides that
resolve to TRL's ``SFTConfig`` (and peft's ``LoraConfig``), the :class:`Recipe` of one run, and the
``unimumer train`` options that set any of them (TRL's parser for every ``SFTConfig`` field and ``ModelConfig``'s
LoRA / 4-bit fields, ``--ratio TASK=FRACTION``).

Presets carry the paper's settings, single-GPU LoRA/QLoRA recipes and the CPU recipes. A preset's keys are
``SFTConfig`` fields plus ``EXTRA_KEYS``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..core.paths import REPO_ROOT

PAPER_EFFECTIVE_BATCH = 512
PRESET_DIR = REPO_ROOT / "configs" / "sft"
EXTRA_KEYS = ("effective_batch", "lora", "quantize", "freeze_vision")  # preset keys that are not SFTConfig fields
PRESET_ALIASES = {"full": "paper"}  # full fine-tuning with the paper's settings, on whatever GPUs there are
CPU_PRESET = "cpu-smoke"  # what `unimumer train` uses, without --preset, for the offline CPU models only
REPORT_TO = ("none", "tensorboard", "wandb")


def read_config_file(path: str | Path, check: bool = True) -> dict:
    """A preset/config YAML: SFTConfig fields plus ``EXTRA_KEYS``; unknown keys raise naming the file."""
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - known_settings()) if check else []
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)} (SFTConfig fields or {EXTRA_KEYS})")
    return data


def known_settings() -> set[str]:
    from trl import SFTConfig

    return {f.name for f in fields(SFTConfig)} | set(EXTRA_KEYS)


# Presets: configs/sft/<name>.yaml, the single source of the recipes (paper, single-gpu-lora, ...).
# (checked against SFTConfig by the tests, not at import, so ``unimumer --help`` stays fast)
PRESETS: dict[str, dict] = {p.stem: read_config_file(p, check=False) for p in sorted(PRESET_DIR.glob("*.yaml"))}
PRESET_NAMES = sorted([*PRESETS, *PRESET_ALIASES])  # what --preset takes
CPU_MODEL_MAX_HIDDEN = 1024  # a checkpoint folder whose language model is at most this wide is a CPU stand-in


def default_preset(model: str | Path) -> str:
    """The preset of a ``unimumer train`` run given none: ``CPU_PRESET`` for the offline CPU models (``tiny``,
    ``small``, the shipped bases, a folder holding one of them); anything else (a hub id, a real checkpoint) is
    refused: the CPU recipe (use_cpu, fp32, lr 3e-3) would train a 3B model on the CPU and wreck it."""
    import json

    from ..models.model import SHIPPED
    from ..models.tiny import SIZES

    name = str(model)
    if name in SIZES or name in SHIPPED:
        return CPU_PRESET
    config = Path(name) / "config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        if (data.get("text_config") or data).get("hidden_size", CPU_MODEL_MAX_HIDDEN + 1) <= CPU_MODEL_MAX_HIDDEN:
            return CPU_PRESET
    gpu = sorted([*(n for n, p in PRESETS.items() if not p.get("use_cpu")), *PRESET_ALIASES])
    raise ValueError(f"--model {name}: give --preset for a real model ({', '.join(gpu)}); without one it would get "
                     f"the CPU smoke recipe ({CPU_PRESET}: use_cpu, fp32, lr "
                     f"{PRESETS[CPU_PRESET]['learning_rate']:g}), which is for the tiny offline models only")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_settings(preset: str, config: dict | None = None, **overrides) -> dict:
    """Preset, then a config file's settings, then keyword overrides (``None`` values are ignored)."""
    preset = PRESET_ALIASES.get(preset, preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {PRESET_NAMES}")
    settings = {**PRESETS[preset], **(config or {})}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def make_config(preset: str, out_dir: str | Path, devices: int | None = None, config: dict | None = None,
                **overrides):
    """SFTConfig for a preset (+ a config file's settings, + ``overrides`` of any field).

    The effective batch (per device x accumulation x ``devices``, default $WORLD_SIZE) is kept at the
    preset's ``effective_batch`` (a note is printed when the per-step batch does not divide it).
    """
    from trl import SFTConfig

    cfg = resolve_settings(preset, config, **overrides)
    effective = cfg.pop("effective_batch")
    for key in ("lora", "quantize", "freeze_vision"):
        cfg.pop(key, None)
    devices = devices or world_size()
    explicit = "per_device_train_batch_size" in overrides or "per_device_train_batch_size" in (config or {})
    if not explicit and cfg["per_device_train_batch_size"] * devices > effective and effective % devices == 0:
        cfg["per_device_train_batch_size"] = effective // devices  # more processes: same effective batch
    per_step = cfg["per_device_train_batch_size"] * devices
    if "gradient_accumulation_steps" not in overrides and not (config or {}).get("gradient_accumulation_steps"):
        cfg["gradient_accumulation_steps"] = max(1, effective // per_step)
        if cfg["gradient_accumulation_steps"] * per_step != effective:
            print(f"note: preset {preset!r} asks for an effective batch of {effective}; {per_step} per step "
                  f"x {cfg['gradient_accumulation_steps']} accumulation gives "
                  f"{per_step * cfg['gradient_accumulation_steps']}")
    cfg.setdefault("gradient_checkpointing_kwargs", {"use_reentrant": False})
    cfg.setdefault("logging_first_step", True)
    cfg.setdefault("report_to", "none")
    with warnings.catch_warnings():  # transformers 5 renames gradient_checkpointing; TRL still sets it
        warnings.filterwarnings("ignore", message=r"`gradient_checkpointing(_kwargs)?` is deprecated",
                                category=FutureWarning)
        return SFTConfig(output_dir=os.path.abspath(out_dir), assistant_only_loss=True, save_strategy="steps",
                         remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}, **cfg)


LORA_BASE = {"target_modules": "all-linear"}  # LoRA asked for over a full fine-tuning preset: every linear layer


def lora_config(spec: dict | None, overrides: dict | None = None):
    """peft LoraConfig from a preset's ``lora`` entry and a run's ``overrides`` of it; None (full fine-tuning)
    when both are None. ``overrides`` ``{}`` over a preset without LoRA turns it on: peft's defaults on every
    linear layer (``LORA_BASE``)."""
    if spec is None and overrides is None:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **{**(spec if spec is not None else LORA_BASE), **(overrides or {})})


@dataclass(frozen=True)
class Recipe:
    """What one training run is, as data: the model to start from, the preset and the settings over it (a config
    file's, then ``overrides``: any SFTConfig field), LoRA, the mixture ``ratios`` and the seed. The run folder's
    fingerprint and ``run_config.json`` are made from it."""

    model_path: str = "tiny"
    preset: str = "cpu-smoke"
    max_steps: int | None = None  # None: the preset's epochs
    seed: int = 0
    ratios: dict | None = None  # {task: fraction of its rows} (``load_sharegpt_dataset``)
    lora: dict | None = None  # LoraConfig kwargs over the preset's; {} turns LoRA on with its defaults
    freeze_vision: bool = False
    config: dict | None = None  # settings from a config file, over the preset
    task_loss_every: int = 0  # log each task's probe loss every N steps (callbacks.task_loss_callback); 0: never
    overrides: dict = field(default_factory=dict)  # SFTConfig fields, over preset and config

    @classmethod
    def of(cls, **settings) -> "Recipe":
        """A recipe from flat keyword settings: its own fields by name, every other key an SFTConfig override."""
        own = {f.name for f in fields(cls)} - {"overrides"}
        return cls(**{k: v for k, v in settings.items() if k in own},
                   overrides={k: v for k, v in settings.items() if k not in own})


OWN_OPTIONS = {"output_dir": "--out", "max_steps": "--max-steps", "seed": "--seed", "report_to": "--report-to",
               "deepspeed": "--deepspeed", "resume_from_checkpoint": "--resume", "model_name_or_path": "--model"}
# TRL ModelConfig fields of LoRA -> peft LoraConfig keyword; ``load_in_4bit`` is the presets' ``quantize``
MODEL_LORA_FIELDS = {"lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                     "lora_target_modules": "target_modules", "lora_modules_to_save": "modules_to_save",
                     "use_rslora": "use_rslora", "use_dora": "use_dora"}


def parse_trl_options(argv: list[str] | None) -> tuple[dict, dict | None]:
    """The ``unimumer train`` options that are TRL's: any ``SFTConfig`` field (``--learning_rate 2e-5`` or
    ``--learning-rate 2e-5``) and ``ModelConfig``'s LoRA / 4-bit fields (``--use_peft``, ``--lora_r 16``,
    ``--load_in_4bit``), parsed by TRL's own parser (``TrlParser``), so there is no hand-kept list of them.

    Returns (SFTConfig overrides, plus ``quantize`` for ``--load_in_4bit``; LoraConfig keywords, or None when no
    LoRA option is given), holding only the fields the options name. Unknown options, options ``unimumer train``
    has its own flag for, and the ModelConfig fields it does not use are refused naming the option."""
    if not argv:
        return {}, None
    from trl import ModelConfig, SFTConfig, TrlParser

    # (SFTConfig's own default bf16=True fails its check on a CPU; given first, a --bf16 of the user's wins)
    import contextlib
    import io

    usage = io.StringIO()
    try:  # argparse prints its whole usage (140 lines) before a bad value's one line: keep that line only
        with contextlib.redirect_stderr(usage):
            sft, model, rest = TrlParser((SFTConfig, ModelConfig)).parse_args_into_dataclasses(
                ["--bf16", "false", *argv], return_remaining_strings=True)
    except SystemExit:
        last = [line for line in usage.getvalue().splitlines() if line.strip()][-1:] or ["invalid option"]
        raise ValueError(last[0].split("error: ", 1)[-1]) from None
    if rest:
        raise ValueError(f"unknown option(s) {' '.join(rest)}: neither an option of `unimumer train` nor an "
                         f"SFTConfig / ModelConfig field")
    sft_fields, model_fields = {f.name for f in fields(SFTConfig)}, {f.name for f in fields(ModelConfig)}
    named = set()
    for arg in argv:
        if arg.startswith("--"):
            name = arg[2:].split("=", 1)[0].replace("-", "_")
            named.add(name[3:] if name.startswith("no_") and name not in sft_fields | model_fields else name)
    for name in sorted(named):
        if name not in sft_fields | model_fields:  # (argparse took it as an abbreviation of a field)
            raise ValueError(f"unknown option --{name}: neither an option of `unimumer train` nor an SFTConfig / "
                             f"ModelConfig field (give a field's whole name)")
        if name in OWN_OPTIONS:
            raise ValueError(f"--{name}: use {OWN_OPTIONS[name]}")
        if name in model_fields and name not in MODEL_LORA_FIELDS and name not in ("use_peft", "load_in_4bit"):
            raise ValueError(f"--{name}: a ModelConfig field `unimumer train` does not use (it takes --use_peft, "
                             f"--load_in_4bit and {', '.join('--' + k for k in MODEL_LORA_FIELDS)})")
    overrides = {name: getattr(sft, name) for name in sorted(named & sft_fields)}
    check_values(overrides)
    if "load_in_4bit" in named:
        overrides["quantize"] = bool(model.load_in_4bit)
    lora_named = named & set(MODEL_LORA_FIELDS)
    lora = ({MODEL_LORA_FIELDS[name]: getattr(model, name) for name in sorted(lora_named)}
            if lora_named or ("use_peft" in named and model.use_peft) else None)
    return overrides, lora


AT_LEAST_ONE = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                "num_train_epochs", "logging_steps")


def check_values(overrides: dict) -> None:
    """Refuse, naming the option, a number no run can use: not finite (``--learning_rate 1e400`` is inf and
    trains every weight to NaN), or a count below 1 (a batch of 0 fails as a division by zero deep in the loop)."""
    import math

    for name, value in overrides.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name} {value}: not a finite number")
        if name in AT_LEAST_ONE and isinstance(value, (int, float)) and value < 1 and not (
                name == "logging_steps" and 0 < value < 1):  # (a fraction of the run for logging_steps)
            raise ValueError(f"--{name} {value}: must be at least 1")
        if name == "learning_rate" and value <= 0:
            raise ValueError(f"--{name} {value}: must be above 0")


def parse_ratios(items: list[str] | None) -> dict[str, float] | None:
    """``--ratio task=fraction`` options as ``{task: fraction}`` (None when none is given)."""
    if not items:
        return None
    ratios = {}
    for item in items:
        task, sep, value = item.partition("=")
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not sep or not task or not 0 < fraction <= 1:
            raise ValueError(f"--ratio {item!r}: expected TASK=FRACTION with 0 < FRACTION <= 1, e.g. tree=0.5")
        ratios[task] = fraction
    return ratios


def ratio_options(ratios: dict[str, float] | None) -> list[str]:
    """The ``--ratio`` options that give ``ratios`` back through :func:`parse_ratios`."""
    return [arg for task, fraction in (ratios or {}).items() for arg in ("--ratio", f"{task}={fraction!r}")]
