"""The glyph bank: built from a train split only (test splits refused by name and by the leak guard), counts that
reconcile, the shipped bank's content and writers, and expressions composed from real glyphs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unimumer_lib.pipeline import cli
from unimumer_lib.data import glyphs, synth
from unimumer_lib.data import handwriting
from unimumer_lib.data import captions
from unimumer_lib.data.inkml import find_inkml, read_inkml
from unimumer_lib.data.render import render_ink
from unimumer_lib.data.splits import TEST_SPLIT_NAME

TRAIN_SAMPLE = ("HAMEX/formulaire001-equation000.inkml", "KAIST/KME1G3_0_sub_21.inkml", "MfrDB/MfrDB0104.inkml")


@pytest.fixture
def small_train(crohme_root, tmp_path):
    """A train split of 6 real files: 4 segmented, CROHME's empty file, and one with its traceGroups removed."""
    src = tmp_path / "crohme" / "train"
    files = find_inkml(crohme_root / "train")
    picked = [f for f in files if f.parent.name in ("HAMEX", "KAIST", "MathBrush")][:: 700][:4]
    for f in picked:
        (src / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / f.parent.name / f.name)
    (src / "MfrDB").mkdir(exist_ok=True)
    shutil.copy(crohme_root / "train" / "MfrDB" / "MfrDB3088.inkml", src / "MfrDB" / "MfrDB3088.inkml")  # empty
    text = picked[0].read_text(encoding="utf-8")
    (src / "MfrDB" / "unsegmented.inkml").write_text(re.sub(r"<traceGroup.*</traceGroup>", "", text, flags=re.S),
                                                     encoding="utf-8")
    return src, picked


def test_bank_counts_reconcile_and_name_every_reject(small_train, tmp_path):
    src, picked = small_train
    summary = glyphs.build_bank(src, tmp_path / "bank", roots=[], progress=False)
    assert (summary["read"], summary["written"], summary["rejected"]) == (6, 4, 2)
    rejects = (tmp_path / "bank" / glyphs.BANK_REJECTS_FILE).read_text().splitlines()
    assert rejects[0] == "source\titem\treason"  # (formats.rejects: one layout for every command)
    assert sorted(rejects[1:]) == ["MfrDB/MfrDB3088.inkml\t\tempty file",
                                   "MfrDB/unsegmented.inkml\t\tno symbol segmentation (no labelled traceGroup)"]
    bank = glyphs.load_bank(str(tmp_path / "bank"))
    inks = [read_inkml(f) for f in picked]
    assert len(bank) == summary["glyphs"] == sum(len(ink.groups) for ink in inks)
    labels = sorted(glyphs.LABEL_ALIASES.get(g.label, g.label) for ink in inks for g in ink.groups)
    assert sorted(bank.labels[i] for i in bank.label) == labels
    # every glyph keeps its strokes, each within the GRID box, one bank stroke per InkML trace of the group
    assert [len(bank.strokes(g)) for g in range(len(bank))] == [len(g.trace_ids) for ink in inks for g in ink.groups]
    assert all(0 <= p.min() and p.max() <= glyphs.GRID for g in range(len(bank)) for p in bank.strokes(g))


def test_bank_refuses_a_test_split_by_name(crohme_root, tmp_path):
    for name in ("test2014", "test"):
        split = tmp_path / name / "sub"
        split.mkdir(parents=True)
        shutil.copy(find_inkml(crohme_root / "test2014")[0], split)
        with pytest.raises(glyphs.TestSplitRefused, match=f"{name} is a test split"):
            glyphs.build_bank(split, tmp_path / f"bank_{name}", roots=[], progress=False)
        assert not (tmp_path / f"bank_{name}").exists()
    assert cli.main(["glyphs", "--src", str(crohme_root / "test2016"), "--out", str(tmp_path / "b")]) == 2


def test_bank_refuses_test_expressions_by_the_leak_guard(crohme_root, tmp_path):
    """A folder not named like a test split, holding a file of a CROHME test split: refused by its id."""
    leaked = find_inkml(crohme_root / "test2014")[3]
    src = tmp_path / "mine"
    src.mkdir()
    shutil.copy(leaked, src / leaked.name)
    with pytest.raises(glyphs.TestSplitRefused, match=f"{leaked.name} in test2014.*leak guard"):
        glyphs.build_bank(src, tmp_path / "bank", progress=False)  # roots default: the CROHME root


