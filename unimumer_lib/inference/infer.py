"""Batched recognition: images -> model outputs -> extracted LaTeX -> the Uni-MuMER prediction JSON.

Decoding settings come from one place, :func:`decoding`: greedy by default (deterministic; the published
predictions were sampled at temperature 0.95), the official script's sampling or beam search as options, never
a checkpoint's own defaults. Left padding, the training prompt. Over large test sets the run is resumable:
each finished batch is appended to ``<out>.partial.jsonl`` and ids already done are skipped on restart, but
only by the same run: ``<out>.run.json`` records the settings (model and its weights files, task, prompt,
decoding, data) and a run with other settings is refused rather than handed stale rows. An image that cannot be
read becomes a rejected row (``error`` set, listed in ``<out>.rejects.tsv``) and the run goes on.
An optional vLLM backend (same settings) runs a :class:`VllmModel` (`unimumer infer --backend vllm`) when installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..formats.predictions import RUN_SUFFIX, Prediction, read_rows
from ..formats.records import Record, load_records
from ..core.tally import Tally
from ..tasks.spec import BASE_TASK, PROMPTS, extract_answer, get as task_spec
from .resume import PARTIAL_SUFFIX, REJECTS_SUFFIX, _read_partial, _write_final, claim_output, run_settings, side_file



if TYPE_CHECKING:
    from transformers import GenerationConfig
# Images per vLLM generate call: vLLM schedules its own batches across a call, so it is given the test set in
# large chunks (each chunk is then one resumable step of the partial file), not the HF batch size.
VLLM_CHUNK = 1024
SAMPLING = ("greedy", "official", "sample")
# The official Uni-MuMER vLLM inference script's sampling (its max_tokens is OFFICIAL_MAX_TOKENS).
OFFICIAL_SAMPLING = dict(temperature=0.2, top_p=0.8, top_k=50)
OFFICIAL_MAX_TOKENS = 2048


def _open_image(image, sizing: str = "paper", spec: dict | None = None, family=None):
    """RGB on white, brought to the input the checkpoint records (``spec``: ``model.to_model_input``), resized into
    the training pixel range on the model family's grid (``ModelFamily.sized``: ``fit_pixels`` so the model sees
    what it trained on, or the official script's sizing)."""
    from PIL import Image

    from ..models.family import DEFAULT_FAMILY, get_family
    from ..models.images import to_model_input

    family = family or get_family(DEFAULT_FAMILY)
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            im.load()  # (an RGB image within the size range comes back as itself: read it before the file closes)
            return family.sized(to_model_input(im, spec), sizing)
    return family.sized(to_model_input(image, spec), sizing)


def chat(image, prompt: str, family=None) -> list[dict]:
    """The single-turn user message the model was trained on, in its family's shape (``ModelFamily.chat``;
    Qwen: image first, then the prompt)."""
    from ..models.family import DEFAULT_FAMILY, get_family

    return (family or get_family(DEFAULT_FAMILY)).chat(image, prompt)


def decoding(tokenizer, sampling: str = "greedy", max_new_tokens: int | None = None, task: str = BASE_TASK,
             num_beams: int = 1, num_return_sequences: int = 1, temperature: float = 1.0,
             top_p: float = 1.0) -> GenerationConfig:
    """The one set of decoding settings, every knob explicit so nothing falls back on a checkpoint's defaults.

    ``greedy`` (default; beam search when ``num_beams`` > 1), ``official`` (the Uni-MuMER vLLM script:
    temperature 0.2, top_p 0.8, top_k 50, 2048 tokens) or ``sample`` (``temperature``/``top_p``, no top-k;
    k-fold mining). No repetition penalty; stops on the model family's stop tokens
    (Qwen: ``<|im_end|>``/``<|endoftext|>``).
    """
    from transformers import GenerationConfig

    from ..models.family import model_family

    if sampling not in SAMPLING:
        raise ValueError(f"unknown sampling {sampling!r}; choose from {', '.join(SAMPLING)}")
    knobs = {"greedy": dict(do_sample=False),  # temperature/top-k/top-p play no part
             "official": dict(do_sample=True, **OFFICIAL_SAMPLING),
             "sample": dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)}[sampling]
    if max_new_tokens is None:
        max_new_tokens = OFFICIAL_MAX_TOKENS if sampling == "official" else task_spec(task).max_new_tokens
    return GenerationConfig(max_new_tokens=max_new_tokens, num_beams=num_beams,
                            num_return_sequences=num_return_sequences, repetition_penalty=1.0,
                            eos_token_id=model_family(tokenizer).stop_token_ids(tokenizer),
                            pad_token_id=tokenizer.pad_token_id, **knobs)


