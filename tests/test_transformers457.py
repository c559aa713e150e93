"""A fine-tuned ``final/`` loads in transformers 4.57.x (what vLLM and LLaMA-Factory users still run) with the same
logits and token ids as under the project's transformers 5.x, on real CROHME images.

transformers 4.57 (with its own tokenizers / huggingface_hub) is installed with ``pip install --no-deps --target``
into the git-ignored ``.fixtures/`` and run in a subprocess, so the project's pins never move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from unimumer_lib.core.paths import REPO_ROOT
from unimumer_lib.models.hubfixture import build_fixture
from unimumer_lib.inference.infer import _open_image, chat
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.models.model import load_processor
from unimumer_lib.tasks.build import PROMPTS, caption_rows, write_task_files
from unimumer_lib.training.train import FINAL_DIR, train

OLD = ("transformers==4.57.6", "huggingface_hub==0.36.2", "tokenizers==0.22.2")
TARGET = REPO_ROOT / ".fixtures" / "transformers-4.57.6"
FORWARD = r"""
import json, sys, torch, transformers
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
folder, inputs, out, text = sys.argv[1:5]
model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.float32).eval()
with torch.no_grad():
    torch.save(model(**torch.load(inputs)).logits, out)
ids = AutoTokenizer.from_pretrained(folder).encode(text)
print(json.dumps({"version": transformers.__version__, "ids": ids}))
"""
TEXT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\\frac { x } { 2 }<|im_end|>\n"


def _old_transformers():
    if not (TARGET / "transformers").is_dir():
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TARGET),
                               *OLD],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"{OLD[0]} could not be installed from PyPI: {done.stderr[-300:]}")
    return TARGET


@pytest.fixture(scope="module")
def final(crohme_root, tmp_path_factory):
    """``final/`` of a one-step fine-tuning of the hub fixture on four real CROHME training images."""
    folder = tmp_path_factory.mktemp("ft457")
    records = sample_caption_set(crohme_root / "train", folder / "set", 4, min_tokens=3, max_tokens=8, height=64)
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in records], ["vanilla"], progress=False)
    path = write_task_files(folder / "tasks", rows)["vanilla"]
    train(path, model_path=str(build_fixture()), preset="cpu-smoke", out_dir=folder / "run", max_steps=1,
          disable_tqdm=True)
    return folder / "run" / FINAL_DIR


def test_final_loads_in_transformers_4_57_with_identical_logits(final, crohme_root, tmp_path):
    target = _old_transformers()
    test = sample_caption_set(crohme_root / "test2014", tmp_path / "test", 4, min_tokens=3, max_tokens=12, height=64,
                              seed=5)
    images = [_open_image(r.image_path) for r in test]
    processor = load_processor(final)
    inputs = processor.apply_chat_template([chat(im, PROMPTS["vanilla"]) for im in images], tokenize=True,
                                           return_dict=True, return_tensors="pt", add_generation_prompt=True,
                                           processor_kwargs={"padding": True, "padding_side": "left"})
    torch.save(dict(inputs), tmp_path / "inputs.pt")
    runs = {}
    for name, path in (("old", str(target)), ("ours", "")):
        env = {**os.environ, "PYTHONPATH": path}
        done = subprocess.run([sys.executable, "-c", FORWARD, str(final), str(tmp_path / "inputs.pt"),
                               str(tmp_path / f"{name}.pt"), TEXT], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["old"]["version"] == "4.57.6" and runs["ours"]["version"].startswith("5.")
    assert runs["old"]["ids"] == runs["ours"]["ids"] == processor.tokenizer.encode(TEXT)
    old, ours = torch.load(tmp_path / "old.pt"), torch.load(tmp_path / "ours.pt")
    assert old.shape[0] == 4 and torch.equal(old, ours)