def test_shipped_bank_is_crohme_train_and_disjoint_from_test_writers(crohme_root):
    bank = glyphs.load_bank()
    assert bank.source == "train"
    assert len(bank) > 80_000 and len(bank.labels) >= 100
    counts = bank.counts()
    assert counts["-"] > counts["x"] > counts["\\sqrt"] > 1000 and counts["<"] > 0  # \lt stored as its token
    assert {"\\lt", "\\gt", ""} & set(bank.labels) == set()
    assert (glyphs.SHIPPED_BANK.parent / "LICENSE.md").read_text().count("BY-NC-SA 3.0") >= 1
    test_writers, test_ids = set(), set()
    for split in sorted(d for d in crohme_root.iterdir() if TEST_SPLIT_NAME.fullmatch(d.name)):
        for path in find_inkml(split):
            test_ids.add(path.stem)
            found = re.search(r'<annotation type="writer">([^<]*)', path.read_text(encoding="latin-1"))
            test_writers.update([found.group(1).strip()] if found else [])
    assert test_writers and not test_writers & {w.split("/", 1)[1] for w in bank.writers}
    assert not test_ids & {w.split("/", 1)[1] for w in bank.writers}  # MathBrush: writers are file ids


def test_writer_groups_are_stable_and_split_the_writers():
    bank = glyphs.load_bank()
    groups = [glyphs.writer_group(w) for w in bank.writers]
    shares = {name: groups.count(name) / len(groups) for name, _ in glyphs.WRITER_GROUPS}
    for name, share in glyphs.WRITER_GROUPS:
        assert abs(shares[name] - share) < 0.03
    assert glyphs.writer_group("HAMEX/depart001") == glyphs.writer_group("HAMEX/depart001")
    parts = [bank.subset(group=name) for name, _ in glyphs.WRITER_GROUPS]
    assert sum(len(p) for p in parts) == len(bank)
    assert not set(parts[0].writer_ids) & set(parts[2].writer_ids)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 300), st.floats(-50, 300)), min_size=1, max_size=40),
       st.floats(0.5, 10))
def test_simplify_keeps_the_ends_and_stays_within_tolerance(points, tolerance):
    stroke = np.array(points, dtype=float)
    kept = glyphs.simplify(stroke, tolerance)
    assert np.array_equal(kept[0], stroke[0]) and np.array_equal(kept[-1], stroke[-1])
    assert len(kept) <= len(stroke)
    # every dropped point lies within tolerance of the kept polyline
    for p in stroke:
        d = min(_segment_distance(p, a, b) for a, b in zip(kept[:-1], kept[1:])) if len(kept) > 1 else \
            float(np.hypot(*(p - kept[0])))
        assert d <= tolerance + 1e-6


def _segment_distance(p, a, b) -> float:
    ab = b - a
    t = 0.0 if not ab.any() else float(np.clip(np.dot(p - a, ab) / np.dot(ab, ab), 0, 1))
    return float(np.hypot(*(p - (a + t * ab))))


def test_real_glyph_composition_keeps_the_caption_and_one_writer():
    bank = glyphs.load_bank().subset(group="test")
    for i in range(20):
        rng = np.random.default_rng([5, i])
        caption = captions.sample_caption(rng)
        try:
            ink = handwriting.handwrite(caption, rng, bank=bank)
        except ValueError:
            continue
        assert ink.latex == f"${caption}$"
        assert {g.label for g in ink.groups} <= set(caption.split()) | {"-"}
    # the same index draws the same expression, in real glyphs or not
    a, b = synth.synthesize(3, seed=9, bank=bank), synth.synthesize(3, seed=9, bank=bank)
    assert a == b and a.latex == synth.synthesize(3, seed=9).latex


def test_one_writer_draws_every_glyph_they_wrote():
    bank = glyphs.load_bank()
    writer = max(bank.by_writer, key=lambda w: len(bank.by_writer[w]))
    own = bank.by_writer[writer]
    token = next(iter(own))
    rng = np.random.default_rng(0)
    picked = bank.pick(token, writer, rng)
    assert any(all(np.array_equal(a, b) for a, b in zip(picked, bank.strokes(int(g)))) for g in own[token])
    assert bank.pick("\\Pi", writer, rng) is None  # a token the bank lacks: synth falls back to Hershey


def test_compositions_look_like_crohme_in_width(crohme_root):
    """Laid out as hands write: the median width/height of compositions is near CROHME train's (both 64 px)."""
    bank = glyphs.load_bank()
    files = find_inkml(crohme_root / "train")[::150][:50]
    real = np.median([(im := render_ink(read_inkml(f), height=64)).width / im.height for f in files
                      if f.stat().st_size])
    made = np.median([(im := render_ink(synth.synthesize(i, seed=4, bank=bank), height=64)).width / im.height
                      for i in range(50)])
    hershey = np.median([(im := render_ink(synth.synthesize(i, seed=4), height=64)).width / im.height
                         for i in range(50)])
    assert abs(made / real - 1) < abs(hershey / real - 1) and 0.75 < made / real < 1.25


def test_glyphs_cli_builds_a_bank(small_train, tmp_path, capsys):
    src, _ = small_train
    assert cli.main(["glyphs", "--src", str(src), "--out", str(tmp_path / "bank")]) == 0
    out = capsys.readouterr().out
    assert "read 6 = used 4 + rejected 2" in out and (tmp_path / "bank" / glyphs.BANK_FILE).exists()
    assert Path(tmp_path / "bank" / glyphs.BANK_REJECTS_FILE).exists()