def generate(model, processor, images: list, prompt: str | list[str] = PROMPTS[BASE_TASK],
             settings: GenerationConfig | None = None, sizing: str = "paper", **knobs) -> list[list[str]]:
    """Generate for one batch of images; ``num_return_sequences`` decoded outputs per image.

    ``prompt``: one for every image, or a list of one per image (an EDL prompt carries its own formula).
    ``settings`` from :func:`decoding`, or ``knobs`` passed to it (``max_new_tokens=``, ``sampling=``, ...).
    """
    import torch

    from ..models.family import model_family

    settings = settings or decoding(processor.tokenizer, **knobs)
    prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
    spec = getattr(processor, "input_spec", None)  # the input the checkpoint was trained on
    family = model_family(model)
    convs = [family.chat(_open_image(im, sizing, spec, family), p) for im, p in zip(images, prompts)]
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
    """The LaTeX of a model output of ``task`` (a registered task; any other name is an error)."""
    return extract_answer(text, task_spec(task).name)


def open_checked(record: Record, sizing: str = "paper", family=None):
    """(the record's image ready for a model of ``family`` (default Qwen2.5-VL), "") or (None, the reason it cannot
    be read, naming the file)."""
    from ..formats.records import open_image_checked

    if record.image is not None:
        return _open_image(record.image, sizing, family=family), ""
    if not record.image_path:
        return None, record.error or "no image"
    image, why = open_image_checked(record.image_path)
    return (_open_image(image, sizing, family=family), "") if image is not None else (None, why)


@dataclass(frozen=True)
class VllmModel:
    """A checkpoint (folder or hub id) for vLLM to load: ``predict`` given one runs on vLLM; given a loaded model,
    it runs through transformers. (vLLM loads the weights itself: a loaded model cannot be handed to it.)"""

    path: str


def predict(model, processor, records: Iterable[Record] | str | Path, out: str | Path, task: str = BASE_TASK,
            batch_size: int = 8, progress: bool = True, force: bool = False, **knobs) -> list[Prediction]:
    """Recognise every record (or every image of a data path ``records.load_records`` reads) and write ``out``.

    The prompt is the task's (``taskspec``); ``knobs`` are :func:`decoding`'s (``max_new_tokens=``, ``sampling=``,
    ``num_beams=``). Returns one ``predictions.Prediction`` per record, in record order; each keeps the model's
    whole output (``extra["raw"]``) beside the extracted ``pred``.
    A record whose image is missing or unreadable is written with an empty prediction and ``error`` set (and
    listed in ``<out>.rejects.tsv``), so counts reconcile: read = predicted + rejected.
    Re-running with the same ``out`` and the same settings skips ids already in ``out`` or its
    ``.partial.jsonl`` (rejected ones are tried again); other settings are refused (``force``: recompute).
    ``model``: a loaded model (transformers) or a :class:`VllmModel` (vLLM).
    """
    from ..core.files import atomic_write_text
    from ..core.outdir import OutputLock
    from ..models.family import model_family

    records = load_records(records) if isinstance(records, (str, Path)) else list(records)
    sizing = knobs.pop("sizing", "paper")
    settings = decoding(processor.tokenizer, task=task, **knobs)
    prompt = task_spec(task).prompt  # an unknown task is an error, never the vanilla prompt in silence
    out = Path(out)
    partial = side_file(out, PARTIAL_SUFFIX)
    on_vllm = isinstance(model, VllmModel)
    wanted = run_settings(model.path if on_vllm else model, task, prompt, settings, records)
    if sizing != "paper":  # (recorded only when not the default, so earlier runs keep their settings)
        wanted["sizing"] = sizing
    with OutputLock(out.parent, name=f".{out.name}.unimumer.lock"):
        claim_output(out, wanted, force)
        atomic_write_text(side_file(out, RUN_SUFFIX), json.dumps({**wanted, "complete": False}, indent=1) + "\n")
        done = {}
        if out.exists():
            done.update((p.img_id, p) for p in read_rows(out))
        done.update((p.img_id, p) for p in _read_partial(partial))
        done = {k: p for k, p in done.items() if not p.error}  # rejected rows are tried again
        todo = [r for r in records if r.id not in done]
        sized_as = {"sizing": sizing} if sizing != "paper" else {}
        run = _vllm_runner(model.path, processor, settings, prompt, **sized_as) if on_vllm else (
            lambda images: generate(model, processor, images, prompt, settings, sizing))
        step = max(batch_size, VLLM_CHUNK) if on_vllm else batch_size  # vLLM batches internally
        family = model_family(processor if on_vllm else model)
        done.update(_predict_batches(todo, run, step, partial, task, (sizing, family), progress))
        order = [r.id for r in records]
        rows = [done[i] for i in order if i in done]
        _write_final(out, rows)
        _write_rejects(out, rows)
        atomic_write_text(side_file(out, RUN_SUFFIX), json.dumps({**wanted, "complete": True}, indent=1) + "\n")
        partial.unlink(missing_ok=True)
    return rows


