#!/usr/bin/env bash
# The GPU checks of issue 21, as one short script for a machine with a GPU (run from the repository root after
# the GPU install of the README). Prints the tables to paste into benchmarks/README.md with the device named:
#   1. bench_gpu_qwen3b.py: full fine-tuning and LoRA of the real Qwen2.5-VL-3B architecture (random weights):
#      samples/s, tokens/s, peak memory, MFU; greedy generation throughput;
#   2. vLLM generation throughput, when the vllm extra is installed;
#   3. the hub-fixture path on the GPU: unimumer train -> infer -> eval on 16 CROHME images.
# Usage: bash benchmarks/gpu_acceptance.sh [OUT_DIR]    (needs the CROHME data; UNIMUMER_CROHME to point at it)
set -euo pipefail
OUT=${1:-runs/gpu_acceptance}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.csv"
python3 benchmarks/bench_gpu_qwen3b.py --gen-batches 1,16,64 | tee "$OUT/bench_gpu_qwen3b.md"
if python3 -c "import vllm" 2>/dev/null; then
  python3 - "$OUT" <<'PY' | tee "$OUT/vllm.md"
import sys, time
from pathlib import Path
from unimumer_lib import config, hubfixture, infer
from unimumer_lib.mining import sample_caption_set
from unimumer_lib.model import load_processor
out = Path(sys.argv[1])
hub = hubfixture.build_fixture()
records = sample_caption_set(config.crohme_root() / "test2014", out / "vllm_set", 256, height=128)
start = time.perf_counter()
rows = infer.predict(infer.VllmModel(str(hub)), load_processor(hub), records, out / "vllm_pred.json", max_new_tokens=64,
                     force=True, progress=False)
print(f"| vLLM, hub fixture, {len(rows)} images, 64 new tokens | {len(rows) / (time.perf_counter() - start):.1f} images/s |")
PY
else
  echo "vllm not installed: no vLLM row (pip install -e '.[vllm]')" | tee "$OUT/vllm.md"
fi
python3 - "$OUT" <<'PY'
import sys
from pathlib import Path
from unimumer_lib import config, hubfixture
from unimumer_lib.mining import sample_caption_set
from unimumer_lib.tasks import caption_rows, write_task_files
out = Path(sys.argv[1])
train = sample_caption_set(config.crohme_root() / "train", out / "train_set", 16, max_tokens=12, height=128)
rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in train], ["vanilla"], progress=False)
write_task_files(out / "tasks", rows)
sample_caption_set(config.crohme_root() / "test2014", out / "test_set", 16, max_tokens=12, height=128, seed=1)
print(hubfixture.build_fixture(), file=open(out / "hub.txt", "w"))
PY
HUB=$(cat "$OUT/hub.txt")
unimumer train --data "$OUT/tasks" --model "$HUB" --preset single-gpu-lora --max-steps 4 --out "$OUT/sft" --force
unimumer infer --model "$OUT/sft/final" --data "$OUT/test_set" --out "$OUT/pred.json" --force
unimumer eval "$OUT/pred.json" --format md | tee "$OUT/eval.md"
