"""Screenshot of the drawing pad in a real browser: JupyterLab in headless Chromium, a formula written with mouse
events, recognised by the shipped tiny base (figures/drawing_pad.png of the README).

Needs Chromium (Debian: ``apt-get install chromium``) and ``pip install playwright`` (its driver only; the browser
is the system one). The strokes are those of a held-out synthetic expression (``synth.synthesize``), scaled to the
canvas and replayed as mouse down / move / up events, so the pad captures them exactly as it captures a user's.

    python docs/screenshot_drawing_pad.py [--seed 1502] [--out figures/drawing_pad.png] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def canvas_strokes(ink, width: float, height: float, margin: tuple[float, float] = (40, 30)) -> list[list[tuple]]:
    """The ink's strokes scaled (aspect kept) into a ``width`` x ``height`` box, in box pixels."""
    points = np.concatenate(list(ink.traces.values()))
    lo, hi = points.min(0), points.max(0)
    scale = min((width - 2 * margin[0]) / max(hi[0] - lo[0], 1), (height - 2 * margin[1]) / max(hi[1] - lo[1], 1))
    return [[(float(margin[0] + (x - lo[0]) * scale), float(margin[1] + (y - lo[1]) * scale)) for x, y in stroke]
            for stroke in ink.traces.values()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1502, help="held-out synthetic expression to write")
    parser.add_argument("--out", type=Path, default=REPO / "figures" / "drawing_pad.png", help="PNG to write")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--port", type=int, default=8899, help="JupyterLab port on localhost")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO))
    from unimumer_lib.training import stream
    from unimumer_lib.data.synth import synthesize

    ink = synthesize(args.seed, stream.HELD_OUT_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                     "display_name": "Python 3"}})
        code = "from unimumer_lib.evaluation import drawing\npad = drawing.draw()"
        notebook.cells = [nbformat.v4.new_code_cell(code)]
        nbformat.write(notebook, Path(tmp) / "draw.ipynb")
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={args.port}", "--allow-root",
             "--IdentityProvider.token=shot", f"--ServerApp.root_dir={tmp}"],
            stdout=open(Path(tmp) / "lab.log", "w"), stderr=subprocess.STDOUT, cwd=REPO)
        try:
            time.sleep(8)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
                page = browser.new_page(viewport={"width": 1400, "height": 760})
                page.goto(f"http://localhost:{args.port}/lab/tree/draw.ipynb?token=shot")
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
                time.sleep(3)
                no_news = page.query_selector(".jp-toast-button:has-text('No')")
                if no_news:
                    no_news.click()
                page.click(".jp-Cell .cm-content")
                page.keyboard.press("Shift+Enter")
                box = page.wait_for_selector(".jp-OutputArea canvas", timeout=120_000).bounding_box()
                time.sleep(2)
                for stroke in canvas_strokes(ink, box["width"], box["height"]):
                    page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
                    page.mouse.down()
                    for x, y in stroke[1:]:
                        page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
                    page.mouse.up()
                page.click("button:has-text('Recognise')")
                page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea input')]"
                                       ".some(i => i.value)", timeout=180_000)
                time.sleep(4)  # MathJax typesets the prediction
                read = page.eval_on_selector(".jp-OutputArea input", "i => i.value")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    print(f"written {ink.latex.strip('$')!r}, recognised {read!r}: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
