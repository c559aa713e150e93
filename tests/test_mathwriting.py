"""MathWriting InkML (label / normalizedLabel / metadata annotations, "x y t" traces) and `unimumer prepare
mathwriting`, on files written by hand in that format."""

from __future__ import annotations

import random

import numpy as np
import pytest

from unimumer_lib.pipeline import cli
from unimumer_lib.data.inkml import (Ink, caption_of, ink_from_xml, ink_to_mathwriting_xml, mathwriting_caption,
                                read_inkml)
from unimumer_lib.data.prepare import load_rejects
from unimumer_lib.formats.records import CAPTION_FILE, IMAGE_SUFFIX, IMAGES_DIR, read_captions

SPLITS = ("train", "valid", "test", "synthetic", "symbols")
FILE = """<ink xmlns="http://www.w3.org/2003/InkML">
<annotation type="sampleId">{id}</annotation>
<annotation type="splitTagOriginal">{split}</annotation>
<annotation type="inkCreationMethod">human</annotation>
<annotation type="labelCreationMethod">human</annotation>
{labels}
<trace>10.5 20 0,11.25 21.5 16,13 24 33</trace>
<trace>{x} 20 50,{x} 30 66</trace>
</ink>
"""
# (label as written, normalizedLabel, caption tokens of the normalizedLabel)
LABELS = [
    (r"\frac12", r"\frac{1}{2}", r"\frac { 1 } { 2 }"),
    (r"x^2+y^2", r"x^{2}+y^{2}", r"x ^ { 2 } + y ^ { 2 }"),
    (r"\alpha\leq 10", r"\alpha\leq10", r"\alpha \leq 1 0"),
    (r"\begin{pmatrix}a\\b\end{pmatrix}", r"\begin{pmatrix}a\\b\end{pmatrix}",
     r"\begin {pmatrix} a \\ b \end {pmatrix}"),
    (r"a &lt; b", r"a&lt;b", "a < b"),
]


def labels_xml(label: str | None, normalized: str | None) -> str:
    return "\n".join(f'<annotation type="{kind}">{text}</annotation>'
                     for kind, text in (("label", label), ("normalizedLabel", normalized)) if text is not None)


def test_reads_labels_metadata_and_xyt_traces():
    ink = ink_from_xml(FILE.format(id="00ab", split="train", labels=labels_xml(r"\frac12", r"\frac{1}{2}"), x=7),
                       "train/00ab.inkml")
    assert ink.id == "00ab" and ink.latex is None and ink.mathml is None
    assert ink.annotations == {"sampleId": "00ab", "splitTagOriginal": "train", "inkCreationMethod": "human",
                               "labelCreationMethod": "human", "label": r"\frac12", "normalizedLabel": r"\frac{1}{2}"}
    assert list(ink.traces) == ["0", "1"]
    np.testing.assert_array_equal(ink.traces["0"], [[10.5, 20], [11.25, 21.5], [13, 24]])
    assert caption_of(ink) == r"\frac { 1 } { 2 }"


@pytest.mark.parametrize("label, normalized, expected", [
    (r"\frac12", None, r"\frac 1 2"),  # no normalizedLabel: the label, tokenised as written
    (r"x^2", "", r"x ^ 2"),  # an empty normalizedLabel does not count
    (None, r"x^{2}", r"x ^ { 2 }"),
])
def test_label_when_no_normalized_label(label, normalized, expected):
    ink = ink_from_xml(FILE.format(id="a", split="test", labels=labels_xml(label, normalized), x=1))
    assert caption_of(ink) == mathwriting_caption(ink) == expected


def test_no_label_is_no_caption():
    ink = ink_from_xml(FILE.format(id="a", split="test", labels="", x=1))
    with pytest.raises(ValueError, match="no truth annotation, MathML, normalizedLabel or label"):
        caption_of(ink)


def test_mathwriting_writer_round_trips(tmp_path):
    ink = Ink(id="s", traces={"0": np.array([[0.5, 1], [2, 3]], np.float32), "1": np.array([[4, 5]], np.float32)},
              annotations={"sampleId": "s", "normalizedLabel": r"a<b"})
    path = tmp_path / "s.inkml"
    path.write_text(ink_to_mathwriting_xml(ink), encoding="utf-8")
    back = read_inkml(path)
    assert back.annotations == ink.annotations and list(back.traces) == ["0", "1"]
    assert all(np.array_equal(back.traces[k], ink.traces[k]) for k in ink.traces)
    assert "0.5 1 0,2 3 10" in path.read_text()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """300 hand-made files over the five MathWriting folders, plus a truncated and an unlabelled file in train/."""
    root = tmp_path_factory.mktemp("mathwriting")
    rng = random.Random(0)
    expected = {s: {} for s in SPLITS}
    for i in range(300):
        split = SPLITS[i % len(SPLITS)]
        label, normalized, tokens = rng.choice(LABELS)
        sample_id = f"{i:016x}"
        (root / split).mkdir(exist_ok=True)
        (root / split / f"{sample_id}.inkml").write_text(
            FILE.format(id=sample_id, split=split, labels=labels_xml(label, normalized), x=20 + i % 7))
        expected[split][sample_id] = tokens
    (root / "train" / "cut.inkml").write_text(FILE.format(id="cut", split="train", labels="", x=1)[:120])
    (root / "train" / "nolabel.inkml").write_text(FILE.format(id="nolabel", split="train", labels="", x=1))
    return root, expected


def test_prepare_mathwriting(corpus, tmp_path, capsys):
    root, expected = corpus
    out = tmp_path / "out"
    assert cli.main(["prepare", "mathwriting", "--src", str(root), "--out", str(out), "--workers", "1",
                     "--height", "32"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{s}: read {62 if s == 'train' else 60} = written 60 + rejected {2 if s == 'train' else 0}"
                       for s in sorted(SPLITS)]
    for split in SPLITS:
        assert read_captions(out / split / CAPTION_FILE) == expected[split]
        assert {p.stem for p in (out / split / IMAGES_DIR).glob(f"*{IMAGE_SUFFIX}")} == set(expected[split])
    reasons = {r["file"]: r["reason"] for r in load_rejects(out / "train")}
    assert set(reasons) == {"train/cut.inkml", "train/nolabel.inkml"}
    assert reasons["train/cut.inkml"].startswith("malformed or truncated XML")
    assert reasons["train/nolabel.inkml"] == "no caption: no truth annotation, MathML, normalizedLabel or label"


def test_prepare_kind_names_the_layout_and_the_other_one_is_refused(corpus, crohme_root, tmp_path, capsys):
    """``unimumer prepare <kind>``: the kind is checked against the files (it was once read nowhere)."""
    root, _ = corpus
    assert cli.main(["prepare", "crohme", "--src", str(root), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "mathwriting InkML, but `prepare crohme` was asked for" in err and ".inkml:" in err
    assert not (tmp_path / "a").exists()
    small = tmp_path / "crohme"
    (small / "test2014").mkdir(parents=True)
    for path in sorted((crohme_root / "test2014").glob("*.inkml"))[:2]:
        (small / "test2014" / path.name).symlink_to(path)
    assert cli.main(["prepare", "mathwriting", "--src", str(small), "--out", str(tmp_path / "b")]) == 2
    assert "crohme InkML, but `prepare mathwriting` was asked for" in capsys.readouterr().err
    assert cli.main(["prepare", "crohme", "--src", str(small), "--out", str(tmp_path / "b"), "--no-images"]) == 0
