"""Compare two `unimumer eval --format json` files of the same model on the same images (the CPU's and the GPU's):
print both ExpRate / <=1 / <=2 and exit 1 when ExpRate differs by more than 0.3 points.

    python3 benchmarks/gpu_compare.py CPU_EVAL.json GPU_EVAL.json
"""

import json
import sys

TOLERANCE = 0.3  # points of ExpRate: fp32 on the CPU against the GPU's kernels may flip a near tie or two

cpu, gpu = (json.load(open(path, encoding="utf-8"))[0] for path in sys.argv[1:3])
print("| | N | ExpRate | <=1 | <=2 |\n| --- | --- | --- | --- | --- |")
for name, row in (("CPU", cpu), ("GPU", gpu)):
    print(f"| {name} | {row['n']} | {row['exprate']:.2f} | {row['le1']:.2f} | {row['le2']:.2f} |")
gap = abs(cpu["exprate"] - gpu["exprate"])
print(f"ExpRate gap {gap:.2f} points (tolerance {TOLERANCE})")
sys.exit(0 if gap <= TOLERANCE and cpu["n"] == gpu["n"] else 1)
