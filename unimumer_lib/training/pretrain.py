"""The tiny base model: the tiny Qwen2.5-VL pretrained on synthetic handwriting (image -> LaTeX, vanilla prompt).

It is the CPU stand-in for Qwen2.5-VL-3B-Instruct. The paper fine-tunes a model that already reads, so every CPU
run fine-tunes from this base too (``model.load_model("tiny-base")``). Pretraining uses the same classes,
processor, chat template and TRL trainer as every other run (``train.train``). Its data is a stream of unique
synthetic samples (``stream``):

- shard ``i`` is drawn with seed ``PRETRAIN_SEED + i``, disjoint from every seed a profile or test uses (they
  all lie below ``PRETRAIN_SEED``, which ``check_seed`` asserts);
- captions of the held-out pool are excluded: the first ``HELD_OUT_POOL`` samples of ``HELD_OUT_SEED``, from
  which the smoke/cpu synthetic test sets are drawn (``reproduce.synthetic_root``);
- so are the captions of the CROHME test splits, when they are at hand.

The output is a normal Hugging Face folder: config, safetensors weights, tokenizer, processor, generation config,
plus ``run_config.json`` (seeds, steps, wall time, commit, learning curve) and a model card ``README.md`` (``cards``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.files import atomic_write_text
from ..tasks.spec import BASE_TASK
from .cards import glyph_model_card, model_card
from .stream import (CAPTION_HASHES, CAPTION_LIST, CROHME_STREAM, HEIGHT, HELD_OUT_POOL, HELD_OUT_SEED,  # noqa: F401
                     crohme_records, crohme_test_captions, crohme_train_root, held_out_captions, held_out_records,
                     make_stream, read_caption_hashes, read_caption_list, shard_seeds, stream_items, trained_on,
                     write_caption_list)


BASE_NAME = "tiny-base"  # its folder: model.SHIPPED[BASE_NAME]
PROFILE = "pretrain"


@dataclass(frozen=True)
class Pretraining:
    """The tiny base's pretraining recipe (``benchmarks/bench_generalise.py`` measured it): ``n`` unique synthetic
    samples of ``height`` px for ``steps`` steps of the ``preset`` on the ``size`` shape, the ``tasks`` trained,
    a checkpoint every ``save_steps``, the held-out curve on ``curve_n`` images every ``curve_every`` steps, and
    the torch ``threads`` it was measured with."""

    n: int = 64_000
    steps: int = 22_000
    size: str = "tiny"
    preset: str = "cpu-read"
    seed: int = 0
    save_steps: int = 2_000
    curve_every: int = 2_000
    curve_n: int = 200
    threads: int = 2
    height: int = HEIGHT
    tasks: tuple[str, ...] = ("vanilla",)
    task_shares: tuple[float, ...] | None = None  # each sample trains one task, drawn with these shares; None: all
    glyph_share: float = 0.0  # share of samples written with real glyphs (``glyphs`` bank), the rest Hershey
    writer_group: str = "pretrain"  # the bank's writers it draws from (``glyphs.WRITER_GROUPS``)
    init: str | None = None  # a base folder to continue from (a new segment), instead of random weights
    first_shard: int = 0  # the stream's shards are first_shard, first_shard + 1, ...: a new segment draws new samples
    name: str = BASE_NAME
    half_storage: bool = False  # weights stored in float16 (loaded back as float32: store_half)
    crohme_train: int = 0  # times each CROHME-train expression of ``writer_group``'s writers is in the stream

    def stream_settings(self) -> dict:
        """What makes the sample stream: its marker compares these."""
        return {"glyph_share": self.glyph_share, "writer_group": self.writer_group} if self.glyph_share else {}


RECIPE = Pretraining()
GLYPH_BASE_NAME = "glyph-base"
# The real-glyph base (issue: a CPU stand-in that reads real handwriting and has seen every task's prompt): the
# shipped tiny base continued (a second segment) on a stream whose samples are 80 % written with real CROHME-train
# glyphs of the pretraining writers (the rest Hershey), each sample training one task's format (vanilla 60 %, tree,
# counting, error_find, error_fix 10 % each). Continued from tiny-base rather than trained from random weights: the
# 3-8 M shapes trained from scratch (base5) collapsed their vision tower to one vector per image within 1,000 steps
# (benchmarks/README.md, "The real-glyph base"; benchmarks/vision_health.py measures it), while tiny-base's tower
# already tells glyphs apart.
GLYPH_SEGMENTS = (
    Pretraining(n=60_000, steps=14_000, size="tiny", preset="cpu-read", save_steps=2_000, curve_every=2_000,
                init=BASE_NAME, tasks=("vanilla", "tree", "can", "error_find", "error_fix"),
                task_shares=(0.6, 0.1, 0.1, 0.1, 0.1), glyph_share=0.8, name=GLYPH_BASE_NAME),
    # The third segment: new samples (shards 6..10), and a larger share of the EDL formats, which the second left
    # unlearnt (error_find outputs did not copy the given formula: 0 % well-formed in the smoke's gates). At the
    # fine-tuning rate (cpu-sft: 3e-4 cosine): restarted at cpu-read's 1e-3, the continued base fell from 13.0 to
    # 5.0 % held-out in 2,000 steps (the second segment's curve started the same way).
    Pretraining(n=50_000, first_shard=6, steps=12_000, size="tiny", preset="cpu-sft", save_steps=2_000,
                curve_every=3_000, init=GLYPH_BASE_NAME, tasks=("vanilla", "tree", "can", "error_find", "error_fix"),
                task_shares=(0.4, 0.1, 0.1, 0.2, 0.2), glyph_share=0.8, name=GLYPH_BASE_NAME),
    # The fourth segment: the third's base grown to twice its depth (``tiny4``: 4 language layers, 4 vision blocks;
    # ``model.grow`` keeps what it computes, so the segment starts at the third's numbers), on new samples (shards
    # 11..15). The 2-layer language model did not learn to copy a formula from its prompt (error_find 1 % well-formed
    # after 12,000 steps) and the 3-8 M shapes did not train from random weights; depth grown on trained weights is
    # the step between.
    Pretraining(n=50_000, first_shard=11, steps=9_000, size="tiny4", preset="cpu-sft", save_steps=1_500,
                curve_every=3_000, init=GLYPH_BASE_NAME, tasks=("vanilla", "tree", "can", "error_find", "error_fix"),
                task_shares=(0.4, 0.1, 0.1, 0.2, 0.2), glyph_share=0.8, name=GLYPH_BASE_NAME),
    # The fifth: the third's (shipped) base, same shape, on new samples plus real handwriting: every CROHME-train
    # expression of the pretraining writers, twice (the compositions' writers; the fine-tuning and test writers'
    # files stay out). The CPU peer that reads 5 % of CROHME 2014 trained on CROHME train; compositions alone
    # left the base at 4.7 %.
    Pretraining(n=40_000, first_shard=16, steps=9_000, size="tiny", preset="cpu-sft", save_steps=1_500,
                curve_every=3_000, init=GLYPH_BASE_NAME, tasks=("vanilla", "tree", "can", "error_find", "error_fix"),
                task_shares=(0.4, 0.1, 0.1, 0.2, 0.2), glyph_share=0.8, name=GLYPH_BASE_NAME, crohme_train=2),
)
GLYPH_RECIPE = GLYPH_SEGMENTS[-1]  # what `unimumer pretrain --recipe glyph-base` runs: the next segment
RECIPES = {RECIPE.name: RECIPE, GLYPH_RECIPE.name: GLYPH_RECIPE}


def assign_tasks(items: list, recipe: Pretraining) -> dict[str, list]:
    """{task: the stream items it trains on}: every task on every item, or one task per item drawn with
    ``recipe.task_shares`` (seeded by the item's id, so the same whatever the order)."""
    import numpy as np

    if recipe.task_shares is None:
        return {t: items for t in recipe.tasks}
    p = np.array(recipe.task_shares, dtype=float) / sum(recipe.task_shares)
    out: dict[str, list] = {t: [] for t in recipe.tasks}
    for item in items:
        u = np.random.default_rng([recipe.seed, *item[0].encode()]).random()
        out[recipe.tasks[min(int(np.searchsorted(np.cumsum(p), u, side="right")), len(p) - 1)]].append(item)
    return out


def stream_rows(items: list, recipe: Pretraining) -> tuple[dict[str, list[dict]], list]:
    """({task: rows}, rejects) of the stream: caption tasks from their items, EDL tasks from errors injected with
    the look-alike table (``edl.LOOKALIKES``); an EDL item no confusion applies to trains vanilla instead."""
    import random

    from ..tasks import edl
    from ..tasks.spec import get
    from ..tasks.build import caption_rows, edl_task_rows

    split = assign_tasks(items, recipe)
    rows, rejects = {}, []
    for task, part in split.items():
        if get(task).kind == "caption":
            made, bad = caption_rows(part, [task], progress=False)
            rows.setdefault(task, []).extend(made[task])
            rejects += bad
            continue
        rng = random.Random(f"{recipe.seed}:{task}")
        records = []
        for key, caption, image in part:
            pred = edl.inject_errors(caption, edl.LOOKALIKES, rng, max_edits=2)
            if pred is None:
                rows.setdefault(BASE_TASK, []).extend(caption_rows([(key, caption, image)], [BASE_TASK],
                                                                   progress=False)[0][BASE_TASK])
            else:
                records += edl.edl_records([(image, caption, pred)], source=edl.SYNTHETIC)
        rows.setdefault(task, []).extend(edl_task_rows(records, [task])[task])
    return rows, rejects


def previous_segments(init: str | Path | None) -> list[dict]:
    """The segments of the base ``init`` continues (its run_config.json), [] for a random start."""
    if not init:
        return []
    from ..models.model import resolve_model_path

    record = json.loads((Path(resolve_model_path(init)) / "run_config.json").read_text(encoding="utf-8"))
    return record.get("segments") or [{"init": None, **{k: record.get(k) for k in ("commit", "steps", "train_wall_s",
                                                                                     "final_loss")}}]


def pretrain(out: Path, work: Path, recipe: Pretraining = RECIPE, resume: bool = False,
             workers: int | None = None) -> dict:
    """Pretrain the tiny model as ``recipe`` says; write the base to ``out``.

    ``work`` holds the stream, checkpoints and curve predictions (``resume`` continues from its last checkpoint).
    ``recipe.init``: start from that base's weights (a new segment of its pretraining) instead of random ones.
    Returns the run config written to ``out/run_config.json``.
    """
    from ..tasks.build import write_task_files
    from .callbacks import curve_callback
    from .train import git_commit, train
    from .sftdata import load_sharegpt_dataset

    work, out = Path(work), Path(out)
    check_out(out)
    check_recipe(recipe)
    check_work(work, recipe, resume)
    commit, t0 = git_commit(), time.perf_counter()  # the code this run starts from
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / RUN_START, json.dumps({"made_by": "unimumer pretrain", "commit": commit,
                                                   "recipe": asdict(recipe)}, indent=1) + "\n")
    exclude_pool, exclude_crohme = held_out_captions(workers=workers), crohme_test_captions()
    stream = make_stream(work / "stream", recipe.n, recipe.height, exclude_pool | exclude_crohme, workers,
                         glyph_share=recipe.glyph_share, writer_group=recipe.writer_group,
                         first_shard=recipe.first_shard)
    items, real = stream_items(work, recipe, exclude_pool | exclude_crohme, workers)
    rows, rejects = stream_rows(items, recipe)
    files = write_task_files(work / "tasks", rows, rejects)
    dataset = load_sharegpt_dataset([files[t] for t in rows], seed=recipe.seed)
    data_wall = time.perf_counter() - t0
    model, processor = start_model(recipe)
    curve = curve_callback(processor, curve_sets(work, recipe), work / "curve", recipe.curve_every)
    result = train(dataset, model=model, processor=processor, preset=recipe.preset, out_dir=work / "sft",
                   max_steps=recipe.steps, seed=recipe.seed, save_steps=recipe.save_steps, resume=resume,
                   callbacks=[curve])
    facts = {"commit": commit, "stream": stream, "rows": {t: len(r) for t, r in rows.items()},
             "excluded_captions": {"held_out_pool": len(exclude_pool), "crohme_test": len(exclude_crohme)},
             "data_wall_s": round(data_wall, 1), "train_wall_s": round(result.wall_s, 1), "crohme_train": real}
    return publish(Path(result.final_dir), out, work, recipe, facts)


