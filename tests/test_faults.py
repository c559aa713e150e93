"""Faults and bad input: bad coordinates, stale or foreign outputs, locks, Ctrl-C, kill -9, odd encodings, CLI
errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unimumer_lib.pipeline import cli
from unimumer_lib.core.files import TEMP_PREFIX
from unimumer_lib.formats.rejects import REJECTS_HEADER
from unimumer_lib.data.inkml import MAX_COORD, MAX_SPREAD, Ink, InkmlError, read_inkml, write_inkml
from unimumer_lib.core.outdir import LOCK_FILE, OutputLock
from unimumer_lib.formats.predictions import PRED_SUFFIX, read_predictions
from unimumer_lib.data.prepare import JOURNAL_FILE, load_rejects, load_split, prepare_crohme
from unimumer_lib.formats.records import CAPTION_FILE, IMAGE_SUFFIX, IMAGES_DIR, MANIFEST_FILE, read_captions
from unimumer_lib.data.render import MAX_HEIGHT
from unimumer_lib.data.synth import CAPTIONS_TSV, SYNTH_SPLIT

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ink(id: str, latex: str, shift: float = 0) -> Ink:
    t = np.array([[0, 0], [10, 5], [20, 0], [30, 8]], np.float32) + shift
    return Ink(id=id, traces={"0": t, "1": t + [0, 10]}, latex=latex)


def inkml_text(points: str) -> str:
    return ('<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">$x$</annotation>'
            f'<trace id="0">0 0, 10 5, 20 0, 30 8</trace><trace id="1">{points}</trace></ink>')


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unimumer_lib.pipeline.cli", *map(str, args)], env=ENV,
                          capture_output=True,
                          text=True, **kw)


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    for i in range(4):
        write_inkml(root / f"train/s{i}.inkml", ink(f"s{i}", f"$x+{i}$", shift=i))
    return root


# ---- coordinates ------------------------------------------------------------------------------------------------

WRITING = ", ".join(f"{x} {x % 7}" for x in range(20))  # 20 ordinary points


@pytest.mark.parametrize("points, reason", [
    ("0 0, nan 5, 20 0", "not finite"), ("0 0, -inf 5", "not finite"), ("0 0, 1e300 5", f"beyond +-{MAX_COORD:g}"),
    ("0 0, 1e30 5", f"beyond +-{MAX_COORD:g}"), (WRITING + ", 5e5 5", "absurd extent")])
def test_bad_coordinates_reject_the_file_and_the_run_goes_on(src, tmp_path, points, reason):
    (src / "train/bad.inkml").write_text(inkml_text(points))
    summary = prepare_crohme(src, tmp_path / "out", workers=1, height=32)
    assert summary == {"train": {"read": 5, "written": 4, "rejected": 1}}
    [reject] = load_rejects(tmp_path / "out/train")
    assert reject["file"] == "train/bad.inkml" and reason in reject["reason"] and "trace 1" in reject["reason"]
    with pytest.raises(InkmlError, match="bad.inkml"):
        read_inkml(src / "train/bad.inkml")


def test_extent_rule_keeps_wide_but_sane_ink(tmp_path):
    # a long expression: 40 symbols side by side, with a fraction bar far below the baseline
    points = ", ".join(f"{x} {y}" for x in range(0, 4000, 100) for y in (0, 10)) + ", 0 300, 4000 300"
    path = tmp_path / "wide.inkml"
    path.write_text(inkml_text(points))
    assert read_inkml(path).traces["1"].shape == (82, 2)
    far = 4000 + (MAX_SPREAD + 1) * 4000  # beyond the limit in sizes of the 10-90 percentile box
    path.write_text(inkml_text(points + f", {far} 0"))
    with pytest.raises(InkmlError, match="absurd extent"):
        read_inkml(path)


def test_height_is_bounded(src, tmp_path, capsys):
    with pytest.raises(ValueError, match=f"from 4 to {MAX_HEIGHT}"):
        prepare_crohme(src, tmp_path / "out", height=100000)
    assert cli.main(["prepare", "crohme", "--src", str(src), "--out", str(tmp_path / "out"), "--height", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "height" in err and not (tmp_path / "out").exists()


# ---- freshness and ownership ------------------------------------------------------------------------------------

def test_crashed_run_at_another_height_then_rerun_equals_a_clean_run(src, tmp_path):
    out, clean = tmp_path / "out", tmp_path / "clean"
    prepare_crohme(src, clean, workers=1, height=48)
    prepare_crohme(src, out, workers=1, height=32)
    # as if killed at the end of a 32-pixel run: journal kept, manifest incomplete, caption.txt missing
    manifest = json.loads((out / "train" / MANIFEST_FILE).read_text())
    (out / "train" / JOURNAL_FILE).write_text("".join(json.dumps({"id": k, **v}) + "\n"
                                                      for k, v in manifest["items"].items()) + '{"id": "s')
    (out / "train" / MANIFEST_FILE).write_text(json.dumps({**manifest, "complete": False, "items": {}}))
    (out / "train" / CAPTION_FILE).unlink()
    (out / "train" / IMAGES_DIR / f"{TEMP_PREFIX}abc12345.s0.png.tmp").write_bytes(b"half")  # what a kill leaves
    with pytest.raises(ValueError, match="unfinished prepare run"):
        load_split(out / "train")
    prepare_crohme(src, out, workers=2, height=48)
    assert tree(out) == tree(clean)


def test_edited_source_is_rendered_again(src, tmp_path):
    out = tmp_path / "out"
    prepare_crohme(src, out, workers=1, height=32)
    before = (out / "train" / IMAGES_DIR / f"s1{IMAGE_SUFFIX}").read_bytes()
    write_inkml(src / "train/s1.inkml", _edited())
    prepare_crohme(src, out, workers=1, height=32)
    assert read_captions(out / "train" / CAPTION_FILE)["s1"] == "y - 1"
    assert (out / "train" / IMAGES_DIR / f"s1{IMAGE_SUFFIX}").read_bytes() != before
    # an image changed behind our back is not trusted either
    (out / "train" / IMAGES_DIR / f"s2{IMAGE_SUFFIX}").write_bytes(b"not a png")
    prepare_crohme(src, out, workers=1, height=32)
    with Image.open(out / "train" / IMAGES_DIR / f"s2{IMAGE_SUFFIX}") as im:
        assert im.height == 32


def _edited() -> Ink:
    t = np.array([[0, 0], [15, 20], [30, 0]], np.float32)
    return Ink(id="s1", traces={"0": t}, latex="$y-1$")


def test_foreign_files_are_never_deleted(src, tmp_path, capsys):
    out = tmp_path / "out"
    comer = out / "train"  # a CoMER-style folder the user keeps there
    (comer / IMAGES_DIR).mkdir(parents=True)
    (comer / CAPTION_FILE).write_text("theirs\tx\n")
    Image.new("L", (8, 8)).save(comer / IMAGES_DIR / "theirs.png")
    assert cli.main(["prepare", "crohme", "--src", str(src), "--out", str(out), "--workers", "1"]) == 2
    assert "not made by unimumer prepare" in capsys.readouterr().err
    assert (comer / CAPTION_FILE).read_text() == "theirs\tx\n"
    with pytest.raises(FileExistsError, match="never replaces one"):  # round 3, case 2: not even with --force
        prepare_crohme(src, out, workers=1, height=32, force=True)
    assert (comer / CAPTION_FILE).read_text() == "theirs\tx\n"
    (comer / CAPTION_FILE).rename(comer / "their_captions.txt")
    prepare_crohme(src, out, workers=1, height=32, force=True)
    assert (comer / IMAGES_DIR / "theirs.png").exists()  # kept beside ours
    assert set(read_captions(comer / CAPTION_FILE)) == {"s0", "s1", "s2", "s3"}

    with pytest.raises(ValueError, match="overlaps the source"):
        prepare_crohme(src, src, workers=1)
    assert sorted(p.name for p in (src / "train").iterdir()) == [f"s{i}.inkml" for i in range(4)]


def test_limit_keeps_the_other_images_and_negative_limit_is_an_error(src, tmp_path):
    out = tmp_path / "out"
    prepare_crohme(src, out, workers=1, height=32)
    prepare_crohme(src, out, workers=1, height=32, limit=1)
    assert set(read_captions(out / "train" / CAPTION_FILE)) == {"s0"}
    assert len(list((out / "train" / IMAGES_DIR).glob(f"*{IMAGE_SUFFIX}"))) == 4
    for bad in (-1, 0):
        with pytest.raises(ValueError, match="limit"):
            prepare_crohme(src, out, limit=bad)


def test_odd_file_names(src, tmp_path):
    write_inkml(src / "train/UPPER.INKML", ink("UPPER", "$u$"))
    write_inkml(src / "train/tab\there.inkml", ink("t", "$t$"))
    summary = prepare_crohme(src, tmp_path / "out", workers=1, images=False)
    assert summary == {"train": {"read": 6, "written": 5, "rejected": 1}}
    assert "UPPER" in read_captions(tmp_path / "out/train" / CAPTION_FILE)
    assert "tab" in load_rejects(tmp_path / "out/train")[0]["reason"]


# ---- locks, Ctrl-C, kill -9 ------------------------------------------------------------------------------------

HOLD = "import sys, time; from unimumer_lib.core.outdir import OutputLock; " \
       "OutputLock(sys.argv[1], 'holder').acquire(); print('held', flush=True); time.sleep(60)"


def test_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(src, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = run_cli("prepare", "crohme", "--src", src, "--out", out, "--workers", "1")
        assert second.returncode == 2 and second.stderr.count("\n") == 1
        assert f"pid {holder.pid}" in second.stderr and "holder" in second.stderr
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK_FILE).exists()  # left behind by the killed holder
    assert run_cli("prepare", "crohme", "--src", src, "--out", out, "--workers", "1").returncode == 0
    assert not (out / LOCK_FILE).exists()
    with OutputLock(out):
        with pytest.raises(Exception, match=f"pid {os.getpid()}"):
            OutputLock(out).acquire()


def _start(args, out_glob: Path, timeout=30.0) -> subprocess.Popen:
    """Start the CLI in its own process group and wait until it has written something matching ``out_glob``.

    SIGINT starts at its default, as in a terminal: a shell running pytest in the background (``cmd &``) hands
    its children an ignored SIGINT, and the Ctrl-C tests would then test nothing but that.
    """
    proc = subprocess.Popen([sys.executable, "-m", "unimumer_lib.pipeline.cli", *map(str, args)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not any(out_glob.parent.glob(out_glob.name)) or len(children(proc.pid)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.05)
    return proc


def test_ctrl_c_stops_prepare_and_its_workers_leaving_no_temp_files(crohme_root, tmp_path):
    out = tmp_path / "out"
    proc = _start(["prepare", "crohme", "--src", crohme_root, "--splits", "train", "--out", out, "--workers", "2"],
                  out / "train" / IMAGES_DIR / f"*{IMAGE_SUFFIX}")
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 2.0 and proc.returncode == 130
    assert err.strip().endswith("unimumer prepare: interrupted") and "Traceback" not in err
    assert not any(alive(w) for w in workers)
    assert not list(out.rglob("*.tmp")) and not (out / "train" / CAPTION_FILE).exists()
    assert (out / "train" / JOURNAL_FILE).exists()  # the honest partial state


def test_ctrl_c_stops_synth(tmp_path):
    out = tmp_path / "synth"
    proc = _start(["synth", "--n", "3000", "--out", out, "--workers", "2"], out / SYNTH_SPLIT / "*.inkml")
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.monotonic()
    proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 2.0 and proc.returncode == 130
    assert not any(alive(w) for w in workers) and not list(out.rglob("*.tmp"))


def test_kill_9_of_prepare_leaves_no_worker(crohme_root, tmp_path):
    out = tmp_path / "out"
    proc = _start(["prepare", "crohme", "--src", crohme_root, "--splits", "train", "--out", out, "--workers", "2"],
                  out / "train" / IMAGES_DIR / f"*{IMAGE_SUFFIX}")
    workers = children(proc.pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 2
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not any(alive(w) for w in workers)


# ---- synth --out -------------------------------------------------------------------------------------------------

def test_synth_refuses_a_non_empty_out_and_force_clears_only_its_own_files(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli.main(["synth", "--n", "3", "--out", str(out), "--workers", "1"]) == 0
    assert cli.main(["synth", "--n", "3", "--out", str(out), "--workers", "1"]) == 0  # same run: resumes
    (out / "notes.txt").write_text("mine")
    assert cli.main(["synth", "--n", "2", "--seed", "1", "--out", str(out), "--workers", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["synth", "--n", "2", "--seed", "1", "--out", str(out), "--workers", "1", "--force"]) == 0
    inks = sorted(p.stem for p in (out / SYNTH_SPLIT).iterdir())
    assert inks == ["synth_s1_000000", "synth_s1_000001"] and (out / "notes.txt").read_text() == "mine"
    assert len((out / CAPTIONS_TSV).read_text().splitlines()) == 2
    assert cli.main(["synth", "--n", "2", "--out", str(out / "notes.txt")]) == 2
    assert "is a file" in capsys.readouterr().err


# ---- eval inputs -------------------------------------------------------------------------------------------------

RECORDS = [{"img_id": "a", "gt": "x + 1", "pred": "x + 1", "image_path": "a.png"},
           {"img_id": "b", "gt": "y", "pred": "z", "image_path": "b.png"}]


@pytest.mark.parametrize("name, data", [
    ("bom" + PRED_SUFFIX, b"\xef\xbb\xbf" + json.dumps(RECORDS).encode()),
    ("utf16" + PRED_SUFFIX, json.dumps(RECORDS).encode("utf-16")),
    ("lines.jsonl", "\n".join(json.dumps(r) for r in RECORDS).encode() + b"\n")])
def test_prediction_files_in_the_wild_are_read(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    assert [p.img_id for p in read_predictions(path)] == ["a", "b"]


@pytest.mark.parametrize("data, reason", [
    ('[{"img_id": "caf\xe9", "gt": "x", "pred": "x", "image_path": ""}]'.encode("latin-1"), "not UTF-8"),
    (b"[]", "no prediction records"),
    (json.dumps(RECORDS[0]).encode() + b"\n{oops}\n", "line 2")])
def test_bad_prediction_files_are_one_line_errors(tmp_path, capsys, data, reason):
    path = tmp_path / f"bad{PRED_SUFFIX}"
    path.write_bytes(data)
    assert cli.main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and reason in err


def test_eval_folder_and_out_guard(tmp_path, capsys):
    for sub in ("m1", "m2/deep"):
        (tmp_path / "runs" / sub).mkdir(parents=True)
        (tmp_path / "runs" / sub / f"crohme{PRED_SUFFIX}").write_text(json.dumps(RECORDS))
    (tmp_path / "runs/m1/notes.json").write_text("{}")  # not a *_pred.json: not evaluated
    assert cli.main(["eval", str(tmp_path / "runs"), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    pred = tmp_path / "runs/m1" / f"crohme{PRED_SUFFIX}"
    assert cli.main(["eval", str(pred), "--out", str(pred)]) == 2
    assert "would overwrite" in capsys.readouterr().err and json.loads(pred.read_text()) == RECORDS
    assert cli.main(["eval", str(tmp_path / "runs/m1/notes.json").replace("notes", "none")]) == 2


# ---- other one-line errors -------------------------------------------------------------------------------------

def test_caption_files_latin1_and_bom(tmp_path):
    path = tmp_path / CAPTION_FILE
    path.write_bytes("\ufeffimg0\tx\n".encode("utf-8"))
    assert read_captions(path) == {"img0": "x"}
    path.write_bytes("caf\xe9\tx\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"{path}: not UTF-8"):
        read_captions(path)


def test_tasks_into_a_prepared_split_fails_before_writing(src, tmp_path, capsys):
    out = tmp_path / "out"
    prepare_crohme(src, out, workers=1, height=32)
    before = tree(out / "train")
    assert cli.main(["tasks", "--captions", str(out / "train" / CAPTION_FILE), "--out", str(out / "train")]) == 2
    err = capsys.readouterr().err  # (its rejects.tsv has the one layout now: the stamp check refuses it)
    assert "rejects.tsv: a file `unimumer tasks` did not write" in err and tree(out / "train") == before


def test_unwritable_out_is_one_line(src, tmp_path):
    (tmp_path / "file").write_text("")
    result = run_cli("prepare", "crohme", "--src", src, "--out", tmp_path / "file/x", "--workers", "2")
    assert result.returncode == 2
    assert result.stderr == f"unimumer prepare: error: {tmp_path / 'file/x'}: Not a directory\n"
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        result = run_cli("prepare", "crohme", "--src", src, "--out", ro / "x", "--workers", "2")
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Permission denied" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("eval", tmp_path / "missing.json", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr
    result = run_cli("eval", tmp_path / "missing.json")
    assert result.returncode == 2 and result.stderr == f"unimumer eval: error: {tmp_path / 'missing.json'}: " \
                                                       "No such file or directory\n"


def test_caption_ids_that_name_a_path_never_write_or_read_outside(tmp_path):
    """Issue 20, case 1: an HME100K caption.txt id ``../../outside/esc.jpg`` made the copy write (and replace a user
    file) outside the run folder, and ``find_image`` read an image outside the caption folder."""
    from unimumer_lib.data.prepare import copy_caption_split
    from unimumer_lib.formats.records import read_comer, unsafe_id

    src, out, outside = tmp_path / "hme" / "train", tmp_path / "run" / "prepared", tmp_path / "outside"
    (src / "images").mkdir(parents=True)
    outside.mkdir()
    Image.new("L", (30, 20), 255).save(src / "images" / "train_1.jpg")
    Image.new("L", (30, 20), 0).save(outside / "esc.jpg")  # a user's file, reachable by the id below
    before = tree(outside)
    (src / CAPTION_FILE).write_text("train_1.jpg\tx + 1\n../../../outside/esc.jpg\ty\n..\\esc.jpg\tz\n",
                                    encoding="utf-8")
    records = read_comer(src)
    assert [r.image_path is None for r in records] == [False, True, True]  # nothing read from outside
    summary = copy_caption_split(src, out)
    assert (summary["read"], summary["written"], summary["rejected"]) == (3, 1, 2)
    rejects = (out / "rejects.tsv").read_text(encoding="utf-8")
    assert rejects.count("names a path") == 2 and "../../../outside/esc\t" in rejects
    assert tree(outside) == before  # byte for byte
    assert sorted(p.name for p in (out / IMAGES_DIR).iterdir()) == ["train_1.jpg"]
    assert unsafe_id("18_em_0") is None and unsafe_id("train_1.jpg") is None and unsafe_id("..")


# ---- issue 20: train, infer, tasks and reproduce never touch what is not theirs ---------------------------------

@pytest.fixture(scope="module")
def crohme4(crohme_root, tmp_path_factory):
    """Four short real CROHME training expressions (height 64) and their finished vanilla task folder."""
    from unimumer_lib.pipeline.mining import sample_caption_set
    from unimumer_lib.tasks.build import caption_rows, write_task_files

    folder = tmp_path_factory.mktemp("crohme4")
    records = sample_caption_set(crohme_root / "train", folder / "set", 4, min_tokens=3, max_tokens=8, height=64)
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in records], ["vanilla"], progress=False)
    write_task_files(folder / "tasks", rows)
    return records, folder / "tasks"


def train_args(tasks: Path, out: Path, *extra) -> list[str]:
    return ["train", "--data", str(tasks), "--out", str(out), "--max-steps", "2", *map(str, extra)]


def test_temp_files_of_users_are_never_ours(src, tmp_path, capsys):
    """Case 2: a user's ``.thesis-backup.tmp`` was deleted by synth/prepare (with and without --force)."""
    from unimumer_lib.core.files import atomic_write_text, is_temp_name, remove_temp_files

    for cmd in (["synth", "--n", "2", "--workers", "1"], ["prepare", "crohme", "--src", str(src), "--workers", "1"]):
        out = tmp_path / cmd[0]
        folder = out if cmd[0] == "synth" else out / "train"  # prepare writes a folder per split
        folder.mkdir(parents=True)
        (folder / ".thesis-backup.tmp").write_bytes(b"chapter 3")
        assert cli.main([*cmd, "--out", str(out)]) == 2  # a folder holding a user file is not empty
        assert cli.main([*cmd, "--out", str(out), "--force"]) == 0
        assert (folder / ".thesis-backup.tmp").read_bytes() == b"chapter 3"
    capsys.readouterr()
    atomic_write_text(tmp_path / "x.txt", "x")
    assert not is_temp_name(".thesis-backup.tmp") and not is_temp_name(".x.txt.abc123.tmp")
    assert remove_temp_files(tmp_path / "synth") == 0


