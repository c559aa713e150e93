"""Which setting keeps base5's vision tower telling images apart? Short runs from random weights on the glyph-base
stream's task files, each followed by ``vision_health``'s numbers (cosine between images near 1 and a small spread
within an image: the tower has collapsed to one vector, and the model can only guess).

    python benchmarks/bench_vision_collapse.py --tasks WORK/tasks --steps 300 [--configs mix-0.1 vanilla-0.1 ...]

A config is ``<data>-<vision init>[-<lr>]``: data ``mix`` (every task file of the folder) or ``vanilla``.
"""

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from unimumer_lib.training import stream
from unimumer_lib.models.images import fit_pixels
from unimumer_lib.models.tiny import tiny_model
from unimumer_lib.tasks.build import listed_task_files
from unimumer_lib.training.train import train

import vision_health


def run(tasks: Path, config: str, steps: int, size: str, images) -> str:
    data, init, *lr = config.split("-")
    files = listed_task_files(tasks) if data == "mix" else [tasks / "vanilla.json"]
    model, processor = tiny_model(size, vision_init=float(init))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = train(files, model=model, processor=processor, preset="cpu-read-base", out_dir=out, max_steps=steps,
                       save_steps=10**6, disable_tqdm=True, **({"learning_rate": float(lr[0])} if lr else {}))
        row = vision_health.health(result.final_dir, images)
    return row.replace(f"| {result.final_dir} |", f"| {config}, {steps} steps ({time.perf_counter() - start:.0f} s), "
                                                 f"loss {result.last_loss:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", default="base5")
    ap.add_argument("--configs", nargs="+", default=["mix-0.1", "vanilla-0.1", "mix-0.02"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        records = stream.held_out_records(tmp, 6, offset=2500, glyphs="test")
        images = [fit_pixels(Image.open(r.image_path).convert("RGB")) for r in records]
        print("| run | image-token RMS | token-embedding RMS | cosine between images | std / RMS in an image |")
        print("| --- | --- | --- | --- | --- |", flush=True)
        for config in args.configs:
            print(run(args.tasks, config, args.steps, args.size, images), flush=True)


if __name__ == "__main__":
    main()