def start_model(recipe: Pretraining):
    """(model, processor) a segment starts from: random weights of ``recipe.size``, or the base ``recipe.init``,
    grown to ``recipe.size``'s depth when that is deeper (``model.grow``: it computes what the base computed)."""
    from ..models.model import load_model
    from ..models.tiny import SIZES, grow, tiny_model

    if not recipe.init:
        return tiny_model(recipe.size, seed=recipe.seed)
    model, processor = load_model(recipe.init, dtype="float32")
    depth = (model.config.text_config.num_hidden_layers, model.config.vision_config.depth)
    if depth != (SIZES[recipe.size]["layers"], SIZES[recipe.size]["v_depth"]):
        model = grow(model, recipe.size)
    return model, processor


def curve_sets(work: Path, recipe: Pretraining) -> dict:
    """The record sets of the learning curve: the held-out pool (in real glyphs of the bank's test writers when
    the recipe writes real glyphs, then also in Hershey glyphs), and CROHME 2014 when at hand (reported only)."""
    if not recipe.glyph_share:
        return {"held_out": held_out_records(work, recipe.curve_n, recipe.height)}
    sets = {"held_out": held_out_records(work, recipe.curve_n, recipe.height, glyphs="test"),
            "hershey": held_out_records(work, recipe.curve_n, recipe.height)}
    crohme = crohme_records(work, "test2014", recipe.curve_n, recipe.height)
    return {**sets, "crohme2014": crohme} if crohme else sets


