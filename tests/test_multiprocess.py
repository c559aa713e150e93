"""``unimumer train`` under ``accelerate launch`` with two CPU processes (gloo): batch arithmetic, rank-0 output,
checkpoint rotation. (``accelerate launch --cpu --num_processes 2`` starts one process unless mpirun is set up;
``--multi_gpu`` on a machine without GPUs starts two gloo processes, the same launcher GPU users get.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from unimumer_lib.core.paths import REPO_ROOT
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.tasks.build import caption_rows, write_task_files
from unimumer_lib.training.train import FINAL_DIR, RUN_CONFIG_FILE


def test_two_process_training(crohme_root, tmp_path):
    records = sample_caption_set(crohme_root / "train", tmp_path / "set", 6, max_tokens=10, height=48, seed=4)
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in records], ["vanilla"], progress=False)
    write_task_files(tmp_path / "tasks", rows)
    config = tmp_path / "two.yaml"
    config.write_text("per_device_train_batch_size: 2\neffective_batch: 8\nsave_steps: 1\nsave_total_limit: 2\n")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "unimumer_lib.pipeline.cli",
           "train", "--data", str(tmp_path / "tasks"), "--model", "tiny", "--preset", "cpu-smoke", "--config",
           str(config), "--max-steps", "3", "--out", str(run)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 3 steps") == 1  # rank 0 reports; rank 1 stays quiet
    recorded = json.loads((run / RUN_CONFIG_FILE).read_text())
    sft = recorded["sft_config"]
    assert recorded["world_size"] == 2
    assert sft["per_device_train_batch_size"] * sft["gradient_accumulation_steps"] * 2 == 8
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert {p.name for p in (run / "checkpoint-3").glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert (run / FINAL_DIR / "preprocessor_config.json").is_file()


def test_notebook_03_trains_in_two_processes_at_the_same_effective_batch(crohme_root, tmp_path):
    """Issue 21: the paper profile trained on one GPU only (notebook 03 trained in-process)."""
    from unimumer_lib.pipeline import reproduce
    from unimumer_lib.training.sftconfig import PRESETS

    records = sample_caption_set(crohme_root / "train", tmp_path / "set", 8, max_tokens=10, height=48, seed=2)
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in records], ["vanilla"], progress=False)
    files = write_task_files(tmp_path / "tasks", rows)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # gloo: the launcher GPU users get, on CPU
    try:
        reproduce.run_notebook("03_sft_trl.ipynb", tmp_path / "nb", {
            "train_json": [str(files["vanilla"])], "out_dir": str(tmp_path / "run"), "figures_dir": str(tmp_path),
            "max_steps": 2, "processes": 2, "preset": "cpu-smoke"})
    finally:
        os.environ.pop("CUDA_VISIBLE_DEVICES")
    recorded = json.loads((tmp_path / "run" / RUN_CONFIG_FILE).read_text())
    sft = recorded["sft_config"]
    assert recorded["world_size"] == 2
    assert sft["per_device_train_batch_size"] * sft["gradient_accumulation_steps"] * 2 == \
        PRESETS["cpu-smoke"]["effective_batch"]
    assert (tmp_path / "run" / FINAL_DIR / "model.safetensors").is_file()
