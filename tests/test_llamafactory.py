"""Training sequences equal LLaMA-Factory's ``qwen2_vl`` template encoding (ids and labels), five tasks, real data.

LLaMA-Factory 0.9.3 is installed with ``pip install --no-deps --target`` into the git-ignored ``.fixtures/``
(its template code needs nothing beyond the project's own dependencies), so the project's pins never move.
The fixture folder supplies the real Qwen tokenizer and the hub's image-processor settings.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from unimumer_lib.core.paths import REPO_ROOT
from unimumer_lib.models.hubfixture import build_fixture
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.models.images import PAPER_MAX_PIXELS
from unimumer_lib.models.model import load_model
from unimumer_lib.tasks.build import TASKS, write_task_files
from unimumer_lib.training.train import make_trainer
from unimumer_lib.training.sftdata import load_sharegpt_dataset
from crohme_tasks import rows_of

LLAMAFACTORY = "llamafactory==0.9.3"
TARGET = REPO_ROOT / ".fixtures" / "llamafactory-0.9.3"
PER_TASK = 50
IGNORE = -100


def _llamafactory():
    """Import LLaMA-Factory's template code from its own target folder (installed once)."""
    if not (TARGET / "llamafactory").is_dir():
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TARGET),
                               LLAMAFACTORY], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"{LLAMAFACTORY} could not be installed from PyPI: {done.stderr[-300:]}")
    sys.path.insert(0, str(TARGET))
    try:
        from llamafactory.data.processor.supervised import SupervisedDatasetProcessor
        from llamafactory.data.template import get_template_and_fix_tokenizer
    finally:
        sys.path.remove(str(TARGET))
    return SupervisedDatasetProcessor, get_template_and_fix_tokenizer


@pytest.fixture(scope="module")
def encoded(crohme_root, tmp_path_factory):
    """{task: [(ours (ids, labels), LLaMA-Factory's (ids, labels))]} for PER_TASK real records per task."""
    processor_cls, get_template = _llamafactory()
    folder = tmp_path_factory.mktemp("lf")
    # a few images above the 262,144-pixel cap first: both sides must shrink them to the same grid
    records = (sample_caption_set(crohme_root / "train", folder / "big", 3, min_tokens=8, height=700, seed=5)
               + sample_caption_set(crohme_root / "train", folder / "set", PER_TASK + 10, height=64, seed=3))
    rows = rows_of([(r.id, r.caption, r.image_path) for r in records], PER_TASK)
    paths = write_task_files(folder / "tasks", rows)
    model, processor = load_model(build_fixture(), dtype="float32")
    trainer = make_trainer(model, processor, load_sharegpt_dataset(paths["vanilla"]), "paper", folder / "run",
                           use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True)
    data_args = SimpleNamespace(template="qwen2_vl", tool_format=None, default_system=None, enable_thinking=True,
                                train_on_prompt=False, mask_history=False, cutoff_len=trainer.args.max_length)
    template = get_template(processor.tokenizer, data_args)
    lf_processor = _lf_view(processor)
    lf = processor_cls(template=template, tokenizer=processor.tokenizer, processor=lf_processor, data_args=data_args)
    out = {}
    for task, path in paths.items():
        pairs = []
        for row, example in zip(rows[task], load_sharegpt_dataset(path, seed=0, shuffle=False)):
            batch = trainer.data_collator([dict(example)])
            keep = batch["attention_mask"][0].bool()
            ours = (batch["input_ids"][0][keep].tolist(), batch["labels"][0][keep].tolist())
            msgs = [{"role": {"human": "user", "gpt": "assistant"}[m["from"]], "content": m["value"]}
                    for m in row["messages"]]
            theirs = lf._encode_data_example(msgs[:1], msgs[1:], None, None, row["images"], [], [])
            pairs.append((ours, theirs))
        out[task] = pairs
    return out


def _lf_view(processor):
    """The attributes LLaMA-Factory's model loader sets on a processor, at Uni-MuMER's training settings."""
    for key, value in dict(image_max_pixels=PAPER_MAX_PIXELS, image_min_pixels=32 * 32, image_do_pan_and_scan=False,
                           crop_to_patches=False, video_max_pixels=256 * 256, video_min_pixels=16 * 16,
                           video_fps=2.0, video_maxlen=128, use_audio_in_video=False,
                           audio_sampling_rate=16000).items():
        setattr(processor, key, value)
    return processor


@pytest.mark.parametrize("task", TASKS)
def test_ids_and_labels_equal_llamafactory(encoded, task):
    pairs = encoded[task]
    assert len(pairs) >= PER_TASK
    for ours, theirs in pairs:
        assert ours[0] == theirs[0]
        assert ours[1] == [IGNORE if t == IGNORE else t for t in theirs[1]]
