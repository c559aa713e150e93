"""The tiny base model: the tiny Qwen2.5-VL pretrained on synthetic handwriting (image -> LaTeX, vanilla prompt).

It is the CPU stand-in for Qwen2.5-VL-3B-Instruct. The paper fine-tunes a model that already reads, so every CPU
run fine-tunes from this base too (``model.load_model("tiny-base")``). Pretraining uses the same classes,
processor, chat template and TRL trainer as every other run (``train.train``). Its data is a stream of unique
synthetic samples:

- shard ``i`` is drawn with seed ``PRETRAIN_SEED + i``, disjoint from every seed a profile or test uses (they
  all lie below ``PRETRAIN_SEED``, which ``check_seed`` asserts);
- captions of the held-out pool are excluded: the first ``HELD_OUT_POOL`` samples of ``HELD_OUT_SEED``, from
  which the smoke/cpu synthetic test sets are drawn (``reproduce.synthetic_root``);
- so are the captions of the CROHME test splits, when they are at hand.

The output is a normal Hugging Face folder: config, safetensors weights, tokenizer, processor, generation config,
plus ``run_config.json`` (seeds, steps, wall time, commit, learning curve) and a model card ``README.md``.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from .files import atomic_write_text

PRETRAIN_SEED = 1_000_000  # shard i of the pretraining stream: seed PRETRAIN_SEED + i
SHARD_SIZE = 10_000
HELD_OUT_SEED = 1  # the synthetic test seed of every profile (train uses seed 0)
HELD_OUT_POOL = 3_000  # samples 0..HELD_OUT_POOL-1 of HELD_OUT_SEED: the held-out pool
BASE_NAME = "tiny-base"  # its folder: model.SHIPPED[BASE_NAME]
PROFILE = "pretrain"
HEIGHT = 64  # what the smoke/cpu profiles prepare their images at (``prepare --height 64``)


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
)
GLYPH_RECIPE = GLYPH_SEGMENTS[-1]  # what `unimumer pretrain --recipe glyph-base` runs: the next segment
RECIPES = {RECIPE.name: RECIPE, GLYPH_RECIPE.name: GLYPH_RECIPE}
CAPTION_LIST = "pretraining_captions.txt.gz"  # beside the weights: every caption trained on, one per line


def check_seed(seed: int, what: str = "a synthetic split") -> int:
    """Raise unless ``seed`` is outside the pretraining seed range (so no sample is trained on twice)."""
    if seed >= PRETRAIN_SEED:
        raise ValueError(f"seed {seed} of {what} lies in the pretraining range (>= {PRETRAIN_SEED}): its samples "
                         f"would be the tiny base's pretraining samples")
    return seed


def shard_seeds(n: int, first: int = 0) -> list[int]:
    """Seeds of the shards holding ``n`` pretraining samples, from shard ``first`` on."""
    return [PRETRAIN_SEED + first + i for i in range((n + SHARD_SIZE - 1) // SHARD_SIZE)]


def held_out_captions(n: int = HELD_OUT_POOL, workers: int | None = None) -> frozenset[str]:
    """Captions of the held-out pool (the synthetic test sets of every profile are drawn from it); computed once
    per process."""
    return _held_out_captions(n, workers)


@lru_cache(maxsize=2)
def _held_out_captions(n: int, workers: int | None) -> frozenset[str]:
    from .render import default_workers
    from .workers import imap_ordered

    jobs = [(HELD_OUT_SEED, i) for i in range(n)]
    return frozenset(c for c in imap_ordered(_caption_job, jobs, workers or default_workers(), chunksize=32) if c)


def _caption_job(job: tuple[int, int]) -> str:
    from .synth import synthesize

    seed, index = job
    try:
        return synthesize(index, seed).latex.strip("$")
    except ValueError:
        return ""


def crohme_test_captions(root: Path | None = None) -> set[str]:
    """Captions of the CROHME test splits under ``root`` (default ``config.crohme_root()``); empty if absent."""
    from .config import crohme_root
    from .inkml import InkmlError, caption_of, find_inkml, read_inkml

    root = Path(root) if root else crohme_root()
    out = set()
    for split in sorted(root.glob("test*")) if root.is_dir() else []:
        for path in find_inkml(split):
            try:
                out.add(caption_of(read_inkml(path)))
            except (InkmlError, ValueError, RecursionError):
                continue
    return out


def uses_glyphs(seed: int, index: int, share: float) -> bool:
    """Whether sample ``index`` of ``seed`` is written with real glyphs (a draw of its own, so the same whatever
    the order or the workers)."""
    import numpy as np

    return share > 0 and np.random.default_rng([seed, index, 7]).random() < share


def _sample_job(job: tuple) -> tuple[str, str, str | None]:
    """(seed, index, folder, height[, glyph share, writer group]) -> (id, caption, None) with the PNG written, or
    (id, "", reason).

    The ink goes through InkML text and back, as ``synth`` + ``prepare`` do, so images equal the pipeline's."""
    from .inkml import caption_of, ink_from_xml, ink_to_xml
    from .prepare import PNG_OPTIONS
    from .render import render_ink
    from .glyphs import SHIPPED_NAME, bank_for
    from .synth import synth_id, synthesize

    seed, index, folder, height, share, group = (*job, 0.0, None)[:6]
    key = synth_id(seed, index)
    try:
        bank = bank_for(SHIPPED_NAME, group) if uses_glyphs(seed, index, share) else None
        ink = ink_from_xml(ink_to_xml(synthesize(index, seed, bank=bank)).encode(), key)
        buf = io.BytesIO()
        render_ink(ink, height=height).save(buf, format="PNG", **PNG_OPTIONS)
    except ValueError as err:
        return key, "", str(err)
    (Path(folder) / f"{key}.png").write_bytes(buf.getvalue())
    return key, caption_of(ink), None


