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
from dataclasses import dataclass
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


RECIPE = Pretraining()
CAPTION_LIST = "pretraining_captions.txt.gz"  # beside the weights: every caption trained on, one per line


def check_seed(seed: int, what: str = "a synthetic split") -> int:
    """Raise unless ``seed`` is outside the pretraining seed range (so no sample is trained on twice)."""
    if seed >= PRETRAIN_SEED:
        raise ValueError(f"seed {seed} of {what} lies in the pretraining range (>= {PRETRAIN_SEED}): its samples "
                         f"would be the tiny base's pretraining samples")
    return seed


def shard_seeds(n: int) -> list[int]:
    """Seeds of the shards holding ``n`` pretraining samples."""
    return [PRETRAIN_SEED + i for i in range((n + SHARD_SIZE - 1) // SHARD_SIZE)]


def held_out_captions(n: int = HELD_OUT_POOL, workers: int | None = None) -> set[str]:
    """Captions of the held-out pool (the synthetic test sets of every profile are drawn from it)."""
    from .render import default_workers
    from .workers import imap_ordered

    jobs = [(HELD_OUT_SEED, i) for i in range(n)]
    return {c for c in imap_ordered(_caption_job, jobs, workers or default_workers(), chunksize=32) if c}


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


def _sample_job(job: tuple[int, int, str, int]) -> tuple[str, str, str | None]:
    """(seed, index, folder, height) -> (id, caption, None) with the PNG written, or (id, "", reason).

    The ink goes through InkML text and back, as ``synth`` + ``prepare`` do, so images equal the pipeline's."""
    from .inkml import caption_of, ink_from_xml, ink_to_xml
    from .prepare import PNG_OPTIONS
    from .render import render_ink
    from .synth import synth_id, synthesize

    seed, index, folder, height = job
    key = synth_id(seed, index)
    try:
        ink = ink_from_xml(ink_to_xml(synthesize(index, seed)).encode(), key)
        buf = io.BytesIO()
        render_ink(ink, height=height).save(buf, format="PNG", **PNG_OPTIONS)
    except ValueError as err:
        return key, "", str(err)
    (Path(folder) / f"{key}.png").write_bytes(buf.getvalue())
    return key, caption_of(ink), None


def make_stream(out: Path, n: int, height: int = HEIGHT, exclude: set[str] = frozenset(),
                workers: int | None = None, progress: bool = True) -> dict:
    """Render ``n`` pretraining samples into ``out/images`` and write ``out/caption.txt`` (samples whose caption
    is in ``exclude`` are left out and counted). A finished stream (its ``stream.json``) is reused."""
    from contextlib import closing

    from tqdm.auto import tqdm

    from .render import default_workers
    from .workers import imap_ordered

    out = Path(out)
    marker = out / "stream.json"
    settings = {"n": n, "height": height, "seeds": shard_seeds(n), "shard_size": SHARD_SIZE}
    if marker.exists():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done["settings"] == settings:
            return done
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, i, str(images), height) for k, seed in enumerate(settings["seeds"])
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


def curve_callback(processor, records, work: Path, every: int, max_new_tokens: int = 96):
    """A TrainerCallback scoring ``records`` greedily every ``every`` steps: ``.points`` = [{step, exprate, ...}]."""
    from transformers import TrainerCallback

    from .infer import predict
    from .metrics import score

    class Curve(TrainerCallback):
        def __init__(self):
            self.points: list[dict] = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if every and state.global_step % every == 0:
                model.eval()
                preds = predict(model, processor, records, work / f"curve_{state.global_step}.json",
                                batch_size=16, max_new_tokens=max_new_tokens, progress=False)
                model.train()
                m = score([p.gt for p in preds], [p.pred for p in preds])
                point = {"step": state.global_step, "exprate": m.exprate, "le1": m.le1, "le2": m.le2, "cer": m.cer,
                         "distinct": len({p.pred for p in preds}), "n": len(preds),
                         "wall_s": round(time.perf_counter() - start, 1)}
                self.points.append(point)
                print(f"curve: {json.dumps(point)}", flush=True)

    start = time.perf_counter()
    return Curve()


def held_out_records(work: Path, n: int, height: int = HEIGHT, offset: int = 0) -> list:
    """``n`` records of the held-out pool (samples ``offset``.. of ``HELD_OUT_SEED``), rendered into ``work``."""
    from .records import Record

    folder = Path(work) / f"held_out_h{height}"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(offset, offset + n):
        key, caption, reason = _sample_job((HELD_OUT_SEED, i, str(folder), height))
        if reason is None:
            out.append(Record(id=key, caption=caption, image_path=str(folder / f"{key}.png")))
    return out


def write_caption_list(stream: Path, out: Path) -> Path:
    """``out/pretraining_captions.txt.gz``: the distinct captions of the stream, sorted (the disjointness tests
    read it)."""
    import gzip

    from .files import atomic_write_bytes
    from .records import read_captions

    captions = sorted(set(read_captions(Path(stream) / "caption.txt").values()))
    return atomic_write_bytes(Path(out) / CAPTION_LIST, gzip.compress(("\n".join(captions) + "\n").encode(), mtime=0))


def read_caption_list(folder: Path) -> set[str]:
    """The captions a pretrained base was trained on (its ``pretraining_captions.txt.gz``)."""
    import gzip

    return set(gzip.decompress((Path(folder) / CAPTION_LIST).read_bytes()).decode().splitlines())


def pretrain(out: Path, work: Path, recipe: Pretraining = RECIPE, resume: bool = False,
             workers: int | None = None) -> dict:
    """Pretrain the tiny model as ``recipe`` says; write the base to ``out``.

    ``work`` holds the stream, checkpoints and curve predictions (``resume`` continues from its last checkpoint).
    Returns the run config written to ``out/run_config.json``.
    """
    import shutil

    from .model import SIZES, num_parameters, tiny_model
    from .tasks import caption_items, caption_rows, write_task_files
    from .train import FINAL_DIR, git_commit, read_loss_history, train
    from .sftdata import load_sharegpt_dataset

    work, out = Path(work), Path(out)
    n, steps, size, seed, preset = recipe.n, recipe.steps, recipe.size, recipe.seed, recipe.preset
    commit, t0 = git_commit(), time.perf_counter()  # the code this run starts from
    exclude_pool, exclude_crohme = held_out_captions(workers=workers), crohme_test_captions()
    stream = make_stream(work / "stream", n, exclude=exclude_pool | exclude_crohme, workers=workers)
    items, missing = caption_items(work / "stream" / "caption.txt")
    if missing:
        raise FileNotFoundError(f"{work / 'stream'}: {len(missing)} image(s) missing, e.g. {missing[0][1]}")
    rows, rejects = caption_rows(items, list(recipe.tasks), progress=False)
    files = write_task_files(work / "tasks", rows, rejects)
    dataset = load_sharegpt_dataset([files[t] for t in recipe.tasks], seed=seed)
    data_wall = time.perf_counter() - t0
    model, processor = tiny_model(size, seed=seed)
    curve = curve_callback(processor, held_out_records(work, recipe.curve_n), work / "curve",
                           recipe.curve_every)
    result = train(dataset, model=model, processor=processor, preset=preset, out_dir=work / "sft", max_steps=steps,
                   seed=seed, save_steps=recipe.save_steps, resume=resume, callbacks=[curve])
    final = Path(result.final_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: not empty; the base is written into a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    for path in final.iterdir():
        if path.is_file() and path.name != "training_args.bin":  # a pickle; run_config.json records the settings
            shutil.copy2(path, out / path.name)
    write_caption_list(work / "stream", out)
    history = read_loss_history(work / "sft")
    record = {
        "profile": PROFILE, "commit": commit, "size": size, "shape": SIZES[size],
        "parameters": num_parameters(model), "preset": preset, "steps": result.global_step, "seed": seed,
        "batch_size": result.trainer.args.per_device_train_batch_size, "height": HEIGHT,
        "stream": {k: v for k, v in stream.items() if k != "rejects"}, "pretrain_seeds": shard_seeds(n),
        "held_out_seed": HELD_OUT_SEED, "held_out_pool": HELD_OUT_POOL,
        "excluded_captions": {"held_out_pool": len(exclude_pool), "crohme_test": len(exclude_crohme)},
        "train_wall_s": round(result.wall_s, 1), "data_wall_s": round(data_wall, 1),
        "final_loss": result.last_loss, "learning_curve": curve.points,
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in history][::10],
        "final_dir": FINAL_DIR,
    }
    atomic_write_text(out / "run_config.json", json.dumps(record, indent=1, default=str) + "\n")
    atomic_write_text(out / "README.md", model_card(record))
    return record


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
