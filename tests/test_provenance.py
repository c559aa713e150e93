"""One provenance protocol: every command that writes refuses output it did not write, and output it wrote with
other settings, with one error type (``ProvenanceMismatch``) and one message shape per case, naming the place and
each difference."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from unimumer_lib.core.provenance import ProvenanceMismatch
from unimumer_lib.data.prepare import prepare_split
from unimumer_lib.data.synth import synthesize_dataset
from unimumer_lib.inference import resume
from unimumer_lib.pipeline import reproduce
from unimumer_lib.training import pretrain, runfolder

OTHER = re.compile(r"(?P<where>\S+): holds .+ made with other settings \(differs in (?P<key>[\w.]+): there (?P<there>"
                   r".+?), now (?P<now>.+?)(; .+)?\); \S.+", re.S)
NOT_OURS = re.compile(r"(?P<where>\S+): not made by unimumer (?P<tool>\w+) \(no .+ of it(; found .+)?\); it is never "
                      r"replaced: \S.+", re.S)


def refused(call, shape):
    with pytest.raises(ProvenanceMismatch) as err:
        call()
    match = shape.fullmatch(str(err.value))
    assert match, str(err.value)
    return match


def test_every_command_refuses_other_settings_in_one_shape(tmp_path):
    synthesize_dataset(n=2, seed=0, out=tmp_path / "synth", workers=1)
    m = refused(lambda: synthesize_dataset(n=3, seed=0, out=tmp_path / "synth", workers=1), OTHER)
    assert (m["where"], m["key"], m["there"], m["now"]) == (str(tmp_path / "synth"), "n", "2", "3")

    out = tmp_path / "pred.json"
    out.write_text("[]")
    wanted = {"made_by": resume.MADE_BY, "task": "vanilla", "data": {"records": 1}}
    resume.side_file(out, ".run.json").write_text(json.dumps(wanted))
    m = refused(lambda: resume.claim_output(out, {**wanted, "task": "tree"}, force=False), OTHER)
    assert (m["where"], m["key"], m["there"], m["now"]) == (str(out), "task", "'vanilla'", "'tree'")

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / runfolder.RUN_CONFIG_FILE).write_text(json.dumps({"made_by": runfolder.MADE_BY,
                                                                "fingerprint": {"seed": 0, "steps": 5}}))
    m = refused(lambda: runfolder.claim(folder, {"seed": 1, "steps": 5}, resume=True, force=False), OTHER)
    assert (m["key"], m["there"], m["now"]) == ("seed", "0", "1")

    work = tmp_path / "work"
    work.mkdir()
    recipe = replace(pretrain.RECIPE, steps=10)
    (work / pretrain.RUN_START).write_text(json.dumps({"made_by": "unimumer pretrain", "recipe": {
        k: v for k, v in pretrain.asdict(recipe).items()}}))
    m = refused(lambda: pretrain.check_work(work, replace(recipe, steps=20), resume=False), OTHER)
    assert (m["key"], m["there"], m["now"]) == ("steps", "10", "20")

    record = reproduce.run_record("ci", "synthetic")
    reproduce.open_run(tmp_path / "rep", record)
    m = refused(lambda: reproduce.open_run(tmp_path / "rep", reproduce.run_record("ci", "/data/crohme")), OTHER)
    assert (m["key"], m["there"], m["now"]) == ("data", "'synthetic'", "'/data/crohme'")


def test_every_command_refuses_what_it_did_not_write_in_one_shape(tmp_path, crohme_root):
    def foreign(name):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "mine.txt").write_text("the user's")
        return folder

    split = tmp_path / "split"
    split.mkdir()
    for path in sorted((crohme_root / "test2014").glob("*.inkml"))[:2]:
        (split / path.name).symlink_to(path)
    tools = {
        "prepare": lambda: prepare_split(split, foreign("prepared"), images=False, workers=1),
        "synth": lambda: synthesize_dataset(n=2, seed=0, out=foreign("synth"), workers=1),
        "train": lambda: runfolder.claim(foreign("run"), {"seed": 0}, resume=False, force=False),
        "reproduce": lambda: reproduce.open_run(foreign("rep"), reproduce.run_record("ci", "synthetic")),
    }
    for tool, call in tools.items():
        assert refused(call, NOT_OURS)["tool"] == tool
    out = tmp_path / "pred.json"
    out.write_text("the user's")
    assert refused(lambda: resume.claim_output(out, {"task": "vanilla"}, force=False), NOT_OURS)["tool"] == "infer"
    assert out.read_text() == "the user's" and (tmp_path / "prepared" / "mine.txt").read_text() == "the user's"
