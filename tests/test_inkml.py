"""InkML reading/writing on hand-made strings and on the real CROHME package."""

from __future__ import annotations

import numpy as np
import pytest

from unimumer_lib.data import inkml
from unimumer_lib.latex import tokens as latex
from unimumer_lib.data.inkml import (LATIN1_NOTE, Ink, InkmlError, SymbolGroup, ink_from_xml, ink_to_xml, read_inkml,
                                read_inkml_folder, write_inkml)

MATH = ('<math xmlns="http://www.w3.org/1998/Math/MathML"><mrow><msup><mi xml:id="x_1">x</mi>'
        '<mn xml:id="2_1">2</mn></msup></mrow></math>')


def make_inkml(channels="X Y", traces=("10 20, 11 21, 12 22", "30 5"), latex_truth="$x^2$", math=MATH,
               extra="", declaration='<?xml version="1.0" encoding="UTF-8"?>\n') -> str:
    fmt = ""
    if channels is not None:
        fmt = "<traceFormat>" + "".join(f'<channel name="{c}" type="decimal"/>' for c in channels.split()) + \
              "</traceFormat>\n"
    body = "".join(f'<trace id="{i}">\n{t}\n</trace>\n' for i, t in enumerate(traces))
    truth = f'<annotation type="truth">{latex_truth}</annotation>\n' if latex_truth is not None else ""
    mathxml = f'<annotationXML type="truth" encoding="Content-MathML">{math}</annotationXML>\n' if math else ""
    groups = ('<traceGroup xml:id="9"><annotation type="truth">Segmentation</annotation>'
              '<traceGroup xml:id="10"><annotation type="truth">x</annotation><traceView traceDataRef="0"/>'
              '<annotationXML href="x_1"/></traceGroup>'
              '<traceGroup xml:id="11"><annotation type="truth">2</annotation><traceView traceDataRef="1"/>'
              '<annotationXML href="2_1"/></traceGroup></traceGroup>\n')
    return (f'{declaration}<ink xmlns="http://www.w3.org/2003/InkML">\n{fmt}{truth}'
            f'<annotation type="writer">w7</annotation>\n<annotation type="UI">2014_E1</annotation>\n'
            f'{mathxml}{extra}{body}{groups}</ink>\n')


def test_reads_traces_groups_and_annotations():
    ink = ink_from_xml(make_inkml(), path="a/b/expr_1.inkml")
    assert ink.id == "expr_1"
    assert list(ink.traces) == ["0", "1"]
    np.testing.assert_array_equal(ink.traces["0"], [[10, 20], [11, 21], [12, 22]])
    assert ink.traces["0"].dtype == np.float32 and ink.traces["1"].shape == (1, 2)
    assert ink.groups == [SymbolGroup("x", ["0"], "x_1"), SymbolGroup("2", ["1"], "2_1")]
    assert ink.latex == "$x^2$"
    assert ink.annotations == {"writer": "w7", "UI": "2014_E1"}
    assert ink.mathml.startswith("<math") and 'xml:id="x_1"' in ink.mathml and "<mn" in ink.mathml


@pytest.mark.parametrize("channels, traces", [
    ("X Y T", ("10 20 0, 11 21 5, 12 22 9", "30 5 12")),
    ("X Y F", ("10 20 0.5, 11 21 0.6, 12 22 0.7", "30 5 1")),
    ("T X Y", ("0 10 20, 5 11 21, 9 12 22", "12 30 5")),
    (None, ("10 20, 11 21, 12 22", "30 5")),
    (None, ("10 20 0, 11 21 5, 12 22 9", "30 5 12")),
])
def test_channel_layouts_yield_x_y(channels, traces):
    ink = ink_from_xml(make_inkml(channels=channels, traces=traces))
    np.testing.assert_array_equal(ink.traces["0"], [[10, 20], [11, 21], [12, 22]])
    np.testing.assert_array_equal(ink.traces["1"], [[30, 5]])


def test_crlf_line_endings():
    lf = ink_from_xml(make_inkml())
    crlf = ink_from_xml(make_inkml().replace("\n", "\r\n").encode("utf-8"))
    assert crlf == lf


def test_latin1_without_declaration_is_recovered():
    data = make_inkml(latex_truth="$a \u00b7 b$", declaration="").encode("latin-1")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    ink = ink_from_xml(data, path="x.inkml")
    assert ink.latex == "$a \u00b7 b$"
    assert ink.notes == [LATIN1_NOTE]


def test_latin1_bytes_under_utf8_declaration_are_rejected():
    data = make_inkml(latex_truth="$a \u00b7 b$").encode("latin-1")
    with pytest.raises(InkmlError, match="malformed"):
        ink_from_xml(data, path="x.inkml")


