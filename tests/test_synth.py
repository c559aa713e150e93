"""Synthetic handwriting: sampler determinism and CROHME coverage, layout labels, InkML read-back, CLI into prepare."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from unimumer_lib.pipeline import cli
from unimumer_lib.latex import tokens as latex
from unimumer_lib.data import captions as sampler, handwriting, synth
from unimumer_lib.data.inkml import caption_of, read_inkml, read_inkml_folder, write_inkml
from unimumer_lib.formats.records import CAPTION_FILE, IMAGE_SUFFIX, IMAGES_DIR, read_captions

os.environ.setdefault("MPLBACKEND", "Agg")


def test_sampler_is_deterministic_per_seed():
    assert sampler.sample_captions(50, seed=3) == sampler.sample_captions(50, seed=3)
    assert sampler.sample_captions(50, seed=3) != sampler.sample_captions(50, seed=4)


def test_captions_are_already_canonical():
    captions = sampler.sample_captions(500, seed=1)
    assert [latex.normalize(f"${c}$") for c in captions] == captions


def test_sampled_tokens_are_in_the_declared_vocabulary():
    tokens = {t for c in sampler.sample_captions(2000, seed=2) for t in c.split()}
    assert tokens <= sampler.sampler_vocabulary()


def test_layout_labels_symbols_and_rules():
    glyphs, rules = handwriting.layout(r"\frac { 1 } { 2 } + \sqrt [ 3 ] { x } - \sin \alpha")
    assert sorted(g.label for g in glyphs) == sorted(
        ["1", "2", "+", "3", "\\sqrt", "x", "-", "\\sin", "\\sin", "\\sin", "\\alpha"])
    owners = [owner for owner, _ in rules]
    assert owners.count(None) == 1  # the fraction bar
    radical = [o for o in owners if o is not None]
    assert len(radical) == 1 and glyphs[radical[0]].label == "\\sqrt"
    # the fraction bar lies between numerator and denominator
    bar = next(box for owner, box in rules if owner is None)
    one, two = (next(g for g in glyphs if g.label == d) for d in ("1", "2"))
    assert two.box[3] < bar[1] < bar[3] < one.box[1]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="caption"):
        handwriting.layout(r"\frac { 1 }")
    with pytest.raises(ValueError, match="U\\+20AC"):
        handwriting.glyph_strokes("\u20ac")


def test_inks_read_back_with_their_caption(tmp_path):
    for i in range(300):
        ink = synth.synthesize(i, seed=11)
        caption = ink.latex.strip("$")
        back = read_inkml(write_inkml(tmp_path / f"{ink.id}.inkml", ink))
        assert caption_of(back) == caption, ink.id
        tokens = set(caption.split()) | {"-"}  # "-" also labels fraction bars
        assert {g.label for g in back.groups} <= tokens
        assert sorted(t for g in back.groups for t in g.trace_ids) == sorted(back.traces)
        points = np.concatenate(list(back.traces.values()))
        assert points.min() >= 0 and np.ptp(points, axis=0).max() > 10


def test_dataset_is_the_same_for_any_worker_count(tmp_path):
    one = synth.synthesize_dataset(12, seed=7, out=tmp_path / "a", workers=1)
    two = synth.synthesize_dataset(12, seed=7, out=tmp_path / "b", workers=2)
    assert one["written"] == two["written"] == 12 and one["rejected"] == 0
    files = sorted(p.name for p in (tmp_path / "a" / synth.SYNTH_SPLIT).iterdir())
    assert len(files) == 12
    for name in files:
        assert (tmp_path / "a" / synth.SYNTH_SPLIT / name).read_bytes() == \
            (tmp_path / "b" / synth.SYNTH_SPLIT / name).read_bytes()
    assert (tmp_path / "a" / synth.CAPTIONS_TSV).read_text() == (tmp_path / "b" / synth.CAPTIONS_TSV).read_text()


def test_cli_synth_then_prepare(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    assert cli.main(["synth", "--n", "20", "--seed", "0", "--out", str(src), "--workers", "1"]) == 0
    written = dict(line.split("\t") for line in (src / synth.CAPTIONS_TSV).read_text().splitlines())
    assert len(written) == 20
    assert cli.main(["prepare", "crohme", "--src", str(src), "--out", str(out), "--workers", "1"]) == 0
    split = out / synth.SYNTH_SPLIT
    assert read_captions(split / CAPTION_FILE) == written
    assert sorted(p.stem for p in (split / IMAGES_DIR).glob(f"*{IMAGE_SUFFIX}")) == sorted(written)


def test_sampler_covers_crohme_tokens(crohme_root, reference_predictions):
    captions = [r["gt"] for r in json.loads(reference_predictions.read_text(encoding="utf-8"))]
    inks, _ = read_inkml_folder(crohme_root / "train")
    captions += [caption_of(ink) for ink in inks]
    result = synth.token_coverage(captions, n=20000, seed=0)
    assert result["distinct"] > 100
    assert result["coverage"] >= 0.95, result["missing"]


def test_length_distribution_is_like_crohme(reference_predictions):
    real = [len(r["gt"].split()) for r in json.loads(reference_predictions.read_text(encoding="utf-8"))]
    fake = [len(c.split()) for c in sampler.sample_captions(3000, seed=0)]
    assert abs(np.median(fake) - np.median(real)) <= 3
    assert abs(np.percentile(fake, 95) - np.percentile(real, 95)) <= 0.25 * np.percentile(real, 95)
    assert abs(np.mean(fake) - np.mean(real)) <= 0.2 * np.mean(real)


def test_figure_is_written(tmp_path, crohme_root):
    path = tmp_path / "fig.png"
    synth.plot_synthetic_vs_crohme(path, crohme_root / "test2014", n=2)
    assert path.stat().st_size > 10_000


def _cached_fonts(_):
    return handwriting._font.cache_info().currsize


def test_forked_workers_open_their_own_fonts():
    # Inherited font files share one file offset between workers: concurrent glyph reads then fail.
    import multiprocessing

    handwriting.layout("x ^ { 2 } + \\alpha")
    assert handwriting._font.cache_info().currsize > 0
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_cached_fonts, [0]) == [0]


def test_glyph_vocabulary_is_the_drawable_single_symbols(tmp_path):
    glyphs = synth.glyph_vocabulary()
    assert {"x", "2", "\\alpha", "+", "\\infty", "("} <= set(glyphs)
    assert not {"{", "}", "^", "_", "\\frac", "\\sqrt", "\\limits"} & set(glyphs)
    assert set(glyphs) < sampler.sampler_vocabulary()
    records = synth.glyph_images(tmp_path, glyphs, 30, seed=3, height=48)
    again = synth.glyph_images(tmp_path / "again", glyphs, 30, seed=3, height=48)
    assert [r.caption for r in records] == [r.caption for r in again]  # one writer per index, reproducible
    assert len({r.caption for r in records}) > 10
    assert all(open(r.image_path, "rb").read() == open(a.image_path, "rb").read() for r, a in zip(records, again))
