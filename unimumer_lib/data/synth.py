"""Synthetic handwritten expressions: a CROHME-like caption sampler and a caption -> pen strokes -> InkML synthesiser.

Captions are laid out by matplotlib's mathtext (glyph positions, sizes, fraction and radical rules); each laid-out
glyph is replaced by a single-stroke Hershey glyph (``hershey-fonts``) scaled into its ink box, and the strokes are
then distorted per writer (slant, scale, rotation, baseline drift, smooth wobble) and per symbol (jitter).
Every sample ``i`` of a seed is drawn from its own generator ``default_rng([seed, i])``, so a dataset is the same
whatever the number of workers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..core.tally import Tally
from .captions import sample_caption, sample_captions, sampler_vocabulary
from .handwriting import PEN_WIDTH, handwrite, layout



SYNTH_SPLIT = "synthetic"
CAPTIONS_TSV = "captions.tsv"
MAX_TRIES = 20  # a sampled caption mathtext cannot lay out is replaced by the next draw of the same generator


def synth_id(seed: int, index: int) -> str:
    return f"synth_s{seed}_{index:06d}"


def synthesize(index: int, seed: int = 0, bank=None):
    """Sample ``index`` of a seed: an ``Ink`` whose truth is a sampled caption (same output for same arguments);
    ``bank``: written with its real glyphs (``handwrite``). The caption does not depend on ``bank``."""
    rng = np.random.default_rng([seed, index])
    for _ in range(MAX_TRIES):
        caption = sample_caption(rng)
        try:
            return handwrite(caption, rng, id=synth_id(seed, index), bank=bank)
        except ValueError:
            continue
    raise ValueError(f"sample {index} of seed {seed}: no caption could be laid out in {MAX_TRIES} tries")


def glyph_vocabulary() -> list[str]:
    """The sampler's tokens that are a symbol on their own (not ``{``, ``^``, ``\\frac``, ``\\limits``...)."""
    out = []
    for token in sorted(sampler_vocabulary() - {"{", "}", "\\limits"}):
        try:
            layout(token)
        except ValueError:
            continue
        out.append(token)
    return out


def glyph_images(folder, symbols: list[str], n: int, seed: int, height: int) -> list:
    """``n`` one-symbol images (PNG in ``folder``), each by its own writer of ``seed``: records for reading checks."""
    from ..formats.records import Record
    from .render import render_ink

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        symbol = symbols[rng.integers(len(symbols))]
        path = folder / f"g{seed}_{i}.png"
        render_ink(handwrite(symbol, rng), height=height).save(path)
        records.append(Record(id=path.stem, caption=symbol, image_path=str(path)))
    return records


def _write_one(job: tuple) -> tuple[str, str, str | None]:
    """(index, seed, folder, glyph bank, writer group) -> (id, caption, None) or (id, "", reason)."""
    from .glyphs import bank_for
    from .inkml import write_inkml

    index, seed, folder, bank, group = job
    try:
        ink = synthesize(index, seed, bank=bank_for(bank, group))
    except ValueError as err:
        return synth_id(seed, index), "", str(err)
    write_inkml(Path(folder) / f"{ink.id}.inkml", ink)
    return ink.id, ink.latex.strip("$"), None


SYNTH_MARKER = ".unimumer-synth.json"  # the --n/--seed of the run that filled the folder


def _targets(out: Path, n: int, seed: int) -> list[Path]:
    """The files a run of ``n`` samples of ``seed`` writes into ``out`` (besides its marker)."""
    return [out / CAPTIONS_TSV, *(out / SYNTH_SPLIT / f"{synth_id(seed, i)}.inkml" for i in range(n))]


def _synth_files(out: Path) -> list[Path]:
    """What an earlier synth run wrote into ``out``, as its marker records (n, seed): the marker, captions.tsv and
    its synthetic/synth_s<seed>_<index>.inkml files; nothing without a marker."""
    try:
        held = json.loads((out / SYNTH_MARKER).read_text(encoding="utf-8"))
        made = [out / SYNTH_MARKER, *_targets(out, int(held["n"]), int(held["seed"]))]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [p for p in made if p.exists()]


def _check_out(out: Path, settings: dict, force: bool) -> None:
    """Refuse a non-empty ``out`` unless it holds a run of the same settings (a rerun resumes) or ``force``."""
    from ..core.outdir import is_empty_dir

    from ..core.provenance import not_ours, other_settings

    if is_empty_dir(out):
        return
    try:
        held = json.loads((out / SYNTH_MARKER).read_text(encoding="utf-8"))
        held = {k: v for k, v in held.items() if k != "made_by"}  # (the stamp of an older version has none)
    except (OSError, ValueError, AttributeError):
        held = None
    if held == settings:
        return
    if not force:
        remedy = "choose an empty --out, or --force to clear what synth made there (other files are kept)"
        if isinstance(held, dict):
            raise other_settings(out, "a synth run", held, settings, remedy)
        raise not_ours(out, "unimumer synth", SYNTH_MARKER, remedy)
    ours = set(_synth_files(out))
    clash = [p for p in _targets(out, settings["n"], settings["seed"]) if p.exists() and p not in ours]
    if clash:
        raise FileExistsError(f"{clash[0]}: a file synth did not write (its record {SYNTH_MARKER} does not name it)"
                              f"{f' and {len(clash) - 1} more' if len(clash) > 1 else ''}; --force replaces only "
                              f"synth's own files: move it away, or choose another --out")
    for path in ours:
        path.unlink()


