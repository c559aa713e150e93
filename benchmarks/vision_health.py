"""Is a checkpoint's vision tower still telling images apart? The image tokens it hands the language model, on a
few held-out real-glyph compositions: their size (RMS) against the token embeddings', how alike the images' mean
image tokens are (cosine), and how much the tokens of one image differ from each other (std / RMS). A tower that
collapsed gives every image one constant vector (cosine 1.000, std/RMS near 0): the model can only guess.

    python benchmarks/vision_health.py CHECKPOINT [CHECKPOINT ...]   # shipped names, run folders' checkpoints
"""

import sys
import tempfile

import torch
from PIL import Image

from unimumer_lib.training import stream
from unimumer_lib.models.images import fit_pixels
from unimumer_lib.models.model import load_model


def health(path, images) -> str:
    model, processor = load_model(path, dtype="float32")
    batch = processor.image_processor(images=images, return_tensors="pt")
    with torch.no_grad():
        out = model.model.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
    feats = getattr(out, "pooler_output", out)
    merge = processor.image_processor.merge_size ** 2
    per_image = torch.split(feats, (batch["image_grid_thw"].prod(-1) // merge).tolist())
    means = [f.mean(0) for f in per_image]
    cosine = sum(torch.nn.functional.cosine_similarity(means[0], m, dim=0).item() for m in means[1:]) / (len(means) - 1)
    spread = sum((f.std(0).mean() / f.pow(2).mean().sqrt()).item() for f in per_image) / len(per_image)
    emb = model.model.language_model.embed_tokens.weight.pow(2).mean().sqrt().item()
    return (f"| {path} | {feats.pow(2).mean().sqrt().item():.3g} | {emb:.3g} | {cosine:.4f} | {spread:.3f} |")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        records = stream.held_out_records(tmp, 6, offset=2500, glyphs="test")
        images = [fit_pixels(Image.open(r.image_path).convert("RGB")) for r in records]
        print("| checkpoint | image-token RMS | token-embedding RMS | cosine between images | std / RMS in an image |")
        print("| --- | --- | --- | --- | --- |")
        for path in sys.argv[1:]:
            print(health(path, images), flush=True)


if __name__ == "__main__":
    main()