def make_stream(out: Path, n: int, height: int = HEIGHT, exclude: set[str] = frozenset(),
                workers: int | None = None, progress: bool = True, glyph_share: float = 0.0,
                writer_group: str = "pretrain", first_shard: int = 0) -> dict:
    """Render ``n`` pretraining samples into ``out/images`` and write ``out/caption.txt`` (samples whose caption
    is in ``exclude`` are left out and counted); ``glyph_share`` of them in real glyphs of the shipped bank's
    ``writer_group``; shards from ``first_shard`` on. A finished stream (its ``stream.json``) is reused."""
    from contextlib import closing

    from tqdm.auto import tqdm

    from .render import default_workers
    from .workers import imap_ordered

    out = Path(out)
    marker = out / "stream.json"
    settings = {"n": n, "height": height, "seeds": shard_seeds(n, first_shard), "shard_size": SHARD_SIZE}
    if glyph_share:
        settings.update(glyph_share=glyph_share, writer_group=writer_group)
    if marker.exists():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done["settings"] == settings:
            return done
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, str(images), height, glyph_share, writer_group) for k, seed in enumerate(settings["seeds"])
            for i in range(min(SHARD_SIZE, n - k * SHARD_SIZE))]
    kept, excluded, rejects = [], 0, []
    with closing(imap_ordered(_sample_job, jobs, workers or default_workers(), chunksize=32)) as results:
        for key, caption, reason in tqdm(results, total=len(jobs), desc="pretraining stream", unit="sample",
                                         mininterval=2.0, disable=not progress):
            if reason is not None:
                rejects.append((key, reason))
            elif caption in exclude:
                excluded += 1
                (images / f"{key}.png").unlink()
            else:
                kept.append((key, caption))
    atomic_write_text(out / "caption.txt", "".join(f"{k}\t{c}\n" for k, c in kept))
    summary = {"settings": settings, "read": len(jobs), "written": len(kept), "excluded_held_out": excluded,
               "rejected": len(rejects), "rejects": rejects[:50]}
    assert summary["read"] == summary["written"] + excluded + len(rejects)
    atomic_write_text(marker, json.dumps(summary, indent=1) + "\n")
    return summary


