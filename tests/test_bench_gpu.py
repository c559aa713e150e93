"""The GPU benchmark's accounting (checked on CPU, on the 3B architecture built on the meta device)."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from unimumer_lib.core.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_gpu_qwen3b as bench  # noqa: E402


def test_mfu_counts_vision_parameters_over_patches():
    """Issue 21: vision parameters were counted over language tokens instead of their ~4x more patches."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in bench.QWEN25_VL_3B.items()}
    config = Qwen2_5_VLConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    image_tokens = 324  # 512 x 512 at patch 14, merged 2 x 2
    seq = bench.PROMPT_TOKENS + 2 + image_tokens + bench.ANSWER_TOKENS
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    assert 3.7e9 < total < 3.8e9 and 6.6e8 < vision < 6.8e8
    ratio = bench.train_flops(model, 1, seq, image_tokens) / (6 * total * seq)
    assert 1.3 < ratio < 1.45  # the review's ~1.38x


def test_peak_of_pcie_and_sxm_parts_differ():
    assert bench.peak_tflops("NVIDIA H100 PCIe") == 756.0 and bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0 and math.isnan(bench.peak_tflops("Tesla T4"))


def test_lora_rows_count_no_weight_gradient_for_frozen_weights():
    """Issue 31: 6 x N x T for LoRA rows, where the frozen base has no weight-gradient products, read ~1.5x high."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in bench.QWEN25_VL_3B.items()}
    config = Qwen2_5_VLConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    full = bench.train_flops(model, 2, 600, 324)
    for p in model.parameters():
        p.requires_grad = False
    frozen = bench.train_flops(model, 2, 600, 324)
    assert frozen / full == pytest.approx(4 / 6)  # every weight frozen: forward + input gradient only
