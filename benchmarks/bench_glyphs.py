"""Where does the CPU recipe's learning stall? Single handwritten glyphs, read two ways by the same tiny model.

Every training and test image is one symbol of the caption sampler's vocabulary (103 classes), written by a
synthetic writer (test writers unseen) and rendered at the recipe's height. Two arms, same steps and batch:

* ``vision``: the tiny model's vision tower, mean-pooled, with a linear classifier on top (a plain torch loop):
  how fast the vision tower itself can learn glyph identity.
* ``model``: the whole tiny Qwen2.5-VL trained by the recipe (``unimumer_lib.training.train``, TRL, the vanilla prompt)
  and read greedily (``unimumer_lib.inference.infer``): the same glyphs, but through the language model's attention over
  the chat template's ~60 prompt tokens and the image tokens.

The gap between the two is the cost of routing image features through the decoder; ``--text-init`` varies the
language model's init std (the recipe's 0.1 against the usual 0.02).

    python benchmarks/bench_glyphs.py [--steps 600] [--text-init 0.1 0.02] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from unimumer_lib.inference.infer import exprate, predict
from unimumer_lib.models.images import fit_pixels
from unimumer_lib.models.tiny import tiny_model
from unimumer_lib.pipeline.profiles import PROFILES
from unimumer_lib.data.synth import glyph_images, glyph_vocabulary
from unimumer_lib.tasks.build import caption_rows, write_task_files
from unimumer_lib.training.train import train
from unimumer_lib.training.sftconfig import PRESETS

RECIPE = PROFILES["smoke"]


def vision_arm(train_set, test_set, classes, steps: int, batch: int, lr: float, seed: int) -> float:
    """Test accuracy of vision tower + mean pool + linear head trained for ``steps``."""
    from PIL import Image

    model, processor = tiny_model(RECIPE.model, seed=seed)
    vision, index = model.model.visual, {c: i for i, c in enumerate(classes)}
    head = torch.nn.Linear(model.config.text_config.hidden_size, len(classes))
    opt = torch.optim.AdamW([*vision.parameters(), *head.parameters()], lr=lr)

    def logits(records):
        images = [fit_pixels(Image.open(r.image_path)) for r in records]
        b = processor.image_processor(images=images, return_tensors="pt")
        out = vision(b["pixel_values"], grid_thw=b["image_grid_thw"])
        feats = getattr(out, "pooler_output", out)  # the merged (LLM-side) image tokens
        sizes = (b["image_grid_thw"].prod(-1) // processor.image_processor.merge_size ** 2).tolist()
        return head(torch.stack([f.mean(0) for f in torch.split(feats, sizes)]))

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        picked = [train_set[i] for i in rng.choice(len(train_set), batch, replace=False)]
        loss = torch.nn.functional.cross_entropy(logits(picked), torch.tensor([index[r.caption] for r in picked]))
        loss.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        hits = sum(int((logits(test_set[i:i + 50]).argmax(-1) == torch.tensor(
            [index[r.caption] for r in test_set[i:i + 50]])).sum()) for i in range(0, len(test_set), 50))
    return 100.0 * hits / len(test_set)


def model_arm(train_set, test_set, work: Path, steps: int, batch: int, text_init: float, seed: int) -> float:
    """Held-out exact-symbol rate of the whole model trained by the recipe for ``steps``."""
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in train_set], ["vanilla"], progress=False)
    files = write_task_files(work / "tasks", rows)
    model, processor = tiny_model(RECIPE.model, seed=seed, text_init=text_init)
    result = train([files["vanilla"]], model=model, processor=processor, preset=RECIPE.preset,
                   out_dir=work / f"sft_{text_init}", max_steps=steps, save_steps=10**6, disable_tqdm=True,
                   per_device_train_batch_size=batch, gradient_accumulation_steps=1, seed=seed)
    preds = predict(result.model, processor, test_set, work / f"pred_{text_init}.json", batch_size=32,
                    max_new_tokens=8, progress=False)
    return 100.0 * exprate(preds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=2400)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--text-init", type=float, nargs="+", default=[0.1, 0.02])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="runs/bench_glyphs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work, classes = Path(args.work), glyph_vocabulary()
    train_set = glyph_images(work / "train", classes, args.train, args.seed, RECIPE.height)
    test_set = glyph_images(work / "test", classes, args.test, args.seed + 1, RECIPE.height)
    print(f"{len(classes)} glyph classes, {len(train_set)} training images, {len(test_set)} of unseen writers; "
          f"{args.steps} steps of {args.batch} (chance {100 / len(classes):.1f}%)")
    t = time.perf_counter()
    lr = PRESETS[RECIPE.preset]["learning_rate"]  # the recipe's, so both arms learn at the same rate
    acc = vision_arm(train_set, test_set, classes, args.steps, args.batch, lr, args.seed)
    print(f"vision tower + linear head: {acc:.1f}% ({time.perf_counter() - t:.0f} s)")
    for text_init in args.text_init:
        t = time.perf_counter()
        acc = model_arm(train_set, test_set, work, args.steps, args.batch, text_init, args.seed)
        print(f"whole model, recipe (TRL), text init {text_init}: {acc:.1f}% ({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
