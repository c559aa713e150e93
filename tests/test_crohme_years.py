"""CROHME 2019 (test files UN19_*) and CROHME 2023 folders through the CROHME reader and `prepare crohme`: splits
and sources follow the folder names; made-up files in each package's style."""

from __future__ import annotations

from unimumer_lib.pipeline import cli
from unimumer_lib.data.prepare import find_splits, load_split, prepare_crohme

# CROHME 2019 test style: X Y channels, $-delimited raw truth, a MathML annotation, CRLF line endings.
UN19 = """<ink xmlns="http://www.w3.org/2003/InkML">\r
<traceFormat><channel name="X" type="decimal"/><channel name="Y" type="decimal"/></traceFormat>\r
<annotation type="truth">${latex}$</annotation>\r
<annotation type="UI">2019_{ui}</annotation>\r
<annotationXML type="truth" encoding="Content-MathML">\r
<math xmlns='http://www.w3.org/1998/Math/MathML'>{mathml}</math>\r
</annotationXML>\r
<trace id="0">1 2, 3 4, 5 6</trace>\r
<trace id="1">7 8, 9 10</trace>\r
</ink>\r
"""
# CROHME 2023 style: X Y T channels, raw truth without $ and no MathML.
FORM = """<?xml version="1.0" encoding="UTF-8"?>
<ink xmlns="http://www.w3.org/2003/InkML">
<traceFormat>
<channel name="X" type="decimal"/><channel name="Y" type="decimal"/><channel name="T" type="decimal"/>
</traceFormat>
<annotation type="truth">{latex}</annotation>
<trace id="0">0.5 1 0, 2 3 12, 4 4 25</trace>
</ink>
"""
SUP = "<msup><mi xml:id='x_1'>x</mi><mn xml:id='2_1'>2</mn></msup>"
FRAC = "<mfrac><mn xml:id='1_1'>1</mn><mi xml:id='n_1'>n</mi></mfrac>"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def test_crohme2019_test_folder(tmp_path, capsys):
    root = tmp_path / "crohme2019"
    write(root / "test2019" / "UN19_1041_em_597.inkml", UN19.replace("{latex}", "x^2").replace("{ui}", "597")
          .replace("{mathml}", SUP))
    write(root / "test2019" / "UN19wb_1102_em_1.inkml", UN19.replace("{latex}", r"\frac1n").replace("{ui}", "1")
          .replace("{mathml}", FRAC))
    write(root / "train" / "KAIST" / "KME1G3_0_sub_21.inkml", FORM.replace("{latex}", "$a+b$"))
    assert list(find_splits(root)) == ["test2019", "train"]
    assert cli.main(["prepare", "crohme", "--src", str(root), "--out", str(tmp_path / "out"), "--workers", "1",
                     "--no-images"]) == 0
    assert capsys.readouterr().out.splitlines() == ["test2019: read 2 = written 2 + rejected 0",
                                                    "train: read 1 = written 1 + rejected 0"]
    test = {r.id: (r.caption, r.split, r.source) for r in load_split(tmp_path / "out" / "test2019")}
    assert test == {"UN19_1041_em_597": ("x ^ { 2 }", "test2019", "test2019"),
                    "UN19wb_1102_em_1": (r"\frac { 1 } { n }", "test2019", "test2019")}
    assert [(r.id, r.source) for r in load_split(tmp_path / "out" / "train")] == [("KME1G3_0_sub_21", "KAIST")]


def test_crohme2023_folders(tmp_path):
    root = tmp_path / "INKML"
    write(root / "train" / "CROHME2019" / "UN19_1_em_1.inkml", FORM.replace("{latex}", "y"))
    write(root / "train" / "CROHME2023_train" / "form_001_E1.inkml", FORM.replace("{latex}", r"\sqrt 2"))
    write(root / "val" / "form_002_E2.inkml", FORM.replace("{latex}", r"a _ { 1 }"))
    write(root / "test" / "form_5_f_748_E3736.inkml", FORM.replace("{latex}", r"r = \sqrt 2 - 1"))
    write(root / "test" / "form_5_bad.inkml", FORM.replace("{latex}", "x")[:90])
    summary = prepare_crohme(root, tmp_path / "out", workers=1, images=False)
    assert summary == {"test": {"read": 2, "written": 1, "rejected": 1}, "train": {"read": 2, "written": 2,
                       "rejected": 0}, "val": {"read": 1, "written": 1, "rejected": 0}}
    train = {r.id: r.source for r in load_split(tmp_path / "out" / "train")}
    assert train == {"UN19_1_em_1": "CROHME2019", "form_001_E1": "CROHME2023_train"}
    assert [(r.id, r.caption) for r in load_split(tmp_path / "out" / "test")] == [
        ("form_5_f_748_E3736", r"r = \sqrt { 2 } - 1")]


def test_paper_profile_picks_up_the_2019_and_2023_test_sets(tmp_path):
    from unimumer_lib.pipeline.reproduce import check_inputs
    from unimumer_lib.pipeline.runplan import paper_steps

    root = tmp_path / "crohme"
    for split in ("train", "test2014", "test2019", "test2023"):
        write(root / split / f"{split}_a.inkml", FORM.replace("{latex}", "x"))
    tests = check_inputs(root, paper=True)
    assert tests == ["test2014", "test2019", "test2023"]
    steps = paper_steps("paper-dry", tmp_path / "run", root, tests, ["all"])
    columns = {tuple(params["datasets"]) for _, notebook, params, *_ in steps if "datasets" in params}
    assert columns == {("CROHME 2014", "CROHME 2019", "CROHME 2023")}