def held_out_records(work: Path, n: int, height: int = HEIGHT, offset: int = 0, glyphs: str | None = None) -> list:
    """``n`` records of the held-out pool (samples ``offset``.. of ``HELD_OUT_SEED``), rendered into ``work``;
    ``glyphs``: written with real glyphs of that writer group of the shipped bank (e.g. ``"test"``)."""
    from .records import Record

    folder = Path(work) / (f"held_out_h{height}" + (f"_{glyphs}" if glyphs else ""))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(offset, offset + n):
        key, caption, reason = _sample_job((HELD_OUT_SEED, i, str(folder), height, 1.0 if glyphs else 0.0, glyphs))
        if reason is None:
            out.append(Record(id=key, caption=caption, image_path=str(folder / f"{key}.png")))
    return out


def crohme_records(work: Path, split: str, n: int, height: int = HEIGHT, seed: int = 0) -> list:
    """``n`` expressions of a CROHME split (a seeded choice; all if fewer), rendered into ``work`` as
    ``prepare`` renders them: the curve's real-handwriting yardstick (never trained on, never used to choose)."""
    import random

    from .config import crohme_root
    from .inkml import InkmlError, caption_of, find_inkml, read_inkml
    from .records import Record
    from .render import render_ink

    files = find_inkml(crohme_root() / split) if (crohme_root() / split).is_dir() else []
    picked = sorted(random.Random(seed).sample(files, min(n, len(files))))
    folder = Path(work) / f"{split}_h{height}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in picked:
        try:
            ink = read_inkml(path)
            image = folder / f"{ink.id}.png"
            render_ink(ink, height=height).save(image)
            out.append(Record(id=ink.id, caption=caption_of(ink), image_path=str(image)))
        except (InkmlError, ValueError):
            continue
    return out


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

    from . import edl
    from .taskspec import get
    from .tasks import caption_rows, edl_task_rows

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
                rows.setdefault("vanilla", []).extend(caption_rows([(key, caption, image)], ["vanilla"],
                                                                   progress=False)[0]["vanilla"])
            else:
                records += edl.edl_records([(image, caption, pred)], source=edl.SYNTHETIC)
        rows.setdefault(task, []).extend(edl_task_rows(records, [task])[task])
    return rows, rejects


def previous_segments(init: str | Path | None) -> list[dict]:
    """The segments of the base ``init`` continues (its run_config.json), [] for a random start."""
    if not init:
        return []
    from .model import resolve_model_path

    record = json.loads((Path(resolve_model_path(init)) / "run_config.json").read_text(encoding="utf-8"))
    return record.get("segments") or [{"init": None, **{k: record.get(k) for k in ("commit", "steps", "train_wall_s",
                                                                                     "final_loss")}}]


def write_caption_list(stream: Path, out: Path, init: str | Path | None = None) -> Path:
    """``out/pretraining_captions.txt.gz``: the distinct captions of the stream and of every earlier segment (the
    list of the base ``init`` continues), sorted (the disjointness tests read it)."""
    import gzip

    from .files import atomic_write_bytes
    from .records import read_captions

    captions = set(read_captions(Path(stream) / "caption.txt").values())
    if init:
        from .model import resolve_model_path

        earlier = Path(resolve_model_path(init))
        captions |= read_caption_list(earlier) if (earlier / CAPTION_LIST).exists() else set()
    captions = sorted(captions)
    return atomic_write_bytes(Path(out) / CAPTION_LIST, gzip.compress(("\n".join(captions) + "\n").encode(), mtime=0))


def read_caption_list(folder: Path) -> set[str]:
    """The captions a pretrained base was trained on (its ``pretraining_captions.txt.gz``)."""
    import gzip

    return set(gzip.decompress((Path(folder) / CAPTION_LIST).read_bytes()).decode().splitlines())




