"""vLLM throughput of the hub fixture on 256 CROHME 2014 images (64 new tokens), for a GPU machine with the vllm
extra in its own environment (vLLM pins transformers < 5.20; the training environment has 5.25):

    python3 benchmarks/gpu_vllm.py OUT_DIR     # prints one Markdown row; OUT_DIR/vllm_pred.json
"""

import sys
import time
from pathlib import Path

from unimumer_lib.core import paths
from unimumer_lib.models import hubfixture
from unimumer_lib.inference import infer
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.models.model import load_processor

out = Path(sys.argv[1])
hub = hubfixture.build_fixture()
records = sample_caption_set(paths.crohme_root() / "test2014", out / "vllm_set", 256, height=128)
start = time.perf_counter()
rows = infer.predict(infer.VllmModel(str(hub)), load_processor(hub), records, out / "vllm_pred.json",
                     max_new_tokens=64, force=True, progress=False)
print(f"| vLLM, hub fixture, {len(rows)} images, 64 new tokens | {len(rows) / (time.perf_counter() - start):.1f} "
      f"images/s |")
