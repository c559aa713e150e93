"""Zero-shot ExpRate of shipped bases (or checkpoints) on all of CROHME 2014 (rendered at 64 px as `prepare`
renders) and on 300 held-out compositions of the glyph bank's test writers (the held-out pool past the learning
curve's 200 and the smoke test set's 1,110): one JSON line per (model, set) with ExpRate, <=1, <=2, the top
output's share and the seconds taken.

    python benchmarks/bench_bases.py glyph-base tiny-base      # needs the CROHME root (paths.crohme_root())
"""
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from unimumer_lib.training import stream
from unimumer_lib.inference.infer import load_for_inference, predict
from unimumer_lib.evaluation.metrics import score

work = Path(tempfile.mkdtemp(prefix="bench_bases_"))
t = time.time()
crohme = stream.crohme_records(work, "test2014", 10_000)
comps = stream.held_out_records(work, 300, offset=1200, glyphs="test")
print(f"data: {len(crohme)} CROHME 2014, {len(comps)} compositions, {time.time()-t:.0f} s", flush=True)
for name in sys.argv[1:]:
    model, proc = load_for_inference(name)
    for label, recs in (("crohme2014", crohme), ("compositions", comps)):
        t = time.time()
        preds = predict(model, proc, recs, work / f"{Path(name).name}_{label}.json", batch_size=16,
                        max_new_tokens=128, progress=False)
        m = score([p.gt for p in preds], [p.pred for p in preds])
        top = Counter(p.pred for p in preds).most_common(1)[0]
        print(json.dumps({"model": name, "set": label, "n": len(preds), "exprate": round(m.exprate, 2),
                          "le1": round(m.le1, 2), "le2": round(m.le2, 2),
                          "top_share": round(100 * top[1] / len(preds), 1), "s": round(time.time() - t)}), flush=True)