def pretrain(out: Path, work: Path, recipe: Pretraining = RECIPE, resume: bool = False,
             workers: int | None = None) -> dict:
    """Pretrain the tiny model as ``recipe`` says; write the base to ``out``.

    ``work`` holds the stream, checkpoints and curve predictions (``resume`` continues from its last checkpoint).
    ``recipe.init``: start from that base's weights (a new segment of its pretraining) instead of random ones.
    Returns the run config written to ``out/run_config.json``.
    """
    from .tasks import caption_items, write_task_files
    from .train import curve_callback, git_commit, train
    from .sftdata import load_sharegpt_dataset

    work, out = Path(work), Path(out)
    check_out(out)
    check_recipe(recipe)
    check_work(work, recipe, resume)
    commit, t0 = git_commit(), time.perf_counter()  # the code this run starts from
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / RUN_START, json.dumps({"commit": commit, "recipe": asdict(recipe)}, indent=1) + "\n")
    exclude_pool, exclude_crohme = held_out_captions(workers=workers), crohme_test_captions()
    stream = make_stream(work / "stream", recipe.n, recipe.height, exclude_pool | exclude_crohme, workers,
                         glyph_share=recipe.glyph_share, writer_group=recipe.writer_group,
                         first_shard=recipe.first_shard)
    items, missing = caption_items(work / "stream" / "caption.txt")
    if missing:
        raise FileNotFoundError(f"{work / 'stream'}: {len(missing)} image(s) missing, e.g. {missing[0][1]}")
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
             "data_wall_s": round(data_wall, 1), "train_wall_s": round(result.wall_s, 1)}
    return publish(Path(result.final_dir), out, work, recipe, facts)


def start_model(recipe: Pretraining):
    """(model, processor) a segment starts from: random weights of ``recipe.size``, or the base ``recipe.init``,
    grown to ``recipe.size``'s depth when that is deeper (``model.grow``: it computes what the base computed)."""
    from .model import SIZES, grow, load_model, tiny_model

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
    from .model import SIZES, check_model
    from .sftconfig import PRESETS

    if recipe.size not in SIZES:
        raise ValueError(f"--size {recipe.size!r}: no such shape; choose from {', '.join(sorted(SIZES))}")
    if recipe.preset not in PRESETS:
        raise ValueError(f"preset {recipe.preset!r}: no such preset; choose from {', '.join(sorted(PRESETS))}")
    if recipe.init:
        check_model(recipe.init)


def check_work(work: Path, recipe: Pretraining, resume: bool) -> None:
    """Refuse, before any work, a ``work`` folder holding another pretraining run (another recipe), or this
    recipe's run without ``resume`` (its checkpoints would be trained over)."""
    if not (work / RUN_START).exists():
        return
    held = _run_recipe(work)
    if held is not None and held != recipe:
        diff = [k for k, v in asdict(recipe).items() if asdict(held).get(k) != v]
        raise ValueError(f"{work}: holds a pretraining run of another recipe (differs in {', '.join(diff)}); "
                         f"choose a new --work")
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

    from .model import SIZES, load_model, num_parameters
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
    }
    if recipe.glyph_share:
        from .glyphs import SHIPPED_BANK, load_bank

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
    """The learning curve's points written so far (``train.CURVE_POINTS``)."""
    from .train import CURVE_POINTS

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
    from .tasks import listed_task_files

    rows = {f.stem: len(json.loads(f.read_text())) for f in listed_task_files(work / "tasks")}
    wall = next((p["wall_s"] for p in read_points(work / "curve") if p["step"] == step), None)
    excluded = {"held_out_pool": len(held_out_captions()), "crohme_test": len(crohme_test_captions())}
    facts = {"commit": _run_commit(work) or git_commit(), "stream": stream, "rows": rows,
             "excluded_captions": excluded, "data_wall_s": None, "train_wall_s": wall, "notes": notes}
    return publish(found[step], Path(out), work, _run_recipe(work) or recipe, facts)