def _predict_batches(todo: list[Record], run, step: int, partial: Path, task: str, sizing: tuple,
                     progress: bool) -> dict[str, Prediction]:
    """Recognise ``todo`` ``step`` records at a time with ``run`` (images -> texts), appending each batch's rows to
    ``partial`` as soon as it is done (what a rerun resumes from); an unreadable image is a rejected row.
    ``sizing``: (sizing, model family) the images are opened with."""
    from tqdm.auto import tqdm

    from ..core.files import naming

    done = {}
    with partial.open("a", encoding="utf-8") as sink, tqdm(total=len(todo), disable=not progress,
                                                          desc="predict") as bar:
        for i in range(0, len(todo), step):
            batch = todo[i:i + step]
            opened = [(r, *open_checked(r, *sizing)) for r in batch]
            rows = [_rejected(r, why) for r, _, why in opened if why]
            ok = [(r, image) for r, image, why in opened if not why]
            if ok:
                for (r, _), texts in zip(ok, run([image for _, image in ok])):
                    rows.append(Prediction(r.id, r.caption, extract(texts[0], task), r.image_path or "",
                                           {"raw": texts[0]}))
            try:
                sink.write("".join(json.dumps(row.to_json(), ensure_ascii=False) + "\n" for row in rows))
                sink.flush()
            except OSError as err:  # a full disk: say which file (the bare errno names none)
                raise naming(err, partial) from None
            done.update((row.img_id, row) for row in rows)
            bar.update(len(batch))
    return done


def _write_rejects(out: Path, rows: list[Prediction]) -> None:
    from ..formats.rejects import Reject, write_rejects

    path = side_file(out, REJECTS_SUFFIX)
    bad = [r for r in rows if r.error]
    if bad:
        write_rejects(path, [Reject(r.image_path, r.img_id, r.error) for r in bad])
    else:
        path.unlink(missing_ok=True)  # ours: claim_output checked the run file beside it


def tally(rows: list[Prediction]) -> Tally:
    """The tally of a prediction run's rows (written: predicted)."""
    rejected = sum(1 for r in rows if r.error)
    return Tally(len(rows), len(rows) - rejected, rejected)


def load_for_inference(model_path: str | Path, allow_untrained: bool = False):
    """(model, processor) placed for inference: on this process's GPU (``LOCAL_RANK``, default 0) in the
    checkpoint's dtype when there is one, else fp32 on the CPU. A model whose weights files exceed 80 % of that
    GPU's memory is split over every visible GPU (``device_map="auto"``); one that fits stays on one GPU, which
    is faster than splitting its layers over several (run one process per GPU for throughput)."""
    import torch

    from ..models.model import check_model, flash_attention, load_model

    check_model(model_path, inference=True, allow_untrained=allow_untrained)
    if torch.cuda.is_available():
        gpu = int(os.environ.get("LOCAL_RANK", "0"))
        fits = weights_bytes(model_path) < 0.8 * torch.cuda.get_device_properties(gpu).total_memory
        return load_model(model_path, dtype="auto", device_map={"": gpu} if fits else "auto", **flash_attention())
    return load_model(model_path, dtype="float32")


def weights_bytes(model_path) -> int:
    """Size of a local checkpoint's weights files (0 for a hub id: the 3B and 7B checkpoints fit one GPU)."""
    folder = Path(model_path)
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) if folder.is_dir() else 0


def recognize(images, model="tiny-base", task: str = BASE_TASK, batch_size: int = 8, allow_untrained: bool = False,
              **knobs) -> list[str]:
    """LaTeX of each image (paths or PIL images), in order: ``recognize(["x.png"], model="runs/sft/final")``.

    ``model``: a checkpoint folder, hub id or shipped name (default the CPU ``tiny-base``), or a loaded
    ``(model, processor)`` pair. ``knobs``: decoding settings as for :func:`decoding`."""
    net, processor = model if isinstance(model, tuple) else load_for_inference(model, allow_untrained)
    images = [images] if isinstance(images, (str, Path)) or hasattr(images, "convert") else list(images)
    sizing = knobs.pop("sizing", "paper")
    settings = decoding(processor.tokenizer, task=task, **knobs)
    prompt = task_spec(task).prompt  # an unknown task is an error, never the vanilla prompt in silence
    out = []
    for i in range(0, len(images), batch_size):
        out += [extract(texts[0], task) for texts in generate(net, processor, images[i:i + batch_size], prompt,
                                                              settings, sizing)]
    return out


