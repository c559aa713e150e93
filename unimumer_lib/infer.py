"""Batched recognition: images -> model outputs -> extracted LaTeX -> the Uni-MuMER prediction JSON.

Decoding settings come from one place, :func:`decoding`: greedy by default (deterministic; the published
predictions were sampled at temperature 0.95), the official script's sampling or beam search as options, never
a checkpoint's own defaults. Left padding, the training prompt. Over large test sets the run is resumable:
each finished batch is appended to ``<out>.partial.jsonl`` and ids already done are skipped on restart.
An optional vLLM backend (same settings) is used when asked for and installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .records import Record, load_records
from .tasks import PROMPTS

PARTIAL_SUFFIX = ".partial.jsonl"
SAMPLING = ("greedy", "official", "sample")
# The official Uni-MuMER vLLM inference script's sampling (its max_tokens is OFFICIAL_MAX_TOKENS).
OFFICIAL_SAMPLING = dict(temperature=0.2, top_p=0.8, top_k=50)
OFFICIAL_MAX_TOKENS = 2048
# New-token budgets per task, in Qwen tokens, about 2x or more the longest target so no answer is cut. Longest
# targets with the Qwen tokenizer (+ <|im_end|>), CROHME test2014 / train: vanilla 240 / 133, tree 747 / 377,
# can 308 / 244; error_find is a marked caption, error_fix a correction log + caption.
MAX_NEW_TOKENS = {"vanilla": 512, "tree": 2048, "can": 1024, "error_find": 768, "error_fix": 1024}


def _open_image(image):
    """RGB, resized into the training pixel range (``model.fit_pixels``) so the model sees what it trained on."""
    from PIL import Image

    from .model import fit_pixels

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return fit_pixels(im.convert("RGB"))
    return fit_pixels(image.convert("RGB"))


def chat(image, prompt: str) -> list[dict]:
    """The single-turn user message the model was trained on (image first, then the prompt)."""
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]


def decoding(tokenizer, sampling: str = "greedy", max_new_tokens: int | None = None, task: str = "vanilla",
             num_beams: int = 1, num_return_sequences: int = 1, temperature: float = 1.0,
             top_p: float = 1.0) -> GenerationConfig:
    """The one set of decoding settings, every knob explicit so nothing falls back on a checkpoint's defaults.

    ``greedy`` (default; beam search when ``num_beams`` > 1), ``official`` (the Uni-MuMER vLLM script:
    temperature 0.2, top_p 0.8, top_k 50, 2048 tokens) or ``sample`` (``temperature``/``top_p``, no top-k;
    k-fold mining). No repetition penalty; stops on ``<|im_end|>``/``<|endoftext|>``.
    """
    from transformers import GenerationConfig

    from .model import stop_token_ids

    if sampling not in SAMPLING:
        raise ValueError(f"unknown sampling {sampling!r}; choose from {', '.join(SAMPLING)}")
    knobs = {"greedy": dict(do_sample=False),  # temperature/top-k/top-p play no part
             "official": dict(do_sample=True, **OFFICIAL_SAMPLING),
             "sample": dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)}[sampling]
    if max_new_tokens is None:
        max_new_tokens = OFFICIAL_MAX_TOKENS if sampling == "official" else MAX_NEW_TOKENS.get(task, 1024)
    return GenerationConfig(max_new_tokens=max_new_tokens, num_beams=num_beams,
                            num_return_sequences=num_return_sequences, repetition_penalty=1.0,
                            eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id, **knobs)


def generate(model, processor, images: list, prompt: str = PROMPTS["vanilla"], settings: GenerationConfig | None = None,
             **knobs) -> list[list[str]]:
    """Generate for one batch of images; ``num_return_sequences`` decoded outputs per image.

    ``settings`` from :func:`decoding`, or ``knobs`` passed to it (``max_new_tokens=``, ``sampling=``, ...).
    """
    import torch

    settings = settings or decoding(processor.tokenizer, **knobs)
    convs = [chat(_open_image(im), prompt) for im in images]
    inputs = processor.apply_chat_template(convs, tokenize=True, return_dict=True, return_tensors="pt",
                                           add_generation_prompt=True,
                                           processor_kwargs={"padding": True, "padding_side": "left"})
    inputs = inputs.to(model.device)
    with torch.inference_mode():
        out = model.generate(**inputs, generation_config=settings)
    texts = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    texts = [t.strip() for t in texts]
    n = settings.num_return_sequences
    return [texts[i:i + n] for i in range(0, len(texts), n)]


def extract(text: str, task: str) -> str:
    from .metrics import extract_answer

    return extract_answer(text, "vanilla" if task not in ("tree", "can") else task)


def _read_partial(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: everything after it is redone
    return rows


def _write_final(path: Path, rows: list[dict]) -> Path:
    try:
        from .predictions import write_predictions
    except ImportError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        return path
    return write_predictions(path, rows)


def predict(model, processor, records: Iterable[Record] | str | Path, out: str | Path, task: str = "vanilla",
            prompt: str | None = None, batch_size: int = 8, settings: GenerationConfig | None = None,
            keep_raw: bool = True, backend: str = "hf", progress: bool = True, **knobs) -> list[dict]:
    """Recognise every record (or every image of a data path ``records.load_records`` reads) and write ``out``.

    ``settings`` from :func:`decoding` (or its ``knobs``: ``max_new_tokens=``, ``sampling=``, ``num_beams=``).
    Records without an image are written with an empty prediction and ``"error"`` set, so counts reconcile.
    Re-running with the same ``out`` skips ids already in ``out`` or its ``.partial.jsonl``.
    With ``backend="vllm"``, ``model`` is the checkpoint folder or hub id.
    """
    from tqdm.auto import tqdm

    records = load_records(records) if isinstance(records, (str, Path)) else list(records)
    settings = settings or decoding(processor.tokenizer, task=task, **knobs)
    out = Path(out)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    done = {}
    if out.exists():
        done.update({r["img_id"]: r for r in json.loads(out.read_text(encoding="utf-8"))})
    done.update({r["img_id"]: r for r in _read_partial(partial)})
    todo = [r for r in records if r.id not in done]
    prompt = prompt or PROMPTS[task if task in PROMPTS else "vanilla"]
    partial.parent.mkdir(parents=True, exist_ok=True)
    run = _vllm_runner(model, processor, settings, prompt) if backend == "vllm" else (
        lambda images: generate(model, processor, images, prompt, settings))
    with partial.open("a", encoding="utf-8") as sink, tqdm(total=len(todo), disable=not progress,
                                                          desc="predict") as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            rows = [_missing_image(r) for r in batch if not r.image_path and r.image is None]
            ok = [r for r in batch if r.image_path or r.image is not None]
            if ok:
                outs = run([r.image if r.image is not None else r.image_path for r in ok])
                for r, texts in zip(ok, outs):
                    row = {"img_id": r.id, "gt": r.caption, "pred": extract(texts[0], task),
                           "image_path": r.image_path or ""}
                    if keep_raw:
                        row["raw"] = texts[0]
                    rows.append(row)
            for row in rows:
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[row["img_id"]] = row
            sink.flush()
            bar.update(len(batch))
    order = [r.id for r in records]
    rows = [done[i] for i in order if i in done] + [r for k, r in done.items() if k not in set(order)]
    _write_final(out, rows)
    partial.unlink(missing_ok=True)
    return rows


def load_for_inference(model_path: str | Path):
    """(model, processor) placed for inference: on the GPU(s) in the checkpoint's dtype when there are any
    (``device_map="auto"`` also splits a model too big for one), else fp32 on the CPU."""
    import torch

    from .model import load_model

    if torch.cuda.is_available():
        return load_model(model_path, dtype="auto", device_map="auto")
    return load_model(model_path, dtype="float32")


def recognize(images, model="tiny-base", task: str = "vanilla", batch_size: int = 8, **knobs) -> list[str]:
    """LaTeX of each image (paths or PIL images), in order: ``recognize(["x.png"], model="runs/sft/final")``.

    ``model``: a checkpoint folder, hub id or shipped name (default the CPU ``tiny-base``), or a loaded
    ``(model, processor)`` pair. ``knobs``: decoding settings as for :func:`decoding`."""
    net, processor = model if isinstance(model, tuple) else load_for_inference(model)
    images = [images] if isinstance(images, (str, Path)) or hasattr(images, "convert") else list(images)
    settings = decoding(processor.tokenizer, task=task, **knobs)
    prompt = PROMPTS[task if task in PROMPTS else "vanilla"]
    out = []
    for i in range(0, len(images), batch_size):
        out += [extract(texts[0], task) for texts in generate(net, processor, images[i:i + batch_size], prompt,
                                                              settings)]
    return out


def run(model_path: str | Path, data: str | Path | list, out: str | Path, backend: str = "hf", batch_size: int = 8,
        root: str | Path | None = None, **knobs) -> list[dict]:
    """``unimumer infer``: read ``data`` (any layout ``records.load_records`` knows, an image file or a folder of
    images; a list of image files), recognise, write ``out``."""
    from .model import resolve_model_path
    from .records import image_records

    records = image_records(data) if isinstance(data, list) else load_records(data, root, unlabelled=True)
    model_path = resolve_model_path(model_path)  # a shipped name (tiny-base) -> its folder
    if backend == "vllm":
        from .model import load_processor

        model, processor = str(model_path), load_processor(model_path)
    else:
        model, processor = load_for_inference(model_path)
    return predict(model, processor, records, out, batch_size=batch_size, backend=backend, **knobs)


def _missing_image(r: Record) -> dict:
    return {"img_id": r.id, "gt": r.caption, "pred": "", "image_path": "", "error": "no image"}


def exprate(rows: list[dict]) -> float:
    """Share of rows whose prediction equals the ground truth token for token."""
    return sum(r["pred"].split() == r["gt"].split() for r in rows) / max(1, len(rows))


def _vllm_runner(model_path, processor, settings: GenerationConfig, prompt: str = PROMPTS["vanilla"]):
    """A batch -> outputs callable backed by vLLM; ``model_path`` is a checkpoint folder or hub id (a loaded
    model cannot be handed to vLLM)."""
    if not isinstance(model_path, (str, Path)):
        raise TypeError("backend='vllm' needs the checkpoint folder or hub id, not a loaded model")
    try:
        from vllm import LLM
    except ImportError as err:
        raise ImportError("backend='vllm' needs `pip install -e .[vllm]` (GPU only); use backend='hf'") from err
    llm = LLM(model=str(model_path), limit_mm_per_prompt={"image": 1})
    params = vllm_sampling(settings)
    text = processor.apply_chat_template(chat(None, prompt), add_generation_prompt=True, tokenize=False)

    def run(images):
        reqs = [{"prompt": text, "multi_modal_data": {"image": _open_image(im)}} for im in images]
        return [[o.outputs[0].text.strip()] for o in llm.generate(reqs, params)]

    return run


def vllm_sampling(settings: GenerationConfig):
    """vLLM ``SamplingParams`` with the same settings as ``settings`` (beam search is HF-only)."""
    from vllm import SamplingParams

    if settings.num_beams > 1:
        raise ValueError("beam search runs through the HF backend (--backend hf)")
    sample = settings.do_sample
    return SamplingParams(max_tokens=settings.max_new_tokens, temperature=settings.temperature if sample else 0.0,
                          top_p=settings.top_p if sample else 1.0, top_k=(settings.top_k or -1) if sample else -1,
                          repetition_penalty=settings.repetition_penalty, stop_token_ids=list(settings.eos_token_id),
                          n=settings.num_return_sequences)
