"""Training settings as data: the presets (``configs/sft/<name>.yaml``), config files and keyword overrides that
resolve to TRL's ``SFTConfig`` (and peft's ``LoraConfig``), the :class:`Recipe` of one run, and the
``unimumer train`` options that set any of them (``--set FIELD=VALUE``, ``--ratio TASK=FRACTION``).

Presets carry the paper's settings, single-GPU LoRA/QLoRA recipes and the CPU recipes. A preset's keys are
``SFTConfig`` fields plus ``EXTRA_KEYS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .config import REPO_ROOT

PAPER_EFFECTIVE_BATCH = 512


PRESET_DIR = REPO_ROOT / "configs" / "sft"


EXTRA_KEYS = ("effective_batch", "lora", "quantize")  # preset keys that are not SFTConfig fields


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
    import dataclasses

    from trl import SFTConfig

    return {f.name for f in dataclasses.fields(SFTConfig)} | set(EXTRA_KEYS)


# Presets: configs/sft/<name>.yaml, the single source of the recipes (paper, single-gpu-lora, ...).
# (checked against SFTConfig by the tests, not at import, so ``unimumer --help`` stays fast)
PRESETS: dict[str, dict] = {p.stem: read_config_file(p, check=False) for p in sorted(PRESET_DIR.glob("*.yaml"))}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_settings(preset: str, config: dict | None = None, **overrides) -> dict:
    """Preset, then a config file's settings, then keyword overrides (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
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
    for key in ("lora", "quantize"):
        cfg.pop(key)
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
    return SFTConfig(output_dir=str(out_dir), assistant_only_loss=True, save_strategy="steps",
                     remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}, **cfg)


def lora_config(spec: dict | None, **overrides):
    """peft LoraConfig from a preset's ``lora`` entry (None for full fine-tuning)."""
    if spec is None and not overrides:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **{**(spec or {}), **overrides})


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
    overrides: dict = field(default_factory=dict)  # SFTConfig fields, over preset and config

    @classmethod
    def of(cls, **settings) -> "Recipe":
        """A recipe from flat keyword settings: its own fields by name, every other key an SFTConfig override."""
        own = {f.name for f in fields(cls)} - {"overrides"}
        return cls(**{k: v for k, v in settings.items() if k in own},
                   overrides={k: v for k, v in settings.items() if k not in own})


OWN_OPTIONS = {"output_dir": "--out", "max_steps": "--max-steps", "seed": "--seed", "report_to": "--report-to",
               "deepspeed": "--deepspeed"}  # SFTConfig fields `unimumer train` sets through options of its own


def parse_settings(items: list[str] | None) -> dict:
    """``--set FIELD=VALUE`` options as ``{field: value}``: any SFTConfig field (or ``EXTRA_KEYS``), the value read
    as YAML (``2e-5``, ``true``, ``[a, b]``; a number YAML leaves as text is a number). Unknown fields and those
    with an option of their own are refused."""
    import yaml

    settings, known = {}, None
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set learning_rate=2e-5")
        if key in OWN_OPTIONS:
            raise ValueError(f"--set {key}: use {OWN_OPTIONS[key]}")
        known = known or known_settings()
        if key not in known:
            raise ValueError(f"--set {key}: not an SFTConfig field (nor one of {', '.join(EXTRA_KEYS)})")
        value = yaml.safe_load(text) if text.strip() else None
        if isinstance(value, str):
            try:  # YAML 1.1 reads 3e-4 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        settings[key] = value
    return settings


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
