"""How an image becomes a model's input: the paper's pixel cap and LLaMA-Factory's fit (``fit_pixels``), the
official inference script's sizing (``official_size``), dark-on-light ink (``on_white``), the input spec a
checkpoint records (the height and ink it was trained on) and the processor's pixel bounds.
"""

from __future__ import annotations

from pathlib import Path


PAPER_MAX_PIXELS = 262_144  # Uni-MuMER: at most 512*512 pixels per image
MIN_PIXELS = 32 * 32  # LLaMA-Factory's default image_min_pixels
SIZINGS = ("paper", "official")  # paper: fit_pixels (LLaMA-Factory, the 262,144 cap); official: official_size
OFFICIAL_FACTOR, OFFICIAL_MIN_PIXELS, OFFICIAL_MAX_PIXELS = 28, 4 * 28 * 28, 16384 * 28 * 28  # qwen_vl_utils'


def official_size(image, factor: int = OFFICIAL_FACTOR):
    """The official inference script's sizing (``qwen_vl_utils``' ``smart_resize``): sides rounded to multiples
    of ``factor`` (Qwen2.5-VL: 28), the area brought into 3,136..12,845,056 pixels (no 262,144 cap), on white
    paper."""
    import math

    image = on_white(image)
    f, h, w = factor, image.height, image.width
    hb, wb = max(f, round(h / f) * f), max(f, round(w / f) * f)
    if hb * wb > OFFICIAL_MAX_PIXELS:
        beta = math.sqrt(h * w / OFFICIAL_MAX_PIXELS)
        hb, wb = max(f, math.floor(h / beta / f) * f), max(f, math.floor(w / beta / f) * f)
    elif hb * wb < OFFICIAL_MIN_PIXELS:
        beta = math.sqrt(OFFICIAL_MIN_PIXELS / (h * w))
        hb, wb = math.ceil(h * beta / f) * f, math.ceil(w * beta / f) * f
    return image if (wb, hb) == image.size else image.resize((wb, hb), resample=3)  # bicubic, as PIL's default


def on_white(image):
    """RGB, a transparent background composited onto white paper (what a canvas or a drawing program exports:
    black ink, alpha 0 elsewhere; ``convert("RGB")`` alone would turn that paper black)."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, image).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


INPUT_SPEC_FILE = "unimumer_input.json"  # beside a checkpoint: the input it was trained on ({"height": px, "ink"})
DARK_INK = "dark-on-light"  # the ink polarity every renderer of this project writes (black strokes, white paper)


def input_spec_of_images(paths: list, limit: int = 64) -> dict | None:  # paths or PIL images
    """``{"height": h, "ink": DARK_INK}`` when the first ``limit`` training images all share height ``h`` and have
    light paper (prepared or synthetic data), else None (images of many sizes: nothing to bring them to)."""
    from contextlib import nullcontext

    from PIL import Image

    heights, light = set(), True
    for path in list(paths)[:limit]:
        with Image.open(path) if isinstance(path, (str, Path)) else nullcontext(path) as im:
            heights.add(im.height)
            light = light and not _dark_paper(im)
    return {"height": heights.pop(), "ink": DARK_INK} if len(heights) == 1 and light else None


def _dark_paper(image) -> bool:
    """Whether the image's border (its paper) is darker than mid-grey."""
    import numpy as np

    a = np.asarray(on_white(image).convert("L"), dtype=np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return float(np.median(border)) < 128


def to_model_input(image, spec: dict | None):
    """``image`` brought to what a checkpoint with input ``spec`` was trained on: RGB on white, light paper (a dark
    background is inverted), ``spec["height"]`` pixels high. An image laid out as the renderer lays ink out (a
    margin of about height/16 around it) is only scaled; one with wider margins is first cropped to its ink plus
    that margin. Scaling averages pixels (box filter): a sharper filter rings, and the tiny base reads 40 held-out
    expressions rendered at 128 px at 27.5 % box-scaled, 15.0 % Lanczos-scaled. Unchanged (RGB on white) without a
    spec."""
    import numpy as np
    from PIL import Image, ImageOps

    from ..data.render import MAX_ASPECT

    image = on_white(image)
    if not spec or not spec.get("height"):
        return image
    if _dark_paper(image):
        image = ImageOps.invert(image)
    height = int(spec["height"])
    pad = max(1, round(height / 16))
    ys, xs = np.nonzero(np.asarray(image.convert("L")) < 200)
    if len(xs):
        scale = height / image.height
        margins = (ys.min() * scale, height - (ys.max() + 1) * scale, xs.min() * scale,
                   (image.width - xs.max() - 1) * scale)
        if max(margins) > 2 * pad:  # wide margins: crop to the ink and the renderer's margin
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            box_h = max(y1 - y0, (x1 - x0) / MAX_ASPECT)
            margin = pad * box_h / (height - 2 * pad)
            top = (y0 + y1) / 2 - box_h / 2 - margin
            box = (round(x0 - margin), round(top), round(x1 + margin), round(top + box_h + 2 * margin))
            canvas = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), "white")
            canvas.paste(image, (-box[0], -box[1]))
            image = canvas
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.BOX)


def fit_pixels(image, max_pixels: int = PAPER_MAX_PIXELS, min_pixels: int = MIN_PIXELS, factor: int = 28):
    """Resize a PIL image the way LLaMA-Factory's Qwen2-VL plugin does before the image processor sees it
    (Uni-MuMER's training path): scale into [min_pixels, max_pixels] (int-truncated sides), each side at least
    ``factor`` (the family's patch x merge: Qwen2.5-VL 28), aspect ratio at most 200; RGB. The processor then
    only rounds the sides to its patch grid."""
    import math

    for bound, outside in ((max_pixels, lambda a: a > max_pixels), (min_pixels, lambda a: a < min_pixels)):
        if outside(image.width * image.height):
            scale = math.sqrt(bound / (image.width * image.height))
            image = image.resize((int(image.width * scale), int(image.height * scale)))
    if min(image.width, image.height) < factor:
        image = image.resize((max(image.width, factor), max(image.height, factor)))
    if image.width / image.height > 200:
        image = image.resize((image.height * 180, image.height))
    if image.height / image.width > 200:
        image = image.resize((image.width, image.width * 180))
    return on_white(image)


def set_pixel_bounds(processor, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Clamp the image processor's resize bounds (the paper caps images at 262,144 pixels)."""
    ip = processor.image_processor
    size = dict(getattr(ip, "size", None) or {})
    for key, attr, value in (("shortest_edge", "min_pixels", min_pixels), ("longest_edge", "max_pixels", max_pixels)):
        if value is not None:
            size[key] = value
            if getattr(ip, attr, None) is not None:  # older processors read the attribute, newer ones ``size``
                setattr(ip, attr, value)
    ip.size = size