def test_prepare_never_writes_through_a_symlinked_images_folder(src, tmp_path, capsys):
    """Case 2: through a symlinked ``images/``, prepare --force deleted a file outside --out and overwrote a user
    image of the same name."""
    outside, out = tmp_path / "outside", tmp_path / "out" / "train"
    outside.mkdir()
    (outside / "s0.png").write_bytes(b"user image")
    out.mkdir(parents=True)
    (out / IMAGES_DIR).symlink_to(outside)
    assert cli.main(["prepare", "crohme", "--src", str(src), "--out", str(tmp_path / "out"), "--force",
                     "--workers", "1"]) == 2
    assert "a symlink" in capsys.readouterr().err
    assert tree(outside) == {"s0.png": b"user image"}


def test_train_out_with_user_files_is_refused_and_force_writes_beside_them(crohme4, tmp_path, capsys):
    """Case 3: ``train --out`` onto an existing folder overwrote the user's README.md and run_config.json."""
    _, tasks = crohme4
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(train_args(tasks, out)) == 2
    assert "not made by unimumer train" in capsys.readouterr().err
    assert cli.main(train_args(tasks, out, "--force")) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "final" / "model.safetensors").is_file()
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "README.md").write_text("my paper")
    assert cli.main(train_args(tasks, clash, "--force")) == 2
    assert "README.md" in capsys.readouterr().err and tree(clash) == {"README.md": b"my paper"}


