"""The vLLM step of ``benchmarks/gpu_acceptance.sh`` (the GPU checks' script) runs as written, here against a stand-in
``vllm`` package: the script's own Python, ``infer.VllmModel`` -> ``predict`` -> the vLLM runner -> the prediction
file. (On this CPU machine vLLM itself cannot run; the stand-in returns "x" for every image.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from unimumer_lib.config import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_acceptance.sh"
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


def vllm_block() -> str:
    text = SCRIPT.read_text(encoding="utf-8")
    return re.search(r"<<'PY' \| tee \"\$OUT/vllm\.md\"\n(.*?)\nPY\n", text, re.S).group(1)


def test_the_vllm_step_of_the_gpu_script_runs(tmp_path, crohme_root):
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(FAKE_VLLM, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
           "UNIMUMER_CROHME": str(crohme_root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", vllm_block(), str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| vLLM, hub fixture, 256 images, 64 new tokens |" in done.stdout
    rows = json.loads((tmp_path / "out" / "vllm_pred.json").read_text(encoding="utf-8"))
    assert len(rows) == 256 and {r["pred"] for r in rows} == {"x"}
