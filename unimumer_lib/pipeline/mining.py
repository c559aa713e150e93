"""Error-driven-learning data mined from models: sample outputs on images the model did not train on, keep errors.

Two sources of such a model. ``mine_errors`` is the paper's k-fold scheme: the training caption set is split
into k seeded folds, a model is trained (``train.train``, any model/preset) on the other k-1 folds with the
vanilla task, then several outputs per held-out image are sampled. ``mine_with_model`` samples a given model
that never saw the training images at all -- the pretrained base on the fine-tuning set (the smoke and cpu
profiles), which costs no extra training. Either way every distinct output that differs from the caption becomes
an error_find and an error_fix record (``edl`` alignment, through ``tasks.build_task_files``). Finished folds
are kept, so a killed run resumes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ..formats.predictions import Prediction, read_rows, write_predictions
from ..formats.records import IMAGES_DIR, IMAGE_SUFFIX, Record
from ..tasks.build import EDL_TASKS, build_task_files, caption_items, caption_rows, write_task_files
from ..tasks.spec import BASE_TASK


MINED_PREDICTIONS = "mined_predictions.json"
FOLD_SAMPLES = "samples.json"


@dataclass(frozen=True)
class Mining:
    """How EDL errors are mined: ``k``-fold (k >= 2: ``model`` trained with ``preset`` on each k-1 folds for
    ``max_steps`` steps, -1 the preset's epochs) or from ``from_model``, a model that never saw the training images
    (``limit`` images, None all); ``samples`` outputs per image at ``temperature``/``top_p``, ``batch_size`` images
    at a time, at most ``max_new_tokens`` each. ``k = 0`` and no ``from_model``: no mining."""

    k: int = 0
    from_model: str | None = None
    model: str = "tiny"
    preset: str = "cpu-smoke"
    max_steps: int = 20
    samples: int = 2
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 96
    batch_size: int = 8
    limit: int | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.from_model or self.k)


def mine(captions, out, settings: Mining, seed: int = 0, progress: bool = True) -> dict | None:
    """Mine EDL errors as ``settings`` say (``mine_with_model`` or ``mine_errors``); None when they ask for none."""
    if settings.from_model:
        return mine_with_model(captions, out, settings, seed=seed, progress=progress)
    if settings.k:
        return mine_errors(captions, out, settings, seed=seed, progress=progress)
    return None


def kfold(ids: list[str], k: int = 5, seed: int = 0) -> list[list[str]]:
    """Split ids into k folds of near-equal size after a seeded shuffle (every id in exactly one fold)."""
    if k < 2:
        raise ValueError(f"k-fold mining needs k >= 2, got {k}")
    if len(ids) < k:
        raise ValueError(f"{len(ids)} captions cannot fill {k} folds")
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return [order[i::k] for i in range(k)]


def distinct_errors(samples: list[Prediction]) -> list[Prediction]:
    """Sampled rows whose prediction differs from the caption, one per distinct (image, prediction)."""
    seen, keep = set(), []
    for s in samples:
        key = (s.img_id, " ".join(s.pred.split()))
        if s.pred.split() != s.gt.split() and key not in seen:
            seen.add(key)
            keep.append(s)
    return keep


def mining_decoding(tokenizer, samples: int = 4, temperature: float = 1.0, top_p: float = 1.0,
                    max_new_tokens: int = 256):
    """The sampling settings of k-fold mining: plain temperature/top-p sampling, no top-k, no repetition penalty."""
    from ..inference.infer import decoding

    return decoding(tokenizer, "sample", max_new_tokens, num_return_sequences=samples, temperature=temperature,
                    top_p=top_p)


def sample_outputs(model, processor, items: list[tuple[str, str, str]], settings: Mining, fold: int = 0,
                   progress: bool = True) -> list[Prediction]:
    """``settings.samples`` sampled recognitions per (id, caption, image) item as prediction rows (``batch_size``
    images at a time, at ``temperature``/``top_p``, at most ``max_new_tokens`` each)."""
    from tqdm.auto import tqdm

    from ..inference.infer import extract, generate

    decoding = mining_decoding(processor.tokenizer, settings.samples, settings.temperature, settings.top_p,
                               settings.max_new_tokens)
    rows, step = [], settings.batch_size
    for i in tqdm(range(0, len(items), step), desc=f"fold {fold} sampling", disable=not progress):
        batch = items[i:i + step]
        outs = generate(model, processor, [img for _, _, img in batch], settings=decoding)
        for (key, caption, image), texts in zip(batch, outs):
            rows += [Prediction(key, caption, extract(t, BASE_TASK), image, {"raw": t, "fold": fold, "sample": j})
                     for j, t in enumerate(texts)]
    return rows


def mine_errors(captions, out, settings: Mining, seed: int = 0, make_model=None, progress: bool = True,
                processes: int | None = None, **train_kwargs) -> dict:
    """Run ``settings.k``-fold EDL mining over a caption set (``caption.txt`` with ``images/`` beside it, or its
    folder): fold f trains ``settings.model`` with ``settings.preset`` for ``settings.max_steps`` steps (-1: the
    preset's epochs) and seed ``seed + f`` on the other folds, then samples its held-out images.

    Writes ``out/fold<i>/`` (training JSON, checkpoints, ``samples.json``), ``out/mined_predictions.json``
    (every distinct wrong sample, Uni-MuMER prediction format + fold/sample) and, through
    ``tasks.build_task_files``, ``out/error_find.json``, ``out/error_fix.json``, ``dataset_info.json``.
    ``make_model()`` -> (model, processor) replaces loading ``settings.model`` for each fold; ``train_kwargs`` go
    to ``train.train``. ``processes`` (default one per visible GPU): folds run side by side, each in its own process
    on its own GPU (``workers.shard_device``). Returns a summary with per-fold counts and the task-file counts
    (read = written + rejected).
    """
    from ..core.workers import gpu_processes

    out = Path(out)
    items, missing = caption_items(captions)
    if missing:
        raise FileNotFoundError(f"{captions}: {len(missing)} image(s) missing, e.g. {missing[0][1]}")
    folds = kfold([key for key, _, _ in items], settings.k, seed)
    todo = [f for f in range(len(folds)) if not (out / f"fold{f}" / FOLD_SAMPLES).exists()]
    processes = 1 if make_model or train_kwargs else min(gpu_processes(processes), max(1, len(todo)))
    if processes > 1:
        _folds_in_processes(captions, out, settings, seed, todo, processes)
    for f in todo if processes == 1 else []:
        run_fold(captions, out, settings, seed, f, make_model, progress, **train_kwargs)
    all_samples, per_fold = [], []
    for f, held in enumerate(folds):
        fold_samples = read_rows(out / f"fold{f}" / FOLD_SAMPLES)
        errors = distinct_errors(fold_samples)
        per_fold.append({"fold": f, "held_out": len(held), "samples": len(fold_samples), "errors": len(errors)})
        all_samples += errors
    return _write_mined(out, all_samples, per_fold, progress, captions)


def run_fold(captions, out, settings: Mining, seed: int, fold: int, make_model=None, progress: bool = True,
             **train_kwargs) -> Path:
    """Fold ``fold`` of ``mine_errors``: train on the other folds, sample the held-out images with the saved model
    (loaded as for inference, once the trainer is freed), write ``out/fold<fold>/samples.json``."""
    from ..inference.infer import load_for_inference
    from ..training.train import train

    items, _ = caption_items(captions)
    by_id = {key: (key, cap, img) for key, cap, img in items}
    held_out = kfold(list(by_id), settings.k, seed)[fold]
    held = set(held_out)
    fold_dir = Path(out) / f"fold{fold}"
    rows, rejects = caption_rows([by_id[i] for i in sorted(by_id) if i not in held], [BASE_TASK], progress=False)
    paths = write_task_files(fold_dir / "data", rows, rejects)
    model, processor = make_model() if make_model else (None, None)
    result = train(paths[BASE_TASK], model_path=settings.model, preset=settings.preset, out_dir=fold_dir / "sft",
                   max_steps=settings.max_steps, seed=seed + fold, model=model, processor=processor, force=True,
                   **train_kwargs)  # force: a fold cut short starts again
    final = result.final_dir
    del result, model, processor  # this fold's trainer, fp32 master weights and optimizer state
    free_memory()  # before sampling and before the next fold's model exists
    fold_model, fold_processor = load_for_inference(final)  # bf16 on a GPU (as inference), fp32 on a CPU
    samples = sample_outputs(fold_model, fold_processor, [by_id[i] for i in held_out], settings, fold, progress)
    write_predictions(fold_dir / FOLD_SAMPLES, samples)
    del fold_model, fold_processor
    free_memory()
    return fold_dir / FOLD_SAMPLES


def _folds_in_processes(captions, out, settings: Mining, seed: int, folds: list[int], processes: int) -> None:
    """Run ``folds`` in at most ``processes`` processes at a time, process i on GPU ``shard_device(i)``."""
    import json
    import os
    import subprocess
    import sys
    from dataclasses import asdict

    import torch

    from ..core.workers import shard_device, threads

    gpus, queue, running, failed = torch.cuda.device_count(), list(folds), {}, []
    while queue or running:
        while queue and len(running) < processes:
            slot = next(i for i in range(processes) if i not in running.values())
            f = queue.pop(0)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads(workers=processes)),
                   **({"CUDA_VISIBLE_DEVICES": shard_device(slot, gpus)} if gpus else {})}
            cmd = [sys.executable, "-m", "unimumer_lib.pipeline.mining", str(captions), str(out), str(f),
                   json.dumps(asdict(settings)), str(seed)]
            running[subprocess.Popen(cmd, env=env)] = slot
        proc = next(iter(running))
        if proc.wait():
            failed.append(proc.args[5])
        running.pop(proc)
    if failed:
        raise RuntimeError(f"{out}: mining fold(s) {', '.join(failed)} failed (their messages are above); rerun to "
                           f"resume from the folds that finished")


def image_root(captions) -> Path:
    """The folder a caption set's images lie under (its own folder: ``caption.txt`` + ``images/``): the root the
    image paths of predictions made from it must stay inside."""
    captions = Path(captions)
    return (captions if captions.is_dir() else captions.parent).resolve()


def free_memory() -> None:
    """Collect what was just released (the trainer and model form reference cycles) and hand the GPU memory
    the caching allocator keeps back to the device."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_mined(out: Path, errors: list[Prediction], per_fold: list[dict], progress: bool, captions) -> dict:
    """``mined_predictions.json`` + the EDL task files of the distinct errors (their images under the folder of
    ``captions``); the mining summary."""
    mined = out / MINED_PREDICTIONS
    write_predictions(mined, errors)
    tasks = build_task_files(out, list(EDL_TASKS), predictions=mined, progress=progress,
                             root=image_root(captions)) if errors else {}
    return {"folds": per_fold, "errors": len(errors), "tasks": tasks, "mined": str(mined)}


def mine_with_model(captions, out, settings: Mining, seed: int = 0, progress: bool = True) -> dict:
    """EDL data from ``settings.from_model``, a model that never trained on the images of ``captions`` (e.g.
    ``"tiny-base"`` on the fine-tuning set): ``settings.samples`` outputs per image (``settings.limit``: a seeded
    choice of that many images), the distinct wrong ones as EDL rows. Same files and summary as ``mine_errors``,
    with one "fold" (``fold`` -1 in the rows)."""
    import torch

    from ..inference.infer import load_for_inference

    model_path, limit = settings.from_model, settings.limit
    out = Path(out)
    items, missing = caption_items(captions)
    if missing:
        raise FileNotFoundError(f"{captions}: {len(missing)} image(s) missing, e.g. {missing[0][1]}")
    if limit is not None and limit < len(items):
        items = sorted(random.Random(seed).sample(items, limit))
    done = out / "model" / FOLD_SAMPLES
    if done.exists():
        rows = read_rows(done)
    else:
        model, processor = load_for_inference(model_path)
        torch.manual_seed(seed)
        rows = sample_outputs(model, processor, items, settings, fold=-1, progress=progress)
        write_predictions(done, rows)
    errors = distinct_errors(rows)
    per_fold = [{"fold": -1, "model": str(model_path), "held_out": len(items), "samples": len(rows),
                 "errors": len(errors)}]
    return _write_mined(out, errors, per_fold, progress, captions)


def sample_caption_set(split_dir, out, n: int, min_tokens: int = 1, max_tokens: int = 1000, height: int = 64,
                       seed: int = 0, line_width: float | None = None) -> list[Record]:
    """Write a small caption set (``caption.txt`` + ``images/``) of ``n`` InkML files from ``split_dir``
    (seeded choice among captions of ``min_tokens``..``max_tokens`` tokens) for quick experiments and tests.
    ``line_width`` defaults to height/25: low-resolution renders need bolder strokes to stay legible."""
    from ..data.inkml import InkmlError, caption_of, find_inkml, read_inkml
    from ..formats.records import write_comer
    from ..data.render import render_traces

    files = find_inkml(split_dir)
    random.Random(seed).shuffle(files)
    picked = []
    for path in files:
        if len(picked) == n:
            break
        try:
            ink = read_inkml(path)
            caption = caption_of(ink)
        except (InkmlError, ValueError):
            continue
        if min_tokens <= len(caption.split()) <= max_tokens:
            image = render_traces(ink.traces, height=height, line_width=line_width or height / 25)
            picked.append(Record(id=ink.id, caption=caption, image=image))
    if len(picked) < n:
        raise ValueError(f"{split_dir}: only {len(picked)} captions of {min_tokens}-{max_tokens} tokens, wanted {n}")
    out = Path(out)
    write_comer(out, picked)
    for r in picked:
        r.image_path = str(out / IMAGES_DIR / f"{r.id}{IMAGE_SUFFIX}")
    return picked


def injected_tasks(out, captions, mined, seed: int, test_roots) -> tuple[dict, object]:
    """Model-free EDL rows in ``out``: the symbol confusions of the ``mined`` predictions (training folds only)
    injected into ``captions``. Returns (the task counts, the confusion table); ({}, None) without confusions."""
    from ..evaluation.analysis import confusion_table, samples_frame
    from ..formats.predictions import read_predictions

    preds = read_predictions(mined, allow_duplicates=True) if mined else []
    confusions = confusion_table(samples_frame(preds), indels=True) if preds else None
    if confusions is None or not len(confusions):
        return {}, None
    return build_task_files(out, EDL_TASKS, captions=captions, seed=seed, confusions=confusions,
                            require_images=True, test_roots=test_roots), confusions


if __name__ == "__main__":  # one fold of mine_errors in its own process (``_folds_in_processes``)
    import json
    import sys

    from ..core.workers import set_torch_threads

    set_torch_threads()
    run_fold(sys.argv[1], sys.argv[2], Mining(**json.loads(sys.argv[4])), int(sys.argv[5]), int(sys.argv[3]),
             progress=False)