def synthesize_dataset(n: int, seed: int = 0, out=".", workers: int | None = None, force: bool = False,
                       glyphs: str | None = None, writers: str | None = None) -> dict:
    """Write ``out/synthetic/<id>.inkml`` and ``out/captions.tsv`` for ``n`` samples of ``seed``; ``glyphs``: in
    real glyphs of that bank (``glyphs.bank_for``: ``"shipped"`` or a path), only its ``writers`` group if given.

    Returns ``{"read": n, "written": k, "rejected": n - k, "rejects": [(id, reason)], "folder": ...}``
    (``read`` counts requested samples). Same files for a seed whatever ``workers`` is. A non-empty ``out`` is
    refused unless it holds an earlier run with the same ``n`` and ``seed`` (which this run then completes) or
    ``force`` is given, which first deletes what synth made there (and nothing else).
    """
    from contextlib import closing

    from tqdm.auto import tqdm

    from ..core.files import atomic_write_text, remove_temp_files
    from ..core.outdir import OutputLock
    from .render import default_workers
    from ..core.workers import imap_ordered

    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out is a file, not a folder")
    folder = out / SYNTH_SPLIT
    settings = {"n": n, "seed": seed}
    if glyphs:
        from .glyphs import SHIPPED_NAME

        settings.update(glyphs=glyphs if glyphs == SHIPPED_NAME else str(Path(glyphs).resolve()), writers=writers)
    elif writers:
        raise ValueError("--writers picks writers of a glyph bank: give --glyphs too")
    with OutputLock(out, "unimumer synth"):
        _check_out(out, settings, force)
        remove_temp_files(out, folder)
        atomic_write_text(out / SYNTH_MARKER, json.dumps({"made_by": "unimumer synth", **settings}) + "\n")
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(i, seed, str(folder), settings.get("glyphs"), writers) for i in range(n)]
        workers = default_workers() if workers is None else workers
        try:
            with closing(imap_ordered(_write_one, jobs, workers, chunksize=16)) as results:
                results = list(tqdm(results, total=n, desc="synth", unit="ink", mininterval=1.0))
        except BaseException:
            remove_temp_files(out, folder)
            raise
        written = [(key, caption) for key, caption, reason in results if reason is None]
        rejects = [(key, reason) for key, _, reason in results if reason is not None]
        atomic_write_text(out / CAPTIONS_TSV, "".join(f"{key}\t{caption}\n" for key, caption in written))
    return {**Tally(n, len(written), len(rejects)).as_dict(), "rejects": rejects, "folder": str(folder)}


def token_coverage(captions, n: int = 20000, seed: int = 0) -> dict:
    """How many of the distinct tokens of ``captions`` (e.g. CROHME's) ``n`` sampled captions contain.

    Returns ``{"coverage": share, "covered": k, "distinct": m, "missing": [tokens by frequency], "extra": [...]}``,
    ``extra`` being sampled tokens absent from ``captions``.
    """
    target = Counter(t for c in captions for t in c.split())
    emitted = {t for c in sample_captions(n, seed) for t in c.split()}
    missing = [t for t, _ in target.most_common() if t not in emitted]
    return {"coverage": 1 - len(missing) / max(1, len(target)), "covered": len(target) - len(missing),
            "distinct": len(target), "missing": missing, "extra": sorted(emitted - set(target))}


def plot_synthetic_vs_crohme(path=None, crohme=None, n: int = 5, seed: int = 0, height: int = 96):
    """Figure: ``n`` synthetic inks (left) beside ``n`` real CROHME inks (right, when a CROHME split folder is given,
    e.g. ``paths.crohme_root() / "test2014"``), each rendered by ``render.render_traces`` and titled with its caption.
    Saved (and closed) when ``path`` is given; returns the figure."""
    import matplotlib.pyplot as plt

    from .inkml import caption_of, find_inkml, read_inkml
    from .render import render_traces

    columns = [("synthetic", [synthesize(i, seed) for i in range(n)])]
    if crohme is not None:
        files = find_inkml(crohme)
        picks = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
        columns.append((f"CROHME {Path(crohme).name}", [read_inkml(files[i]) for i in sorted(picks)]))
    fig, axes = plt.subplots(n, len(columns), figsize=(6 * len(columns), 1.5 * n), squeeze=False)
    for col, (title, inks) in enumerate(columns):
        for row, ax in enumerate(axes[:, col]):
            ax.axis("off")
            if row >= len(inks):
                continue
            ink = inks[row]
            width = float(ink.annotations.get(PEN_WIDTH, height / 50)) * height / 128
            ax.imshow(render_traces(ink.traces, height=height, line_width=width), cmap="gray", vmin=0, vmax=255)
            caption = caption_of(ink)
            caption = caption if len(caption) < 70 else caption[:67] + "..."
            ax.set_title(f"{title}\n{caption}" if row == 0 else caption, fontsize=7)
    fig.tight_layout()
    if path is not None:
        from ..core.files import save_figure
        save_figure(fig, path)  # shown inline in a notebook, then closed
    return fig
