"""Task records and files: published prompts, row format, CLI outputs, rejects, counts, mixture."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from unimumer_lib.pipeline import cli
from unimumer_lib.tasks.edl import apply_corrections
from unimumer_lib.formats.sharegpt import IMAGE_TOKEN, read_sharegpt
from unimumer_lib.tasks.build import (DATASET_INFO, FORMULA_SEPARATOR, PROMPTS, TASK_REJECTS, TASKS, build_task_files,
                                     caption_row, caption_rows, dataset_info, mixture, read_task_rejects,
                                     split_answer, target_lengths, task_of, to_dataset)
from unimumer_lib.data.splits import HeldOutImageLeak

# Pasted from issue 4 ("…" stands for this opening in the first three).
OPENING = "I have an image of a handwritten mathematical expression"
ISSUE_PROMPTS = {
    "vanilla": OPENING + ". Please write out the expression of the formula in the image using LaTeX format.",
    "tree": OPENING + ". Please generate the abstract syntax tree (AST) of the formula in the image, and then provide "
            "its corresponding LaTeX format.",
    "can": OPENING + ". Please identify and count each distinct visible mathematical symbol in the image, and then "
           "provide its corresponding LaTeX format.",
    "error_find": "I have an image of a handwritten mathematical expression and its OCR recognition result. Please "
                  "help me to detect possible errors in the recognition result and mark the places where errors occur "
                  "with <error_start> <error_end> and <deleted>.",
    "error_fix": "I have an image of a handwritten mathematical expression and a predicted formula with error tags, "
                 "correct the formula by modifying the parts marked with <error_start> and <error_end> and inserting "
                 "content where <deleted> are present. Output the modifications in a single string with the following "
                 "format: REPLACE:old -> new for errors to be replaced. INSERT:content after position for missing "
                 "content. DELETE:to_delete for parts to be removed.",
}
NAMES = {"vanilla": "crohme_train", "tree": "crohme_train_tree", "can": "crohme_train_can",
         "error_find": "crohme_train_error_find", "error_fix": "crohme_train_error_fix"}


def test_prompts_are_the_published_texts():
    assert PROMPTS == ISSUE_PROMPTS
    assert set(TASKS) == set(PROMPTS)


def test_row_format():
    row = caption_row("can", r"\frac { 1 } { 2 }", "/data/img.png")
    assert row == {"messages": [{"from": "human", "value": IMAGE_TOKEN + ISSUE_PROMPTS["can"]},
                                {"from": "gpt", "value": "\\frac: 1, 1: 1, 2: 1\n\\frac { 1 } { 2 }"}],
                   "images": ["/data/img.png"]}
    assert split_answer(row["messages"][1]["value"]) == ("\\frac: 1, 1: 1, 2: 1", r"\frac { 1 } { 2 }")
    assert caption_row("vanilla", "x", "i.png")["messages"][1]["value"] == "x"


def test_dataset_info_names():
    info = dataset_info(TASKS)
    assert {name: entry["file_name"] for name, entry in info.items()} == {v: f"{k}.json" for k, v in NAMES.items()}
    assert set(dataset_info(["tree"], prefix="hme100k_train")) == {"hme100k_train_tree"}


@pytest.fixture
def caption_dir(tmp_path):
    """A tiny prepared split: four captions, one the tree cannot carry, one without an image."""
    folder = tmp_path / "train"
    (folder / "images").mkdir(parents=True)
    captions = {"e1": r"\frac { a } { b }", "e2": "x ^ { 2 } + 1", "bad": "x ^ { 2", "noimg": "a + b"}
    (folder / "caption.txt").write_text("".join(f"{k}\t{v}\n" for k, v in captions.items()), encoding="utf-8")
    for key in ("e1", "e2", "bad"):
        Image.new("L", (8, 8), 255).save(folder / "images" / f"{key}.png")
    return folder


def test_cli_caption_tasks(caption_dir, tmp_path, capsys):
    out = tmp_path / "tasks"
    assert cli.main(["tasks", "--captions", str(caption_dir / "caption.txt"), "--tasks", "vanilla,tree,can",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tree: read 4 = written 2 + rejected 2" in printed
    assert "vanilla: read 4 = written 3 + rejected 1" in printed
    rows = {t: read_sharegpt(out / f"{t}.json") for t in ("vanilla", "tree", "can")}
    assert [r["messages"][1]["value"] for r in rows["vanilla"]] == [r"\frac { a } { b }", "x ^ { 2 } + 1", "x ^ { 2"]
    assert rows["tree"][1]["messages"][1]["value"] == "x\n\t2 (sup)\n+ (right)\n1 (right)\nx ^ { 2 } + 1"
    assert all((caption_dir / "images").samefile(Path(r["images"][0]).parent) for r in rows["can"])
    rejects = read_task_rejects(out / TASK_REJECTS)
    assert Counter((k, t) for k, t, _ in rejects) == Counter(
        [("noimg", "vanilla"), ("noimg", "tree"), ("noimg", "can"), ("bad", "tree")])
    assert any(k == "bad" and "unclosed '{'" in why for k, _, why in rejects)
    info = json.loads((out / DATASET_INFO).read_text())
    assert set(info) == {NAMES[t] for t in ("vanilla", "tree", "can")}


def test_prediction_tasks_on_reference(reference_predictions, tmp_path):
    summary = build_task_files(tmp_path, ["error_find", "error_fix"], predictions=reference_predictions,
                               progress=False, allow_test_images=True)
    assert summary == {t: {"read": 986, "written": 159, "rejected": 827} for t in ("error_find", "error_fix")}
    find, fix = read_sharegpt(tmp_path / "error_find.json"), read_sharegpt(tmp_path / "error_fix.json")
    preds = {p["img_id"]: p for p in json.loads(reference_predictions.read_text(encoding="utf-8"))}
    gts = Counter(p["gt"] for p in preds.values() if p["gt"].split() != p["pred"].split())
    fixed = Counter()
    for f, x in zip(find, fix):
        prompt, _, pred = f["messages"][0]["value"].partition(FORMULA_SEPARATOR)
        assert prompt == IMAGE_TOKEN + ISSUE_PROMPTS["error_find"]
        marked = f["messages"][1]["value"]
        prompt, _, marked_in_fix = x["messages"][0]["value"].partition(FORMULA_SEPARATOR)
        assert prompt == IMAGE_TOKEN + ISSUE_PROMPTS["error_fix"] and marked_in_fix == marked
        log, caption = split_answer(x["messages"][1]["value"])
        assert apply_corrections(marked, log) == caption
        fixed[caption] += 1
    assert fixed == gts
    info = json.loads((tmp_path / DATASET_INFO).read_text())
    assert set(info) == {NAMES["error_find"], NAMES["error_fix"]}


def test_synthetic_edl_from_captions(caption_dir, tmp_path):
    table = [("x", "X", 3), ("+", "-", 1), ("b", "6", 1)]
    summary = build_task_files(tmp_path, ["vanilla", "error_fix"], captions=caption_dir, confusions=table,
                               progress=False)
    for s in summary.values():
        assert s["read"] == 4 == s["written"] + s["rejected"]
    assert summary["error_fix"]["written"] == 3
    with pytest.raises(ValueError, match="confusion table"):
        build_task_files(tmp_path, ["error_find"], captions=caption_dir, progress=False)


def test_bad_requests():
    with pytest.raises(ValueError, match="unknown task"):
        build_task_files("x", ["trees"], captions="c.txt")
    with pytest.raises(ValueError, match="only give"):
        build_task_files("x", ["tree"], predictions="p.json")


def test_mixture_ratios_seeded():
    rows, _ = caption_rows([(f"i{k}", f"x + {k}", f"i{k}.png") for k in range(10)], progress=False)
    mixed = mixture(rows, {"vanilla": 1.0, "tree": 0.5, "can": 2.0}, seed=1)
    prompts = Counter(r["messages"][0]["value"] for r in mixed)
    assert prompts == {IMAGE_TOKEN + ISSUE_PROMPTS["vanilla"]: 10, IMAGE_TOKEN + ISSUE_PROMPTS["tree"]: 5,
                       IMAGE_TOKEN + ISSUE_PROMPTS["can"]: 20}
    assert mixture(rows, {"tree": 0.5}, seed=1) == mixture(rows, {"tree": 0.5}, seed=1)
    assert mixture(rows, {"tree": 0.5}, seed=1) != mixture(rows, {"tree": 0.5}, seed=2)
    ds = to_dataset(mixed)
    assert len(ds) == 35 and ds.column_names == ["messages", "images"]


def test_second_run_into_the_same_folder_keeps_earlier_tasks(caption_dir, reference_predictions, tmp_path, capsys):
    out = tmp_path / "tasks"
    build_task_files(out, ["vanilla", "tree"], captions=caption_dir, progress=False)
    assert cli.main(["tasks", "--from-predictions", str(reference_predictions), "--tasks", "error_find,error_fix",
                     "--out", str(out), "--allow-test-images"]) == 0
    captured = capsys.readouterr()
    assert "error_fix: read 986 = written 159 + rejected 827" in captured.out
    assert "WARNING: " in captured.err and "986 of 986 records are images of a test split" in captured.err
    tasks_rejected = Counter(t for _, t, _ in read_task_rejects(out / TASK_REJECTS))
    assert tasks_rejected == {"vanilla": 1, "tree": 2, "error_find": 827, "error_fix": 827}
    info = json.loads((out / DATASET_INFO).read_text())
    assert set(info) == {NAMES[t] for t in ("vanilla", "tree", "error_find", "error_fix")}
    rows = {t: read_sharegpt(out / f"{t}.json") for t in ("vanilla", "tree", "error_find", "error_fix")}
    assert all(task_of(r) == t for t, task_rows in rows.items() for r in task_rows)
    lengths = target_lengths(rows)
    assert len(lengths) == 3 + 2 + 159 + 159
    assert lengths.groupby("task")["chars"].max()["vanilla"] == len(r"\frac { a } { b }")


def test_training_rows_from_test_predictions_are_refused(reference_predictions, crohme_root, tmp_path, capsys):
    out = tmp_path / "tasks"
    assert cli.main(["tasks", "--from-predictions", str(reference_predictions), "--tasks", "error_find,error_fix",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{reference_predictions}: 986 of 986 records are images of a test split" in err and "test2014" in err
    assert not out.exists()
    # captions of a prepared test split are refused too, by id and by the split folder in the image path
    split = tmp_path / "prepared" / "test2016"
    (split / "images").mkdir(parents=True)
    (split / "caption.txt").write_text("UN_101_em_0\tx + 1\n")
    Image.new("L", (8, 8), 255).save(split / "images" / "UN_101_em_0.png")
    with pytest.raises(HeldOutImageLeak, match=r"caption.txt: 1 of 1 records .*'UN_101_em_0' in test2016"):
        build_task_files(out, ["vanilla"], captions=split / "caption.txt", test_roots=[crohme_root], progress=False)
    with pytest.raises(HeldOutImageLeak, match="in test2016"):
        build_task_files(out, ["vanilla"], captions=split / "caption.txt", test_roots=[], progress=False)


def test_a_task_named_twice_is_refused_before_anything_is_written(tmp_path, capsys):
    """Issue 34 (item 12): vanilla,vanilla wrote every row twice, failed its own count check, and train used it."""
    from unimumer_lib.pipeline import cli

    split = tmp_path / "split"
    (split / "images").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (32, 16), "white").save(split / "images" / "a.png")
    (split / "caption.txt").write_text("a\tx + 1\n")
    assert cli.main(["tasks", "--captions", str(split), "--tasks", "vanilla,vanilla", "--out", str(tmp_path / "o"),
                     "--test-root", str(tmp_path / "none")]) == 2
    assert "named twice: vanilla" in capsys.readouterr().err and not (tmp_path / "o" / "vanilla.json").exists()
    # EDL from captions: a message the command line can act on (it named a Python keyword), then the option works
    assert cli.main(["tasks", "--captions", str(split), "--tasks", "error_find", "--out", str(tmp_path / "e"),
                     "--test-root", str(tmp_path / "none")]) == 2
    assert "--confusions lookalikes" in capsys.readouterr().err
    assert cli.main(["tasks", "--captions", str(split), "--tasks", "error_find,error_fix", "--confusions",
                     "lookalikes", "--out", str(tmp_path / "e2"), "--test-root", str(tmp_path / "none")]) == 0
    assert "error_find: read 1 = written 1 + rejected 0" in capsys.readouterr().out


def test_tasks_never_replaces_a_users_files_in_its_out(tmp_path):
    """Issue 34 (item 1): `tasks --out DIR` replaced the user's vanilla.json and repointed their dataset_info.json
    entry (exit 0)."""
    import json

    from PIL import Image

    from unimumer_lib.tasks.build import build_task_files

    split = tmp_path / "split"
    (split / "images").mkdir(parents=True)
    Image.new("RGB", (32, 16), "white").save(split / "images" / "a.png")
    (split / "caption.txt").write_text("a\tx + 1\n")
    mine = {"crohme_train": {"file_name": "my_data.json"}}
    for name, text in (("vanilla.json", "my own rows"), ("dataset_info.json", json.dumps(mine))):
        out = tmp_path / name.split(".")[0]
        out.mkdir()
        (out / name).write_text(text)
        with pytest.raises(FileExistsError, match=f"{name}: a file `unimumer tasks` did not write"):
            build_task_files(out, ["vanilla"], captions=split, test_roots=[], progress=False)
        assert (out / name).read_text() == text and not (out / "tree.json").exists()
    out = tmp_path / "fresh"
    build_task_files(out, ["vanilla", "tree"], captions=split, test_roots=[], progress=False)
    build_task_files(out, ["can"], captions=split, test_roots=[], progress=False)  # its own files: rebuilt beside
    assert set(json.loads((out / "dataset_info.json").read_text())) == {"crohme_train", "crohme_train_tree",
                                                                       "crohme_train_can"}
    (out / "tree.json").write_text("edited by hand")
    with pytest.raises(FileExistsError, match="tree.json: a file `unimumer tasks` did not write"):
        build_task_files(out, ["tree"], captions=split, test_roots=[], progress=False)
    assert (out / "tree.json").read_text() == "edited by hand"


def test_notebook_03_trains_the_mixture_and_seed_notebook_02_recorded(tmp_path):
    from unimumer_lib.tasks.build import mixture_settings, write_mixture

    assert mixture_settings(tmp_path) == ({}, 0)  # nothing recorded: every row, seed 0
    write_mixture(tmp_path, {"tree": 0.5}, 7)
    assert mixture_settings(tmp_path) == ({"tree": 0.5}, 7)
    assert mixture_settings(tmp_path, {"can": 1.0}, 3) == ({"can": 1.0}, 3)  # given ones win
    assert mixture_settings(tmp_path, None, 0) == ({"tree": 0.5}, 0)