def test_resume_refuses_another_run_and_a_new_run_needs_force(crohme4, tmp_path, capsys):
    """Case 4: after a new run (other seed) into an old run folder, --resume continued the old run."""
    _, tasks = crohme4
    out = tmp_path / "run"
    assert cli.main(train_args(tasks, out, "--seed", "0")) == 0
    first = (out / "final" / "model.safetensors").read_bytes()
    assert cli.main(train_args(tasks, out, "--seed", "1")) == 2
    assert "earlier training run" in capsys.readouterr().err
    assert cli.main(train_args(tasks, out, "--seed", "1", "--resume")) == 2
    err = capsys.readouterr().err
    assert "seed: there 0, now 1" in err
    assert (out / "final" / "model.safetensors").read_bytes() == first  # untouched by the refused runs
    (out / "mine.txt").write_text("kept")
    assert cli.main(train_args(tasks, out, "--seed", "1", "--force")) == 0
    assert (out / "mine.txt").read_text() == "kept"
    assert json.loads((out / "run_config.json").read_text())["fingerprint"]["seed"] == 1


def test_resume_skips_a_checkpoint_torn_by_a_kill_and_ends_equal(crohme4, tmp_path):
    """Case 4: a checkpoint cut short during its save made --resume exit 2; now the previous complete one is used
    and the final weights equal an uninterrupted run."""
    from safetensors.torch import load_file

    from unimumer_lib.training.runfolder import checkpoint_problem
    from unimumer_lib.training.train import train

    _, tasks = crohme4
    common = dict(max_steps=4, save_steps=2, per_device_train_batch_size=2, disable_tqdm=True, logging_steps=1)
    train([tasks / "vanilla.json"], out_dir=tmp_path / "full", **common)
    train([tasks / "vanilla.json"], out_dir=tmp_path / "torn", **common)
    last = tmp_path / "torn" / "checkpoint-4"
    (last / "trainer_state.json").unlink()  # what a kill during the save leaves: the state is written last
    weights = last / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert "cut short" in checkpoint_problem(last) or "trainer_state" in checkpoint_problem(last)
    resumed = train([tasks / "vanilla.json"], out_dir=tmp_path / "torn", resume=True, **common)
    assert resumed.global_step == 4
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "torn" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a)


