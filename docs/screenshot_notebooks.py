"""Screenshots of a run's executed notebooks as saved: each rendered to HTML by nbconvert's JupyterLab template
(what JupyterLab, nbviewer and GitHub show of a saved notebook: no kernel, widget outputs only as saved) and
photographed whole in headless Chromium (figures/notebook_<nn>.png of the README).

Needs Chromium (Debian: ``apt-get install chromium``) and ``pip install playwright`` (its driver only; the browser
is the system one). One notebook per number: the ``all`` arm's copy of 03 and 04 where a run has several.

    python docs/screenshot_notebooks.py runs/smoke [--out figures] [--width 1100] [--max-height 9000] [--colors 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from screenshot_drawing_pad import CHROMIUM_FLAGS, REPO  # the same browser settings (docs/ is on sys.path)

PREFERRED_TAGS = ("all", "test", "")  # which executed copy stands for a notebook run once per arm or split


def pick_notebooks(run_dir: Path) -> dict[str, Path]:
    """{"01": path, ...}: one executed copy per notebook number, the main arm's where there are several."""
    chosen: dict[str, Path] = {}
    for path in sorted((run_dir / "notebooks").glob("0[1-5]_*.ipynb")):
        number, tag = path.name[:2], "".join(path.suffixes[:-1]).lstrip(".")
        held = chosen.get(number)
        rank = PREFERRED_TAGS.index(tag) if tag in PREFERRED_TAGS else len(PREFERRED_TAGS)
        if held is None or rank < held[0]:
            chosen[number] = (rank, path)
    return {n: p for n, (_, p) in sorted(chosen.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder of `unimumer reproduce` (its notebooks/ folder)")
    parser.add_argument("--out", type=Path, default=REPO / "figures", help="folder for notebook_<nn>.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--width", type=int, default=1100, help="page width in CSS pixels")
    parser.add_argument("--max-height", type=int, default=9000, help="longest page kept (CSS pixels), from the top")
    parser.add_argument("--colors", type=int, default=256, help="palette size of the saved PNG (0: full colour)")
    args = parser.parse_args(argv)
    import nbformat
    from nbconvert import HTMLExporter
    from playwright.sync_api import sync_playwright

    books = pick_notebooks(args.run)
    if not books:
        print(f"{args.run}: no executed notebooks in {args.run / 'notebooks'}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": args.width, "height": 800})
        for number, path in books.items():
            html, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
            page_file = Path(tmp) / f"{number}.html"
            page_file.write_text(html, encoding="utf-8")
            page.goto(page_file.as_uri())
            page.wait_for_load_state("networkidle")
            height = min(page.evaluate("document.documentElement.scrollHeight"), args.max_height)
            out = args.out / f"notebook_{number}.png"
            page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": args.width, "height": height},
                            full_page=True)
            if args.colors:  # a page of text and a few charts: a palette keeps it legible at a quarter of the size
                from PIL import Image

                with Image.open(out) as shot:
                    small = shot.convert("RGB").quantize(colors=args.colors)
                small.save(out, optimize=True)
            print(f"{path.name}: {out} ({args.width} x {height}, {out.stat().st_size // 1024} KiB)")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