def check_recipe(recipe: Pretraining) -> None:
    """Refuse, before any work, a recipe naming a shape, preset or starting base that does not exist."""
    from ..models.model import check_model
    from ..models.tiny import SIZES
    from .sftconfig import PRESETS

    if recipe.size not in SIZES:
        raise ValueError(f"--size {recipe.size!r}: no such shape; choose from {', '.join(sorted(SIZES))}")
    if recipe.preset not in PRESETS:
        raise ValueError(f"preset {recipe.preset!r}: no such preset; choose from {', '.join(sorted(PRESETS))}")
    if recipe.init:
        check_model(recipe.init)
    if recipe.crohme_train and not crohme_train_root().is_dir():
        raise FileNotFoundError(f"{crohme_train_root()}: not found; this recipe trains on CROHME train expressions "
                                f"(crohme_train={recipe.crohme_train}): set UNIMUMER_CROHME to the CROHME root")


def check_work(work: Path, recipe: Pretraining, resume: bool) -> None:
    """Refuse, before any work, a ``work`` folder holding another pretraining run (another recipe), or this
    recipe's run without ``resume`` (its checkpoints would be trained over)."""
    if not (work / RUN_START).exists():
        return
    from ..core.provenance import other_settings

    held = _run_recipe(work)
    if held is not None and held != recipe:
        raise other_settings(work, "a pretraining run", asdict(held), asdict(recipe), "choose a new --work",
                             keys=list(asdict(recipe)))
    if not resume and any((work / "sft").glob("checkpoint-*")):
        raise ValueError(f"{work}: holds this recipe's run already; --resume continues it, or choose a new --work")