def torch_equal(x, y) -> bool:
    import torch

    return bool(torch.equal(x, y))


def test_train_guards_test_images_empty_answers_and_twice_given_files(crohme4, tmp_path, capsys):
    """Case 10: train had no leak guard, trained empty answers and a file given twice without a word."""
    from unimumer_lib.formats.sharegpt import read_sharegpt, write_sharegpt
    from unimumer_lib.data.splits import HeldOutImageLeak
    from unimumer_lib.training.sftdata import load_sharegpt_dataset

    _, tasks = crohme4
    rows = read_sharegpt(tasks / "vanilla.json")
    test_dir = tmp_path / "crohme" / "test2014"
    test_dir.mkdir(parents=True)
    leak = [{**rows[0], "images": [str(test_dir / "18_em_0.png")]}]
    Image.new("L", (40, 20), 255).save(test_dir / "18_em_0.png")
    write_sharegpt(tmp_path / "leak.json", leak + rows[1:])
    with pytest.raises(HeldOutImageLeak, match="test2014"):
        load_sharegpt_dataset(tmp_path / "leak.json", test_roots=[tmp_path / "crohme"])
    assert len(load_sharegpt_dataset(tmp_path / "leak.json", test_roots=[], allow_test_images=True)) == 4
    empty = [dict(r) for r in rows]
    empty[1] = {**empty[1], "messages": [empty[1]["messages"][0], {**empty[1]["messages"][1], "value": " "}]}
    write_sharegpt(tmp_path / "empty.json", empty)
    rejects: list = []
    assert len(load_sharegpt_dataset(tmp_path / "empty.json", rejects=rejects)) == 3
    assert rejects == [(str(tmp_path / "empty.json"), 1, "empty answer (nothing to learn)")]
    with pytest.raises(ValueError, match="given twice"):
        load_sharegpt_dataset([tasks / "vanilla.json", tasks / "vanilla.json"])
    write_sharegpt(tmp_path / "copy.json", rows)
    capsys.readouterr()
    load_sharegpt_dataset([tasks / "vanilla.json", tmp_path / "copy.json"])
    assert "4 row(s) repeat an identical row" in capsys.readouterr().err


