"""Batched recognition: images -> model outputs -> extracted LaTeX -> the Uni-MuMER prediction JSON.

Greedy decoding by default (deterministic; the published predictions were sampled at temperature 0.95),
sampling as an option, left padding, the plain recognition prompt. Over large test sets the run is resumable:
each finished batch is appended to ``<out>.partial.jsonl`` and ids already done are skipped on restart.
An optional vLLM backend is used when asked for and installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .records import Record, read_comer
from .tasks import PROMPTS

PARTIAL_SUFFIX = ".partial.jsonl"


def _open_image(image):
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return im.convert("RGB")
    return image.convert("RGB")


def chat(image, prompt: str) -> list[dict]:
    """The single-turn user message the model was trained on (image first, then the prompt)."""
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]


def generate(model, processor, images: list, prompt: str = PROMPTS["vanilla"], max_new_tokens: int = 256,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             num_return_sequences: int = 1) -> list[list[str]]:
    """Generate for one batch of images; returns ``num_return_sequences`` decoded outputs per image."""
    import torch

    convs = [chat(_open_image(im), prompt) for im in images]
    inputs = processor.apply_chat_template(convs, tokenize=True, return_dict=True, return_tensors="pt",
                                           add_generation_prompt=True,
                                           processor_kwargs={"padding": True, "padding_side": "left"})
    inputs = inputs.to(model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if do_sample else dict(do_sample=False)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
                             pad_token_id=processor.tokenizer.pad_token_id, top_k=None, **sampling)
    texts = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    texts = [t.strip() for t in texts]
    return [texts[i:i + num_return_sequences] for i in range(0, len(texts), num_return_sequences)]


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
            prompt: str | None = None, batch_size: int = 8, max_new_tokens: int = 256, do_sample: bool = False,
            temperature: float = 1.0, top_p: float = 1.0, keep_raw: bool = True, backend: str = "hf",
            progress: bool = True) -> list[dict]:
    """Recognise every record (or every image of a ``caption.txt`` + ``images/`` folder) and write ``out``.

    Records without an image are written with an empty prediction and ``"error"`` set, so counts reconcile.
    Re-running with the same ``out`` skips ids already in ``out`` or its ``.partial.jsonl``.
    """
    from tqdm.auto import tqdm

    records = read_comer(records) if isinstance(records, (str, Path)) else list(records)
    out = Path(out)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    done = {}
    if out.exists():
        done.update({r["img_id"]: r for r in json.loads(out.read_text(encoding="utf-8"))})
    done.update({r["img_id"]: r for r in _read_partial(partial)})
    todo = [r for r in records if r.id not in done]
    prompt = prompt or PROMPTS[task if task in PROMPTS else "vanilla"]
    partial.parent.mkdir(parents=True, exist_ok=True)
    runner = _vllm_runner(model, processor) if backend == "vllm" else None
    with partial.open("a", encoding="utf-8") as sink, tqdm(total=len(todo), disable=not progress,
                                                          desc="predict") as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            rows = [_missing_image(r) for r in batch if not r.image_path and r.image is None]
            ok = [r for r in batch if r.image_path or r.image is not None]
            if ok:
                images = [r.image if r.image is not None else r.image_path for r in ok]
                kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                              top_p=top_p)
                outs = runner(images, prompt, **kwargs) if runner else generate(model, processor, images, prompt,
                                                                                **kwargs)
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


def _missing_image(r: Record) -> dict:
    return {"img_id": r.id, "gt": r.caption, "pred": "", "image_path": "", "error": "no image"}


def exprate(rows: list[dict]) -> float:
    """Share of rows whose prediction equals the ground truth token for token."""
    return sum(r["pred"].split() == r["gt"].split() for r in rows) / max(1, len(rows))


def _vllm_runner(model_path, processor):
    """A generate()-compatible callable backed by vLLM (``model_path`` must be a checkpoint folder or hub id)."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as err:
        raise ImportError("backend='vllm' needs `pip install vllm` (GPU only); use backend='hf'") from err
    llm = LLM(model=str(model_path), limit_mm_per_prompt={"image": 1})

    def run(images, prompt, max_new_tokens=256, do_sample=False, temperature=1.0, top_p=1.0):
        params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature if do_sample else 0.0,
                                top_p=top_p if do_sample else 1.0)
        text = processor.apply_chat_template(chat(None, prompt), add_generation_prompt=True, tokenize=False)
        reqs = [{"prompt": text, "multi_modal_data": {"image": _open_image(im)}} for im in images]
        return [[o.outputs[0].text.strip()] for o in llm.generate(reqs, params)]

    return run