def check_out(out: Path) -> None:
    """Refuse, before any work, an ``out`` that is a file or a folder holding anything."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: not a new or empty folder; the base is written into a new or empty folder "
                              f"(nothing there is replaced)")


def publish(folder: Path, out: Path, work: Path, recipe: Pretraining, facts: dict) -> dict:
    """Write the base from a trained ``folder`` (the run's ``final/`` or one of its checkpoints) into ``out``:
    weights, processor, caption list, ``run_config.json`` (every segment) and the model card."""
    import shutil

    from ..models.model import load_model, num_parameters
    from ..models.tiny import SIZES
    from .train import read_loss_history

    check_out(out)
    state = json.loads((folder / "trainer_state.json").read_text()) if (folder / "trainer_state.json").exists() \
        else None
    out.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.is_file() and path.suffix in (".json", ".jinja", ".safetensors", ".txt") and \
                path.name not in ("trainer_state.json", "training_args.bin"):
            shutil.copy2(path, out / path.name)
    write_caption_list(work / "stream", out, recipe.init)
    if recipe.half_storage:
        store_half(out)
    model, _ = load_model(out, dtype="float32")
    history = read_loss_history(work / "sft")
    steps = state["global_step"] if state else history[-1]["step"]
    points = [p for p in read_points(work / "curve") if p["step"] <= steps]
    segment = {"commit": facts["commit"], "steps": steps, "init": recipe.init, "train_wall_s": facts["train_wall_s"],
               "final_loss": next((h["loss"] for h in reversed(history) if h["step"] <= steps), None),
               "recipe": asdict(recipe)}
    record = {
        "profile": PROFILE, "name": recipe.name, "commit": facts["commit"], "size": recipe.size,
        "shape": SIZES[recipe.size], "parameters": num_parameters(model), "preset": recipe.preset, "steps": steps,
        "seed": recipe.seed, "batch_size": 8, "height": recipe.height, "recipe": asdict(recipe),
        "stream": {k: v for k, v in facts["stream"].items() if k != "rejects"}, "rows": facts.get("rows"),
        "pretrain_seeds": shard_seeds(recipe.n, recipe.first_shard), "held_out_seed": HELD_OUT_SEED,
        "held_out_pool": HELD_OUT_POOL,
        "excluded_captions": facts["excluded_captions"], "train_wall_s": facts["train_wall_s"],
        "data_wall_s": facts["data_wall_s"], "final_loss": segment["final_loss"], "learning_curve": points,
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in history if h["step"] <= steps][::10],
        "segments": [*previous_segments(recipe.init), segment], "published_from": folder.name,
        **({"notes": facts["notes"]} if facts.get("notes") else {}),
        **({"crohme_train": {k: v for k, v in facts["crohme_train"].items() if k != "rejects"} | {
            "repeats": recipe.crohme_train, "rejects": facts["crohme_train"]["rejects"][:50]}}
           if facts.get("crohme_train") else {}),
    }
    if recipe.glyph_share:
        from ..data.glyphs import SHIPPED_BANK, load_bank

        bank = load_bank()
        record["glyphs"] = {"bank": SHIPPED_BANK.relative_to(SHIPPED_BANK.parents[2]).as_posix(),
                            "writer_group": recipe.writer_group, "share": recipe.glyph_share,
                            "writers": int(len(bank.subset(group=recipe.writer_group).writer_ids)),
                            "bank_writers": len(bank.writers), "source": bank.source}
    atomic_write_text(out / "run_config.json", json.dumps(record, indent=1, default=str) + "\n")
    atomic_write_text(out / "README.md", glyph_model_card(record) if recipe.glyph_share else model_card(record))
    return record


def store_half(folder: Path) -> None:
    """Store the weights of ``folder`` in float16 (half the bytes); ``config.json`` keeps float32, so
    ``from_pretrained`` (dtype "auto") loads them back as float32, what this CPU computes in (it runs bf16/fp16
    matrix products about 100x slower)."""
    import torch
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "float32"
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")


RUN_START = "pretrain.json"  # in --work: the commit a pretraining run started from (publish_checkpoint reads it)


def _run_commit(work: Path) -> str | None:
    """The commit the run in ``work`` started from (``RUN_START``)."""
    try:
        return json.loads((Path(work) / RUN_START).read_text(encoding="utf-8")).get("commit")
    except (OSError, ValueError):
        return None


def _run_recipe(work: Path) -> Pretraining | None:
    """The recipe the run in ``work`` was started with (``RUN_START``): what its checkpoints were trained with,
    whatever a later command line says."""
    try:
        recorded = json.loads((Path(work) / RUN_START).read_text(encoding="utf-8"))["recipe"]
    except (FileNotFoundError, KeyError):
        return None
    return Pretraining(**{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()})


def read_points(folder: Path) -> list[dict]:
    """The learning curve's points written so far (``callbacks.CURVE_POINTS``)."""
    from .callbacks import CURVE_POINTS

    path = Path(folder) / CURVE_POINTS
    points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return sorted({p["step"]: p for p in points}.values(), key=lambda p: p["step"])  # a resumed run: the latest


def publish_checkpoint(work: Path, out: Path, recipe: Pretraining, step: int | None = None,
                       notes: str | None = None) -> dict:
    """Publish a checkpoint of a running (or stopped) pretraining in ``work`` as a base in ``out``: the one of
    ``step``, else the one whose held-out ExpRate on the curve is best (ties: the later)."""
    import re

    from .train import git_commit

    work = Path(work)
    found = {int(m.group(1)): p for p in (work / "sft").glob("checkpoint-*")
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "model.safetensors").exists()}
    if not found:
        raise FileNotFoundError(f"{work / 'sft'}: no checkpoint to publish")
    if step is None:
        scored = {p["step"]: p["exprate"] for p in read_points(work / "curve") if p["step"] in found}
        step = max(scored, key=lambda k: (scored[k], k)) if scored else max(found)
    if step not in found:
        raise FileNotFoundError(f"{work / 'sft'}: no checkpoint-{step} (have {sorted(found)})")
    stream = json.loads((work / "stream" / "stream.json").read_text())
    real = work / CROHME_STREAM / "stream.json"
    from ..tasks.build import listed_task_files

    rows = {f.stem: len(json.loads(f.read_text())) for f in listed_task_files(work / "tasks")}
    wall = next((p["wall_s"] for p in read_points(work / "curve") if p["step"] == step), None)
    excluded = {"held_out_pool": len(held_out_captions()), "crohme_test": len(crohme_test_captions())}
    facts = {"commit": _run_commit(work) or git_commit(), "stream": stream, "rows": rows,
             "excluded_captions": excluded, "data_wall_s": None, "train_wall_s": wall, "notes": notes,
             "crohme_train": json.loads(real.read_text()) if real.exists() else None}
    return publish(found[step], Path(out), work, _run_recipe(work) or recipe, facts)