def test_tabs_inside_a_caption_are_one_separator(tmp_path):
    (tmp_path / CAPTION_FILE).write_text("a\tx\t+\t1\nb\ty  ^  2\n", encoding="utf-8")
    assert read_captions(tmp_path / CAPTION_FILE) == {"a": "x + 1", "b": "y ^ 2"}


def test_a_task_build_cut_short_is_never_trained_on_in_part(crohme4, tmp_path, monkeypatch):
    """Case 9: ``tasks`` on a full disk left vanilla.json without tree.json/dataset_info.json and no marker."""
    from unimumer_lib.tasks import build as T
    from unimumer_lib.training.sftdata import task_files

    records, _ = crohme4
    captions = tmp_path / "split"
    (captions / IMAGES_DIR).mkdir(parents=True)
    for r in records:
        (captions / IMAGES_DIR / Path(r.image_path).name).write_bytes(Path(r.image_path).read_bytes())
    (captions / CAPTION_FILE).write_text("".join(f"{r.id}\t{r.caption}\n" for r in records))
    out = tmp_path / "tasks"
    T.build_task_files(out, ["vanilla", "can"], captions=captions, test_roots=[], progress=False)
    assert [p.name for p in task_files(out)] == ["can.json", "vanilla.json"]
    real = T.write_sharegpt

    def full_disk(path, rows):
        if Path(path).name == "tree.json":
            raise OSError(28, "No space left on device")
        return real(path, rows)

    monkeypatch.setattr(T, "write_sharegpt", full_disk)
    with pytest.raises(OSError):
        T.build_task_files(out, ["vanilla", "tree"], captions=captions, test_roots=[], progress=False)
    assert [p.name for p in task_files(out)] == ["can.json"]  # the rebuilt tasks are unlisted until finished
    (out / "dataset_info.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a finished task folder"):
        task_files(out)


