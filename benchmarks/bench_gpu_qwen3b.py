"""GPU throughput of the real Qwen2.5-VL-3B architecture (random weights, no download).

The config below is the published Qwen/Qwen2.5-VL-3B-Instruct config.json, written inline. Measures, at the
paper's image size (512x512 = 262,144 pixels -> 324 visual tokens) with a vanilla-task-length answer:
  * full fine-tuning as the paper preset trains: fp32 master weights + AdamW, bf16 autocast, gradient
    checkpointing -- samples/s, tokens/s, peak memory, MFU (model FLOPs: 6 x (language params x sequence tokens +
    vision params x patches, 4 per image token) / time / the device's dense bf16 peak)
  * LoRA as the single-gpu-lora preset adapts (r=64 on all linear layers, bf16 base): throughput and MFU
  * greedy generation throughput (new tokens/s) at a few batch sizes
Random weights never emit EOS on purpose, so generation runs a fixed number of new tokens.

    python benchmarks/bench_gpu_qwen3b.py                        # on a GPU; prints a Markdown table
    python benchmarks/bench_gpu_qwen3b.py --fixture --device cpu # the shrunk hub fixture on CPU: checks the script
    python benchmarks/bench_gpu_qwen3b.py --smoke                # 2-layer 3B-width model on CPU
Paste the printed table (with the device line) into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

QWEN25_VL_3B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "tie_word_embeddings": True,
    "text_config": {
        "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 11008,
        "max_position_embeddings": 128000, "max_window_layers": 70, "num_attention_heads": 16,
        "num_hidden_layers": 36, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "sliding_window": 32768,
        "use_sliding_window": False, "vocab_size": 151936, "tie_word_embeddings": True,
        "bos_token_id": 151643, "eos_token_id": 151645,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    },
    "vision_config": {
        "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "in_channels": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "tokens_per_second": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
}
PAPER_PIXELS = 262_144
PROMPT_TOKENS = 40   # the system turn + the vanilla prompt, in Qwen tokens
ANSWER_TOKENS = 48   # a CROHME caption averages ~25 LaTeX tokens; Qwen's BPE splits them into ~1.5-2 ids


# Dense bf16 peak TFLOP/s of common training GPUs (for MFU), most specific name first (an H100 PCIe is not an
# SXM part); override with --peak-tflops.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
               ("A100", 312.0), ("L40S", 362.0), ("A6000", 155.0))


def peak_tflops(device_name: str) -> float:
    """The dense bf16 peak of a device name as torch reports it (nan when unknown)."""
    return next((v for k, v in PEAK_TFLOPS if k in device_name), float("nan"))


def train_flops(model, batch: int, seq: int, image_tokens: int) -> float:
    """Model FLOPs of one training step, per parameter x the tokens its part processes: 2 forward, 2 for the
    gradient of the input, and 2 for its own weight gradient only where it is trained (a frozen LoRA base weight
    has no weight-gradient product: 4 not 6). The language model sees ``seq`` tokens per sample; the vision tower
    sees every patch before the 2x2 merge, i.e. 4 x the image tokens."""
    visual = model.get_base_model().model.visual if hasattr(model, "get_base_model") else model.model.visual
    in_vision = {id(p) for p in visual.parameters()}
    flops = 0.0
    for p in model.parameters():
        tokens = 4 * image_tokens if id(p) in in_vision else seq
        flops += (6 if p.requires_grad else 4) * p.numel() * tokens
    return batch * flops


def build(smoke: bool, attn: str, device: str, dtype: torch.dtype, fixture: bool = False):
    if fixture:
        from unimumer_lib.models.hubfixture import build_fixture
        from unimumer_lib.models.model import load_model

        model, _ = load_model(build_fixture(), dtype=dtype, attn_implementation=attn)
        return model.to(device)
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in QWEN25_VL_3B.items()}
    if smoke:
        cfg["text_config"].update(num_hidden_layers=2)
        cfg["vision_config"].update(depth=2, fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    config._attn_implementation = attn
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    return model


def batch_inputs(batch: int, side: int, device: str, dtype: torch.dtype, with_answer: bool = True):
    """A batch of identical-length chat sequences: prompt ids, <vision_start>, image pads, <vision_end>, answer."""
    c = QWEN25_VL_3B
    ip = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                  size={"shortest_edge": 56 * 56, "longest_edge": PAPER_PIXELS})
    img = Image.new("RGB", (side, side), "white")
    vis = ip(images=[img] * batch, return_tensors="pt")
    n_img = int(vis["image_grid_thw"][0].prod()) // 4
    gen = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(batch):
        prompt = torch.randint(0, 150000, (PROMPT_TOKENS,), generator=gen)
        answer = torch.randint(0, 150000, (ANSWER_TOKENS if with_answer else 0,), generator=gen)
        rows.append(torch.cat([prompt[:5], torch.tensor([c["vision_start_token_id"]]),
                               torch.full((n_img,), c["image_token_id"]), torch.tensor([c["vision_end_token_id"]]),
                               prompt[5:], answer]))
    input_ids = torch.stack(rows).to(device)
    labels = torch.full_like(input_ids, -100)
    if with_answer:
        labels[:, -ANSWER_TOKENS:] = input_ids[:, -ANSWER_TOKENS:]
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
            "pixel_values": vis["pixel_values"].to(device, dtype),
            "image_grid_thw": vis["image_grid_thw"].to(device)}, n_img


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def peak_gb(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


def bench_train(model, batch, side, device, dtype, steps, warmup, lr=1e-5, autocast=True):
    """``autocast``: bf16 compute over the model's own (fp32 master) weights, as the paper preset trains."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, fused=device == "cuda")
    inputs, n_img = batch_inputs(batch, side, device, dtype)
    model.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = model(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    wall = time.perf_counter() - start
    seq = inputs["input_ids"].shape[1]
    del opt
    tokens_s = batch * seq * steps / wall
    return {"samples/s": batch * steps / wall, "tokens/s": tokens_s, "s/step": wall / steps,
            "peak GB": peak_gb(device), "seq": seq, "image tokens": n_img, "loss": float(loss.detach()),
            "train FLOP/s": train_flops(model, batch, seq, n_img) * steps / wall}


def bench_generate(model, batch, side, device, dtype, new_tokens):
    inputs, _ = batch_inputs(batch, side, device, dtype, with_answer=False)
    inputs.pop("labels")
    model.eval()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
        sync(device)
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        sync(device)
    wall = time.perf_counter() - start
    made = (out.shape[1] - inputs["input_ids"].shape[1]) * batch
    return {"new tokens/s": made / wall, "images/s": batch / wall, "peak GB": peak_gb(device)}


def save_load(model, side: int, device: str, dtype: torch.dtype) -> dict:
    """Save the model, load it back in its dtype, and compare the logits of one batch: the saved checkpoint is
    the model (max |difference| 0) and keeps its dtype; size on disk and both times."""
    import shutil
    import tempfile

    inputs, _ = batch_inputs(1, side, device, dtype, with_answer=False)
    inputs.pop("labels")
    model.eval()
    folder = Path(tempfile.mkdtemp(prefix="saveload-"))
    try:
        with torch.inference_mode():
            before = model(**inputs).logits.float()
        start = time.perf_counter()
        model.save_pretrained(folder)
        saved = time.perf_counter() - start
        del model
        start = time.perf_counter()
        again = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype="auto").to(device)
        loaded = time.perf_counter() - start
        with torch.inference_mode():
            diff = float((again(**inputs).logits.float() - before).abs().max())
        size = sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**30
        return {"save s": saved, "load s": loaded, "GB on disk": size, "max |logit diff|": diff,
                "dtype": str(next(again.parameters()).dtype), "peak GB": peak_gb(device)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="2-layer model on CPU to check the script")
    ap.add_argument("--attn", default="sdpa", help="sdpa | flash_attention_2 | eager")
    ap.add_argument("--side", type=int, default=512, help="image side in pixels (512x512 = the paper's cap)")
    ap.add_argument("--full-batch", type=int, default=4)
    ap.add_argument("--lora-batch", type=int, default=8)
    ap.add_argument("--gen-batches", default="1,16,64")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of full,lora,saveload,generate to skip")
    ap.add_argument("--fixture", action="store_true", help="the shrunk hub fixture (unimumer_lib.models.hubfixture)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU (for MFU)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and args.device != "cpu" and not args.smoke
    device = "cuda" if cuda else "cpu"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = args.peak_tflops or peak_tflops(name)
    if args.smoke or (args.fixture and device == "cpu"):
        args.full_batch, args.lora_batch, args.steps, args.warmup, args.side = 1, 1, 1, 1, 112
        args.gen_batches, args.new_tokens = "2", 4
    skip = set(args.skip.split(","))
    what = ("hub fixture (shrunk)" if args.fixture else "SMOKE (2 layers)" if args.smoke
            else "Qwen2.5-VL-3B architecture, random weights")
    print(f"device: {name}; torch {torch.__version__}; attention {args.attn}; image {args.side}x{args.side}; {what}")
    rows = []
    if "full" not in skip:
        model = build(args.smoke, args.attn, device, torch.float32, args.fixture)  # fp32 master weights
        n = sum(p.numel() for p in model.parameters())
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        r = bench_train(model, args.full_batch, args.side, device, torch.float32, args.steps, args.warmup)
        r["MFU %"] = 100 * r["train FLOP/s"] / (peak * 1e12)
        rows.append((f"full FT (fp32 master + AdamW, bf16 autocast, grad ckpt), {n / 1e9:.2f} B params, "
                     f"batch {args.full_batch}", r))
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    if "lora" not in skip:
        from peft import LoraConfig, get_peft_model

        model = build(args.smoke, args.attn, device, dtype, args.fixture)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        from unimumer_lib.training.sftconfig import PRESETS

        spec = {**PRESETS["single-gpu-lora"]["lora"], "lora_dropout": 0.0}  # the preset's adapters: all linear
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **spec))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        r = bench_train(model, args.lora_batch, args.side, device, dtype, args.steps, args.warmup, lr=2e-4,
                        autocast=device == "cuda")
        r["MFU %"] = 100 * r["train FLOP/s"] / (peak * 1e12)
        rows.append((f"LoRA r={spec['r']} on {spec['target_modules']} (single-gpu-lora; {trainable / 1e6:.0f} M "
                     f"trainable), batch {args.lora_batch}", r))
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    if "saveload" not in skip:
        rows.append(("save + load in bf16 (safetensors), logits compared", save_load(
            build(args.smoke, args.attn, device, dtype, args.fixture), args.side, device, dtype)))
        if device == "cuda":
            torch.cuda.empty_cache()
    if "generate" not in skip:
        model = build(args.smoke, args.attn, device, dtype, args.fixture)
        for b in [int(x) for x in args.gen_batches.split(",")]:
            r = bench_generate(model, b, args.side, device, dtype, args.new_tokens)
            rows.append((f"greedy generation, batch {b}, {args.new_tokens} new tokens", r))
    print("\n| run | throughput | peak GPU memory |\n| --- | --- | --- |")
    for label, r in rows:
        tput = ", ".join(f"{r[k]:.1f} {k}" for k in ("samples/s", "tokens/s", "new tokens/s", "images/s", "save s",
                                                      "load s", "GB on disk") if k in r)
        tput += f", max |logit diff| {r['max |logit diff|']:g}, {r['dtype']}" if "dtype" in r else ""
        extra = f" (seq {r['seq']}, {r['image tokens']} image tokens, {r['s/step']:.2f} s/step)" if "seq" in r else ""
        extra += f", MFU {r['MFU %']:.1f}%" if "MFU %" in r else ""
        print(f"| {label} | {tput}{extra} | {r['peak GB']:.1f} GB |")


if __name__ == "__main__":
    main()