def run(model_path: str | Path, data: str | Path | list, out: str | Path, backend: str = "hf", batch_size: int = 8,
        root: str | Path | None = None, force: bool = False, shard: tuple[int, int] | None = None,
        allow_untrained: bool = False, **knobs) -> list[Prediction]:
    """``unimumer infer``: read ``data`` (any layout ``records.load_records`` knows, an image file or a folder of
    images; a list of image files), recognise, write ``out``. ``shard=(i, n)``: only the i-th of n contiguous
    parts of the records (one process of :func:`run_sharded`)."""
    from ..models.model import check_model, resolve_model_path

    check_model(model_path, inference=True, allow_untrained=allow_untrained)  # before reading any data
    records = read_inputs(data, root)
    if shard is not None:
        records = shard_of(records, *shard)
    model_path = resolve_model_path(model_path)  # a shipped name (tiny-base) -> its folder
    if backend == "vllm":
        from ..models.model import load_processor

        model, processor = VllmModel(str(model_path)), load_processor(model_path)
    else:
        model, processor = load_for_inference(model_path, allow_untrained)
    return predict(model, processor, records, out, batch_size=batch_size, force=force, **knobs)


def read_inputs(data, root=None) -> list[Record]:
    from ..formats.records import image_records

    return image_records(data) if isinstance(data, list) else load_records(data, root, unlabelled=True)


def shard_of(records: list, index: int, count: int) -> list:
    """The ``index``-th of ``count`` contiguous, near-equal parts of ``records`` (their concatenation in index
    order is ``records``)."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    return records[len(records) * index // count:len(records) * (index + 1) // count]


def _rejected(r: Record, reason: str) -> Prediction:
    return Prediction(r.id, r.caption, "", r.image_path or "", {"error": reason})


def exprate(rows: list[Prediction]) -> float:
    """Share of rows whose prediction equals the ground truth token for token."""
    return sum(r.pred.split() == r.gt.split() for r in rows) / max(1, len(rows))


def _vllm_runner(model_path, processor, settings: GenerationConfig, prompt: str = PROMPTS[BASE_TASK],
                 sizing: str = "paper"):
    """A batch -> outputs callable backed by vLLM; ``model_path`` is a checkpoint folder or hub id."""
    try:
        from vllm import LLM
    except ImportError as err:
        raise ImportError("backend='vllm' needs `pip install -e .[vllm]` (GPU only); use backend='hf'") from err
    base, adapter = lora_parts(model_path)
    options = vllm_options(settings)
    if adapter is not None:
        options.update(enable_lora=True, max_lora_rank=adapter["r"])
    llm = LLM(model=str(base), **options)
    params = vllm_sampling(settings)
    from ..models.family import model_family

    family = model_family(processor)
    text = processor.apply_chat_template(family.chat(None, prompt), add_generation_prompt=True, tokenize=False)
    extra = {}
    if adapter is not None:
        from vllm.lora.request import LoRARequest

        extra["lora_request"] = LoRARequest("unimumer-adapter", 1, str(model_path))

    def run(images):
        reqs = [{"prompt": text, "multi_modal_data": {"image": _open_image(im, sizing, family=family)}}
                for im in images]
        return [[o.outputs[0].text.strip()] for o in llm.generate(reqs, params, **extra)]

    return run


def lora_parts(model_path) -> tuple[str, dict | None]:
    """(the model vLLM loads, the adapter's config or None): a LoRA/QLoRA ``final/`` holds adapters only (no
    config.json, no full weights), so vLLM loads its base and applies the adapter per request."""
    config = Path(str(model_path)) / "adapter_config.json"
    if not config.is_file():
        return str(model_path), None
    adapter = json.loads(config.read_text(encoding="utf-8"))
    base = adapter.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config}: the adapter names no base model (base_model_name_or_path); vLLM cannot load it")
    return base, adapter


VLLM_PROMPT_TOKENS = 1024  # chat template + prompt + an image of at most 262,144 pixels (334 tokens), with room


def vllm_options(settings: GenerationConfig, seed: int = 0) -> dict:
    """The ``vllm.LLM`` options: bf16 as the official script (auto would pick fp16 from an fp32 config), a context
    long enough for one image and the answer (the config's 128k would make vLLM profile the encoder at its largest
    image and reserve a 128k KV cache), one image per prompt, a seed."""
    return {"limit_mm_per_prompt": {"image": 1}, "dtype": "bfloat16", "seed": seed,
            "max_model_len": VLLM_PROMPT_TOKENS + settings.max_new_tokens}


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