def test_eval_out_is_atomic_and_a_full_disk_names_the_file(tmp_path, monkeypatch, capsys):
    """Case 9/10: ``eval --out`` on a full disk left a 0-byte file; ``[Errno 28]`` named no file."""
    from unimumer_lib.core import files

    preds = tmp_path / "a_pred.json"
    preds.write_text(json.dumps(RECORDS))
    out = tmp_path / "scores.txt"
    out.write_text("yesterday's scores")

    def full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    assert cli.main(["eval", str(preds), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"unimumer eval: error: {out}: No space left on device\n"
    assert out.read_text() == "yesterday's scores" and sorted(p.name for p in tmp_path.iterdir()) == [
        "a_pred.json", "scores.txt"]


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory):
    """A folder of five images of which three cannot be read: 0 bytes, truncated, not an image."""
    folder = tmp_path_factory.mktemp("bad_images")
    for name in ("a", "b"):
        Image.new("L", (60, 24), 255).save(folder / f"{name}.png")
    (folder / "c_empty.png").write_bytes(b"")
    (folder / "d_truncated.png").write_bytes((folder / "a.png").read_bytes()[:40])
    (folder / "e_text.png").write_text("not an image")
    return folder


def test_unreadable_images_are_rejected_records_and_the_run_goes_on(bad_images, tmp_path, capsys):
    """Case 6: one unreadable image aborted a whole infer run, and the message did not name the file."""
    out = tmp_path / "pred.json"
    assert cli.main(["infer", "--model", "tiny-base", "--data", str(bad_images), "--out", str(out),
                     "--max-new-tokens", "4"]) == 0
    assert "read 5 = predicted 2 + rejected 3" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert [bool(r.get("error")) for r in rows] == [False, False, True, True, True]
    rejects = (tmp_path / "pred.json.rejects.tsv").read_text().splitlines()
    assert len(rejects) == 4 and all(str(bad_images) in line for line in rejects[1:])


def test_tasks_rejects_unreadable_images(bad_images, tmp_path, capsys):
    """Case 6: ``tasks`` kept unreadable images as training rows (read 12 = written 12 + rejected 0)."""
    split = tmp_path / "split"
    (split / IMAGES_DIR).mkdir(parents=True)
    for i, image in enumerate(sorted(bad_images.glob("*.png"))):
        (split / IMAGES_DIR / image.name).write_bytes(image.read_bytes())
        with (split / CAPTION_FILE).open("a") as fh:
            fh.write(f"{image.stem}\tx + {i}\n")
    assert cli.main(["tasks", "--captions", str(split), "--tasks", "vanilla", "--out", str(tmp_path / "t")]) == 0
    assert "vanilla: read 5 = written 2 + rejected 3" in capsys.readouterr().out
    assert (tmp_path / "t" / "rejects.tsv").read_text().count("unreadable image") == 3


def test_stale_predictions_are_never_reused(bad_images, tmp_path, capsys):
    """Case 5: an existing --out was trusted by id whatever the model, task, decoding or data."""
    out = tmp_path / "pred.json"
    base = ["infer", "--model", "tiny-base", "--out", str(out), "--max-new-tokens", "4"]
    assert cli.main([*base, "--image", str(bad_images / "a.png")]) == 0
    made = out.read_bytes()
    assert cli.main([*base, "--image", str(bad_images / "a.png"), "--task", "tree"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "task: there 'vanilla', now 'tree'" in err and out.read_bytes() == made
    assert cli.main([*base, "--image", str(bad_images / "a.png"), str(bad_images / "b.png")]) == 2
    assert "differs in data" in capsys.readouterr().err
    assert cli.main([*base, "--image", str(bad_images / "a.png"), "--task", "tree", "--force"]) == 0
    foreign = tmp_path / "theirs_pred.json"
    foreign.write_text(json.dumps(RECORDS))
    for extra in ([], ["--force"]):
        assert cli.main([*base[:-3], str(foreign), "--image", str(bad_images / "a.png"), *extra]) == 2
        assert "not made by unimumer infer" in capsys.readouterr().err
    assert json.loads(foreign.read_text()) == RECORDS


def test_prompt_json_paths_may_not_leave_their_root(tmp_path):
    """Case 7: infer/tasks followed prompt-JSON image paths such as ../../../../etc/passwd."""
    from unimumer_lib.formats.records import read_prompt_json

    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    Image.new("L", (30, 20), 255).save(root / "data" / "ok.png")
    Image.new("L", (30, 20), 255).save(tmp_path / "outside.png")
    Image.new("L", (30, 20), 255).save(tmp_path / "outside2.png")
    rows = [{"messages": [{"role": "user", "content": "<image>x"}, {"role": "assistant", "content": "y"}],
             "images": [image]} for image in ("./data/ok.png", "../outside.png", "../../../../etc/passwd",
                                              str(tmp_path / "outside2.png"))]
    (root / "prompts.json").write_text(json.dumps(rows))
    records = read_prompt_json(root / "prompts.json", root=root)
    assert [r.image_path is not None for r in records] == [True, False, False, False]
    assert "climbs out of" in records[1].error and "outside the root" in records[3].error


@pytest.mark.parametrize("command", ["train", "infer", "tasks", "reproduce"])
def test_a_second_writer_is_refused_naming_the_holder(command, crohme4, bad_images, tmp_path):
    """Case 8: two runs into one --out both did all the work and raced on the same files."""
    from unimumer_lib.pipeline.reproduce import REPRODUCE_LOCK

    out = tmp_path / "out"
    args, lock = {
        "train": (train_args(crohme4[1], out), OutputLock(out, "the first train")),
        "infer": (["infer", "--model", "tiny-base", "--data", str(bad_images), "--out", str(out / "p.json")],
                  OutputLock(out, "the first infer", name=".p.json.unimumer.lock")),
        "tasks": (["tasks", "--captions", str(crohme4[0][0].image_path).rsplit("/images/", 1)[0], "--out", str(out)],
                  OutputLock(out, "the first tasks")),
        "reproduce": (["reproduce", "--profile", "ci", "--out", str(out)],
                      OutputLock(out, "the first reproduce", name=REPRODUCE_LOCK)),
    }[command]
    with lock:
        result = run_cli(*args, timeout=120)
    assert result.returncode == 2 and "another run writes here" in result.stderr
    assert f"the first {command}" in result.stderr and str(os.getpid()) in result.stderr


def test_ctrl_c_stops_infer_within_a_second_and_resumes_to_the_same_file(bad_images, tmp_path):
    """Case 10: Ctrl-C took 2.3-4.3 s for infer/train/reproduce (promised: under 1 s)."""
    images = tmp_path / "many"
    images.mkdir()
    for i in range(400):
        (images / f"i{i:03d}.png").write_bytes((bad_images / ("a.png" if i % 2 else "b.png")).read_bytes())
    out = tmp_path / "p.json"
    cmd = [sys.executable, "-c", "from unimumer_lib.pipeline.cli import console; raise SystemExit(console())", "infer",
           "--model", "tiny-base", "--data", str(images), "--out", str(out), "--batch-size", "2",
           "--max-new-tokens", "8"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)  # as a terminal starts it, even under `pytest &`
    partial = tmp_path / "p.json.partial.jsonl"
    deadline = time.time() + 120
    while (not partial.exists() or partial.stat().st_size == 0) and time.time() < deadline:
        time.sleep(0.05)
    start = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    took = time.time() - start
    assert proc.returncode == 130 and "interrupted" in err and took < 1.0, (proc.returncode, took, err[-300:])
    assert not children(proc.pid)
    assert cli.main(cmd[3:]) == 0
    assert cli.main([*cmd[3:-6], "--data", str(images), "--out", str(tmp_path / "q.json"), "--batch-size", "2",
                     "--max-new-tokens", "8"]) == 0
    assert out.read_bytes() == (tmp_path / "q.json").read_bytes()


@pytest.mark.parametrize("command", ["train", "reproduce"])
def test_ctrl_c_stops_train_and_reproduce_within_a_second_leaving_no_process(command, crohme4, tmp_path):
    """Case 10, for the two commands whose children (TRL, papermill's kernel) took seconds to wind down."""
    out = tmp_path / "out"
    args = {"train": [*train_args(crohme4[1], out)[:-2], "--max-steps", "2000"],
            "reproduce": ["reproduce", "--profile", "ci", "--out", str(out)]}[command]
    started = {"train": out / "run_config.json", "reproduce": out / "notebooks"}[command]
    cmd = [sys.executable, "-c", "from unimumer_lib.pipeline.cli import console; raise SystemExit(console())", *args]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)  # as a terminal starts it, even under `pytest &`
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # into the training steps / the first notebook's kernel
    kids = children(proc.pid)
    start = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    took = time.time() - start
    assert proc.returncode == 130 and "interrupted" in err and took < 1.0, (proc.returncode, took, err[-300:])
    time.sleep(0.2)
    assert not [k for k in kids if Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text()
                .rsplit(")", 1)[1].split()[:1]]


def test_ids_with_tabs_and_newlines_stay_one_line_in_side_files_and_output(tmp_path, capsys):
    """Issue 34 (item 17): an id holding a tab or a newline went raw into the rejects TSV and --image's stdout."""
    from unimumer_lib.core.files import tsv_field, tsv_line
    from unimumer_lib.inference.resume import REJECTS_SUFFIX, side_file

    assert tsv_line("a\tb", "c\nd", "e\\f") == "a\\tb\tc\\nd\te\\\\f\n"
    assert tsv_field("plain") == "plain"
    folder = tmp_path / "imgs"
    folder.mkdir()
    odd = folder / "bad\tname\n.png"
    odd.write_bytes(b"not an image")
    out = tmp_path / "p.json"
    assert cli.main(["infer", "--model", "tiny-base", "--data", str(folder), "--out", str(out)]) == 0
    lines = side_file(out, REJECTS_SUFFIX).read_text().splitlines()
    fields = lines[1].split("\t")  # source (the image path), item (the id), reason
    assert len(lines) == 2 and len(fields) == 3 and fields[1] == "bad\\tname\\n"


# ---- round 3: normalize ------------------------------------------------------------------------------------------

def _norm_input(tmp_path) -> Path:
    rows = [{"img_id": "a", "gt": "x + 1", "pred": "x + 1", "image_path": "a.png"},
            {"img_id": "b", "gt": "[ 1 , 2 )", "pred": "z", "image_path": "b.png"}]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(rows))
    return path


def test_normalize_on_a_full_disk_replaces_neither_file(tmp_path, monkeypatch, capsys):
    """Round 3, case 16: ``normalize --out`` on a full disk replaced norm.json but not norm.removed.tsv."""
    import pathlib

    src, out = _norm_input(tmp_path), tmp_path / "norm.json"
    assert cli.main(["normalize", str(src), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = pathlib.Path.write_bytes

    def full(self, data):
        if self.name.endswith(".removed.tsv.tmp"):
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    (tmp_path / "p.json").write_text(json.dumps([{"img_id": "c", "gt": "y", "pred": "y", "image_path": "c.png"}]))
    assert cli.main(["normalize", str(src), "--out", str(out)]) == 2
    assert "norm.removed.tsv: No space left on device" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "p.json"}
    assert after == {k: v for k, v in before.items() if k != "p.json"}  # both old files, no temporary left


def test_a_rerun_of_normalize_removes_what_a_killed_one_left(tmp_path):
    """Round 3, case 33: ``normalize`` killed mid-write left a ``.unimumer-tmp-*`` a successful rerun kept."""
    from unimumer_lib.core.files import TEMP_PREFIX

    src, out = _norm_input(tmp_path), tmp_path / "norm.json"
    left = tmp_path / f"{TEMP_PREFIX}ab12cd34.norm.json.tmp"
    left.write_bytes(b"x" * 4096)
    other = tmp_path / f"{TEMP_PREFIX}ab12cd34.other.json.tmp"  # another command's, in the same folder
    other.write_bytes(b"y")
    assert cli.main(["normalize", str(src), "--out", str(out)]) == 0
    assert not left.exists() and other.exists()


# ---- round 3: paths a data file names ----------------------------------------------------------------------------

def _predictions_with(tmp_path, rows) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    Image.new("L", (60, 24), 255).save(data / "inside.png")
    path = data / "preds.json"
    path.write_text(json.dumps(rows))
    return path


def test_tasks_from_predictions_rejects_rows_without_an_image_or_outside_the_root(tmp_path, capsys):
    """Round 3, cases 11 and 20: rows without image_path got the img_id as image; ``/etc/passwd`` and
    ``../../../../etc/shadow`` passed ("written 2 + rejected 0") and ``train`` opened them."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("L", (60, 24), 255).save(outside / "secret.png")
    rows = [{"img_id": "e0", "gt": "x + 1", "pred": "x - 1"},
            {"img_id": "e1", "gt": "x + 1", "pred": "x - 1", "image_path": "/etc/passwd"},
            {"img_id": "e2", "gt": "x + 1", "pred": "x - 1", "image_path": "../../../../etc/shadow"},
            {"img_id": "e3", "gt": "x + 1", "pred": "x - 1", "image_path": str(outside / "secret.png")},
            {"img_id": "e4", "gt": "x + 1", "pred": "x - 1", "image_path": "inside.png"}]
    preds = _predictions_with(tmp_path, rows)
    out = tmp_path / "tasks"
    assert cli.main(["tasks", "--from-predictions", str(preds), "--tasks", "error_find", "--out", str(out),
                     "--test-root", str(tmp_path / "none")]) == 0
    assert "read 5 = written 1 + rejected 4" in capsys.readouterr().out
    written = json.loads((out / "error_find.json").read_text())
    assert [Path(r["images"][0]).name for r in written] == ["inside.png"]
    reasons = {line.split("\t")[1]: line.split("\t")[2] for line in (out / "rejects.tsv").read_text().splitlines()[1:]}
    assert reasons["e0"] == "the prediction names no image_path"
    assert "outside the prediction file's folder" in reasons["e2"] and "give the folder" in reasons["e3"]
    # with the images' folder as --root, that image is inside it
    assert cli.main(["tasks", "--from-predictions", str(preds), "--tasks", "error_find", "--out",
                     str(tmp_path / "t2"), "--root", str(outside), "--test-root", str(tmp_path / "none")]) == 0
    assert "written 2 + rejected 3" in capsys.readouterr().out  # e3 now, and a relative path starts at the root
    assert sorted(r["images"][0] for r in json.loads((tmp_path / "t2" / "error_find.json").read_text())) == [
        str(outside / "inside.png"), str(outside / "secret.png")]


def test_a_dataset_info_entry_pointing_out_of_its_folder_is_refused(crohme4, tmp_path, capsys):
    """Round 3, case 19: ``"file_name": "../outside/secret_rows.json"`` in dataset_info.json was trained on."""
    import shutil

    _, tasks = crohme4
    folder = tmp_path / "tasks"
    shutil.copytree(tasks, folder)
    (tmp_path / "outside").mkdir()
    shutil.copy(folder / "vanilla.json", tmp_path / "outside" / "secret_rows.json")
    info = json.loads((folder / "dataset_info.json").read_text())
    info["secret"] = {"file_name": "../outside/secret_rows.json"}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    assert cli.main(train_args(folder, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "'secret'" in err and "not a file inside" in err and not (tmp_path / "run").exists()


def test_a_prompt_json_without_root_reads_no_absolute_path_outside_its_folder(tmp_path):
    """Round 3, case 21: a prompt JSON given to ``infer --data`` without ``--root`` read an absolute path outside
    its folder (the ``..`` form was refused)."""
    from unimumer_lib.formats.records import read_prompt_json

    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("L", (60, 24), 255).save(outside / "secret.png")
    data = tmp_path / "data"
    data.mkdir()
    Image.new("L", (60, 24), 255).save(data / "mine.png")
    row = lambda image: {"messages": [{"from": "human", "value": "<image>x"},  # noqa: E731
                                      {"from": "gpt", "value": "x"}], "images": [image]}
    (data / "p.json").write_text(json.dumps([row(str(outside / "secret.png")), row(str(data / "mine.png"))]))
    records = read_prompt_json(data / "p.json")
    assert records[0].image_path is None and "outside the data file's folder" in records[0].error
    assert records[1].image_path == str(data / "mine.png")
    assert read_prompt_json(data / "p.json", root=tmp_path)[0].image_path == str(outside / "secret.png")


# ---- round 3: --force replaces only the command's own files ------------------------------------------------------

def test_prepare_force_never_replaces_a_users_image_of_the_same_name(src, tmp_path, capsys):
    """Round 3, case 2: ``prepare --force`` overwrote a user's ``images/<id>.png`` and ``caption.txt``."""
    out = tmp_path / "out" / "train"
    (out / IMAGES_DIR).mkdir(parents=True)
    Image.new("L", (8, 8), 7).save(out / IMAGES_DIR / "s1.png")
    mine = (out / IMAGES_DIR / "s1.png").read_bytes()
    assert cli.main(["prepare", "crohme", "--src", str(src), "--out", str(tmp_path / "out"), "--force",
                     "--workers", "1"]) == 2
    assert "s1.png: a file prepare did not write" in capsys.readouterr().err
    assert (out / IMAGES_DIR / "s1.png").read_bytes() == mine and sorted(p.name for p in out.rglob("*")) == [
        "images", "s1.png"]


def test_synth_force_never_replaces_a_users_file_of_a_name_it_writes(tmp_path, capsys):
    """Round 3, case 3: ``synth --force`` overwrote a user's ``captions.tsv`` and
    ``synthetic/synth_s0_000001.inkml`` ("other files are kept")."""
    out = tmp_path / "s"
    (out / SYNTH_SPLIT).mkdir(parents=True)
    (out / CAPTIONS_TSV).write_text("my captions")
    (out / SYNTH_SPLIT / "synth_s0_000001.inkml").write_text("my ink")
    assert cli.main(["synth", "--n", "2", "--out", str(out), "--workers", "1", "--force"]) == 2
    assert "a file synth did not write" in capsys.readouterr().err
    assert (out / CAPTIONS_TSV).read_text() == "my captions"
    assert (out / SYNTH_SPLIT / "synth_s0_000001.inkml").read_text() == "my ink"
    (out / CAPTIONS_TSV).unlink()
    (out / SYNTH_SPLIT / "synth_s0_000001.inkml").rename(out / SYNTH_SPLIT / "kept.inkml")
    assert cli.main(["synth", "--n", "2", "--out", str(out), "--workers", "1", "--force"]) == 0
    assert cli.main(["synth", "--n", "1", "--seed", "3", "--out", str(out), "--workers", "1", "--force"]) == 0
    assert sorted(p.name for p in (out / SYNTH_SPLIT).iterdir()) == ["kept.inkml", "synth_s3_000000.inkml"]


def test_a_full_disk_during_infer_or_train_names_the_file_or_the_output(tmp_path, monkeypatch, capsys):
    """Round 3, case 25: ENOSPC in ``infer --out`` and ``train --out`` named no file."""
    import io
    import pathlib

    Image.new("L", (60, 24), 255).save(tmp_path / "a.png")
    real_open = pathlib.Path.open

    class Full(io.TextIOWrapper):
        def write(self, text):
            raise OSError(28, "No space left on device")

    def open_full(self, mode="r", *args, **kwargs):
        if self.name.endswith(".partial.jsonl") and "a" in mode:
            return Full(real_open(self, "ab"), encoding="utf-8")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_full)
    out = tmp_path / "p.json"
    assert cli.main(["infer", "--model", "tiny-base", "--image", str(tmp_path / "a.png"), "--max-new-tokens", "4",
                     "--out", str(out)]) == 2
    assert capsys.readouterr().err.endswith(f"{out}.partial.jsonl: No space left on device\n")
    monkeypatch.setattr(pathlib.Path, "open", real_open)

    from unimumer_lib.core.errors import naming_output  # a saver's error without a path: the output is named

    text = "Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })"
    assert naming_output(text, "runs/x") == f"runs/x: {text} (writing this command's output)"
    assert naming_output("bad caption", "runs/x") == "bad caption"


def test_pretrain_refuses_a_bad_shape_or_a_reused_work_folder_before_any_work(tmp_path, capsys):
    """Round 3, case 24: a bad ``--size`` or a reused ``--work`` was refused only after the whole run (90 s here),
    and a message suggested a ``--force`` that pretrain does not have."""
    from dataclasses import asdict

    from unimumer_lib.training import pretrain

    args = ["pretrain", "--n", "10", "--steps", "2", "--out", str(tmp_path / "o")]
    assert cli.main([*args, "--size", "nosuch", "--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "--size 'nosuch': no such shape" in err and "--force" not in err
    assert not (tmp_path / "w").exists() and not (tmp_path / "o").exists()  # refused before any work
    work = tmp_path / "used"
    work.mkdir()
    other = asdict(pretrain.RECIPE) | {"n": 99}
    (work / pretrain.RUN_START).write_text(json.dumps({"commit": None, "recipe": other}))
    assert cli.main([*args, "--work", str(work)]) == 2
    err = capsys.readouterr().err
    assert "a pretraining run made with other settings (differs in n: there" in err and "--force" not in err
    assert sorted(p.name for p in work.iterdir()) == [pretrain.RUN_START]
    assert cli.main([*args, "--init", "glyphbase", "--work", str(tmp_path / "w2")]) == 2
    assert "did you mean 'glyph-base'" in capsys.readouterr().err and not (tmp_path / "w2").exists()


def test_export_parquet_leaves_out_unreadable_images_and_lists_them(tmp_path):
    """Round 3, case 15: ``records.export_parquet`` with a 0-byte, a text-as-png and a bomb image wrote the file
    without a word; reading it back failed naming no id."""
    from datasets import Dataset

    from unimumer_lib.formats import records as R

    Image.new("L", (30, 12), 200).save(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 4e8 pixels: over PIL's bomb limit
    recs = [R.Record(k, "x", image_path=str(tmp_path / f"{k}.png")) for k in ("good", "empty", "text", "bomb")]
    path = R.export_parquet(recs, tmp_path / "out.parquet")
    assert Dataset.from_parquet(str(path))["id"] == ["good"]
    rows = (tmp_path / "out.rejects.tsv").read_text().splitlines()
    assert rows[0] == "\t".join(REJECTS_HEADER) and [r.split("\t")[1] for r in rows[1:]] == ["empty", "text", "bomb"]
    assert all(r.split("\t")[2] for r in rows[1:])  # each with its reason