def model_card(record: dict) -> str:
    """The base's model card: data, recipe, steps, held-out numbers, how to rebuild it, licence."""
    last = record["learning_curve"][-1] if record["learning_curve"] else {}
    curve = "\n".join(f"| {p['step']:,} | {p['exprate']:.1f} | {p['le1']:.1f} | {p['le2']:.1f} | "
                      f"{p['distinct']}/{p['n']} |" for p in record["learning_curve"])
    s = record["stream"]
    data_min = (record.get("stream_wall_s", 0) + record["data_wall_s"]) / 60  # a reused stream: its first run's time
    notes = f" (and `notes`: {record['notes']})" if record.get("notes") else ""
    return f"""---
license: apache-2.0
library_name: transformers
pipeline_tag: image-text-to-text
tags: [handwritten-mathematical-expression-recognition, qwen2_5_vl, unimumer, synthetic]
---
# unimumer tiny-base

A {record['parameters'] / 1e6:.2f} M-parameter Qwen2.5-VL (the `{record['size']}` shape of `unimumer_lib.model.SIZES`)
pretrained on CPU to read synthetic handwritten expressions: image -> LaTeX with Uni-MuMER's vanilla prompt. It is the
CPU stand-in for Qwen2.5-VL-3B-Instruct: the smoke and cpu profiles fine-tune from it, as the paper fine-tunes
from a model that already reads. It is not a model for real handwriting: it has seen only synthetic writers.

- **Data**: {s['written']:,} unique synthetic samples (`unimumer_lib.synth`, seeds {record['pretrain_seeds'][0]}..
  {record['pretrain_seeds'][-1]}, {s['settings']['shard_size']:,} per seed), rendered {record['height']} px high as
  `prepare --height {record['height']}` renders them. Left out: {s['excluded_held_out']:,} samples whose caption is
  in the held-out pool (the first {record['held_out_pool']:,} samples of seed {record['held_out_seed']}, from which
  every synthetic test set is drawn: {record['excluded_captions']['held_out_pool']:,} captions) or in the CROHME test
  splits ({record['excluded_captions']['crohme_test']:,} captions); {s['rejected']} could not be laid out.
- **Recipe**: TRL `SFTTrainer` through `unimumer_lib.train`, preset `{record['preset']}`, {record['steps']:,} steps of
  {record['batch_size']}, seed {record['seed']}, assistant-only loss; final logged loss {record['final_loss']:.3f}.
- **Compute**: {record['train_wall_s'] / 60:.0f} min of training on a 2-core CPU (+ {data_min:.0f} min making the
  data), commit `{record['commit']}`.
- **Held-out** (greedy, {last.get('n', 0)} expressions of the held-out pool, unseen writers and captions):
  ExpRate {last.get('exprate', 0):.1f} %, <=1 {last.get('le1', 0):.1f} %, <=2 {last.get('le2', 0):.1f} %.

| step | ExpRate % | <=1 % | <=2 % | distinct |
| --- | --- | --- | --- | --- |
{curve}

**Rebuild**: `unimumer pretrain --out DIR --work WORKDIR` (its defaults are the shipped recipe; about 90 min on 2
cores); `run_config.json` records every setting{notes}.

**Use**: `unimumer_lib.model.load_model("tiny-base")`, or `from_pretrained` on this folder.

**Licence**: Apache-2.0, as the unimumer code. The data is synthetic (Hershey glyph outlines from `hershey-fonts`).
"""


def _segments_line(record: dict) -> str:
    """The model card's note that its data/recipe lines describe the last of several segments ("" for one)."""
    n = len(record["segments"])
    return (f"The data, tasks and recipe below are those of the last segment ({n}); the table after them lists every "
            f"segment, each continuing the one before (`pretrain.GLYPH_SEGMENTS` holds the recipes).\n\n"
            if n > 1 else "")