@pytest.mark.parametrize("text, reason", [
    ("", "empty file"),
    ("  \n\r\n", "empty file"),
    (make_inkml()[: len(make_inkml()) // 2], "truncated"),
    ('<?xml version="1.0"?><svg/>', "not <ink>"),
    (make_inkml(traces=()), "no <trace>"),
    (make_inkml(traces=("1 2, 3",)), "trace 0: trace points have unequal"),
    (make_inkml(traces=("1 2, 3 x",)), "trace 0"),
])
def test_bad_files_raise_with_file_and_reason(tmp_path, text, reason):
    path = tmp_path / "bad.inkml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InkmlError, match=reason) as err:
        read_inkml(path)
    assert str(path) in str(err.value) and err.value.path == str(path)
    assert isinstance(err.value, ValueError)


def test_folder_reader_keeps_going(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.inkml").write_text(make_inkml(), encoding="utf-8")
    (tmp_path / "sub" / "b.inkml").write_text(make_inkml().replace("\n", "\r\n"), encoding="utf-8")
    (tmp_path / "empty.inkml").write_bytes(b"")
    (tmp_path / "cut.inkml").write_text(make_inkml()[:200], encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not inkml")
    inks, rejects = read_inkml_folder(tmp_path)
    assert sorted(i.id for i in inks) == ["a", "b"]
    assert {r.source.rsplit("/", 1)[-1]: r.reason.split(":")[0] for r in rejects} == {
        "cut.inkml": "malformed or truncated XML", "empty.inkml": "empty file"}


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ink = Ink(id="synthetic_0", traces={"0": rng.normal(size=(7, 2)).astype(np.float32) * 100,
                                        "1": np.array([[3, 4]], np.float32), "s2": np.array([[0.1, 1e-3], [2.5, 7]],
                                                                                            np.float32)},
              groups=[SymbolGroup("\\frac", ["0"], "frac_1"), SymbolGroup("x", ["1", "s2"], None)],
              latex="$\\frac{x}{2} < 3 & 4$", mathml=MATH, annotations={"writer": "synth", "UI": "u<&>"})
    path = write_inkml(tmp_path / "out" / "synthetic_0.inkml", ink)
    back = read_inkml(path)
    assert back == ink
    for key, arr in ink.traces.items():
        assert back.traces[key].dtype == np.float32
        np.testing.assert_array_equal(back.traces[key], arr)
    assert ink_to_xml(back) == ink_to_xml(ink)
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_round_trip_of_real_files(crohme_root):
    paths = sorted((crohme_root / "test2014").glob("*.inkml"))[:40] + [crohme_root / "train/MfrDB/MfrDB0104.inkml"]
    for path in paths:
        ink = read_inkml(path)
        assert ink_from_xml(ink_to_xml(ink), id=ink.id) == ink, path


def test_caption_of_passes_mathml_and_latex(monkeypatch):
    seen = []
    monkeypatch.setattr(latex, "canonical_caption", lambda m, r: seen.append((m, r)) or "x ^ { 2 }")
    ink = ink_from_xml(make_inkml())
    assert inkml.caption_of(ink) == "x ^ { 2 }"
    assert seen == [(ink.mathml, "$x^2$")]


# ---- the real CROHME package -------------------------------------------------------------------

def test_crohme_train_counts(crohme_root):
    inks, rejects = read_inkml_folder(crohme_root / "train")
    assert len(inks) == 8835
    assert [(r.source.rsplit("/", 1)[-1], r.reason) for r in rejects] == [("MfrDB3088.inkml", "empty file")]
    assert len(inks) + len(rejects) == len(inkml.find_inkml(crohme_root / "train")) == 8836
    by_id = {i.id: i for i in inks}
    latin1 = by_id["MfrDB0104"]
    assert latin1.notes == [LATIN1_NOTE]
    assert "\u00b7" in latin1.mathml and "\\sqrt[3]{2}" in latin1.latex
    assert sum(bool(i.notes) for i in inks) == 1
    assert all(i.latex for i in inks)
    assert all(t.ndim == 2 and t.shape[1] == 2 and np.isfinite(t).all() for i in inks for t in i.traces.values())
    # every symbol group points at traces that exist
    assert all(tid in i.traces for i in inks for g in i.groups for tid in g.trace_ids)


@pytest.mark.parametrize("split, n", [("test2014", 986), ("test2016", 1147)])
def test_crohme_test_counts(crohme_root, split, n):
    inks, rejects = read_inkml_folder(crohme_root / split)
    assert (len(inks), rejects) == (n, [])
    assert all(i.groups and i.latex for i in inks)
    # one test2014 file has no MathML annotation (its caption falls back to the raw LaTeX)
    assert [i.id for i in inks if not i.mathml] == (["34_em_225"] if split == "test2014" else [])


def test_crohme_crlf_and_timed_channels(crohme_root):
    paths = inkml.find_inkml(crohme_root / "train")
    crlf = next(p for p in paths if b"\r\n" in p.read_bytes()[:400])
    timed = next(p for p in paths if b'name="T"' in p.read_bytes()[:600])
    for path in (crlf, timed):
        ink = read_inkml(path)
        assert ink.traces and all(t.shape[1] == 2 for t in ink.traces.values())
        assert all("\r" not in g.label for g in ink.groups)