def glyph_model_card(record: dict) -> str:
    """The real-glyph base's model card: data (glyph bank, writers, tasks), recipe, segments, curve, licence."""
    last = record["learning_curve"][-1] if record["learning_curve"] else {}
    sets = [k for k in ("hershey", "crohme2014") if k in last]
    head = "| step | held-out real glyphs ExpRate % | <=1 % | <=2 % | " + " | ".join(f"{k} ExpRate %" for k in sets)
    rows = "\n".join(f"| {p['step']:,} | {p['exprate']:.1f} | {p['le1']:.1f} | {p['le2']:.1f} | "
                     + " | ".join(f"{p[k]['exprate']:.1f}" for k in sets if k in p) + " |"
                     for p in record["learning_curve"])
    segments = "\n".join(f"| {i + 1} | `{g['commit']}` | {g.get('init') or 'random'} | "
                         f"{(g.get('recipe') or {}).get('size', 'tiny')} | {g['steps']:,} | "
                         f"{(g['train_wall_s'] or 0) / 60:.0f} |" for i, g in enumerate(record["segments"]))
    g, s, r = record["glyphs"], record["stream"], record["recipe"]
    shares = ", ".join(f"{t} {x:.0%}" for t, x in zip(r["tasks"], r["task_shares"] or [1] * len(r["tasks"])))
    return f"""---
license: cc-by-nc-sa-3.0
library_name: transformers
pipeline_tag: image-text-to-text
tags: [handwritten-mathematical-expression-recognition, qwen2_5_vl, unimumer, crohme]
---
# unimumer {record['name']}

A {record['parameters'] / 1e6:.2f} M-parameter Qwen2.5-VL (the `{record['size']}` shape of `unimumer_lib.model.SIZES`)
pretrained on CPU to read handwritten expressions composed from **real handwritten glyphs**, with a share of every
Uni-MuMER task's prompt and answer format (the CPU stand-in for an instruction-following VLM).

{_segments_line(record)}- **Data**: {s['written']:,} unique expressions (`unimumer_lib.synth` captions and layout, seeds
  {record['pretrain_seeds'][0]}..{record['pretrain_seeds'][-1]}), {g['share']:.0%} written with real glyphs from the
  glyph bank `{g['bank']}` (symbols of CROHME `{g['source']}`), only its `{g['writer_group']}` writers
  ({g['writers']:,} of {g['bank_writers']:,}; the others are kept for fine-tuning and test sets), one writer per
  expression where that writer wrote the symbol, the rest Hershey glyphs; rendered {record['height']} px high.
  Left out: samples whose caption is in the held-out pool ({record['excluded_captions']['held_out_pool']:,}
  captions) or in the CROHME test splits ({record['excluded_captions']['crohme_test']:,} captions).
- **Tasks** (each sample trains one, drawn with these shares): {shares}; rows {record['rows']}. EDL rows carry
  1-2 look-alike errors (`edl.LOOKALIKES`).
- **Recipe**: TRL `SFTTrainer` through `unimumer_lib.train`, preset `{record['preset']}`, {record['steps']:,} steps of
  {record['batch_size']}, assistant-only loss (plain token mean); published from `{record['published_from']}`.
- **Held-out** (greedy, vanilla prompt; {last.get('n', 0)} expressions of the held-out pool in the glyphs of the
  bank's test writers, which pretraining never saw): ExpRate {last.get('exprate', 0):.1f} %.
  CROHME 2014 is measured on a fixed sample for the curve only; it never chose a checkpoint.
  The curve below is the last segment's (step 0 is where the segment started).

| segment | commit | started from | shape (a deeper one: grown, `model.grow`) | steps | minutes |
| --- | --- | --- | --- | --- | --- |
{segments}

{head} |
| {' | '.join(['---'] * (4 + len(sets)))} |
{rows}

{("**Notes**: " + record["notes"] + chr(10)) if record.get("notes") else ""}
**Rebuild / continue**: `unimumer pretrain --recipe {record['name']} --out DIR --work WORKDIR` runs the last
segment's recipe from the base it started from (`--init` another base to continue that one instead);
`run_config.json` records every setting.

**Licence**: the weights are derived from CROHME glyphs: CC BY-NC-SA 3.0 (attribution: the CROHME organisers,
TC-11 / IAPR; research use only). The code that made them is Apache-2.0.
"""
