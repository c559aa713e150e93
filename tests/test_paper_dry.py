"""`unimumer reproduce --profile paper-dry` on slices of real CROHME: every stage of the paper pipeline.

Sizes (profile ``paper-dry``): the first 30 InkML files of train, test2014 and test2016; k=2 mining folds; the
tiny offline model; five arms. The tables are checked for shape and against the prediction files, not for
accuracy. The run also gets a made-up HME100K root (12 train + 6 test JPEGs rendered from CROHME train inks,
``caption.txt`` lines ``<id>.jpg\t<caption>`` and ``<split>_images/`` as HME100K ships them): the main arm is
trained on its train split too and tested on its test split, the main table's HME100K column.
"""

from __future__ import annotations

import ast
import json
import shutil

import pytest

from unimumer_lib.pipeline import cli, reproduce
from unimumer_lib.pipeline import profiles
from unimumer_lib.evaluation import metrics
from unimumer_lib.formats.families import FAMILIES
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.formats.predictions import read_predictions
from unimumer_lib.formats.records import read_captions
from unimumer_lib.formats.sharegpt import read_sharegpt
from unimumer_lib.evaluation.report import HEADERS, prediction_path, read_table_csv
from unimumer_lib.data.splits import held_out_index
from unimumer_lib.tasks.build import EDL_TASKS

PROFILE = "paper-dry"
TESTS = {"test2014": "CROHME 2014", "test2016": "CROHME 2016"}
HME100K = next(iter(FAMILIES["hme100k"].tests))  # the main-table column
HME100K_SIZES = {"train": 12, "test": 6}


def run(out, crohme_root, capsys, profile=PROFILE, hme100k=None):
    code = cli.main(["reproduce", "--profile", profile, "--data", str(crohme_root), "--out", str(out)]
                    + (["--data-hme100k", str(hme100k)] if hme100k else []))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def hme100k_root(tmp_path_factory, crohme_root):
    """An HME100K-style root: train/ and test/, each caption.txt (``train_0.jpg\t<caption>``) + <split>_images/."""
    root = tmp_path_factory.mktemp("hme100k")
    records = sample_caption_set(crohme_root / "train", root / "rendered", n=sum(HME100K_SIZES.values()), height=48,
                                 seed=7)
    for split, n in HME100K_SIZES.items():
        picked, records = records[:n], records[n:]
        (root / split / f"{split}_images").mkdir(parents=True)
        lines = []
        for i, r in enumerate(picked):
            r.image.convert("RGB").save(root / split / f"{split}_images" / f"{split}_{i}.jpg", quality=90)
            lines.append(f"{split}_{i}.jpg\t{r.caption}\n")
        (root / split / "caption.txt").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, crohme_root, hme100k_root):
    out = tmp_path_factory.mktemp("paper_dry")
    assert cli.main(["reproduce", "--profile", PROFILE, "--data", str(crohme_root), "--out", str(out),
                     "--data-hme100k", str(hme100k_root)]) == 0
    return out


def scores(path):
    preds = read_predictions(path)
    return metrics.score([p.gt for p in preds], [p.pred for p in preds]).as_dict()


def test_every_arm_predicted_every_test_split(run_dir):
    for arm in profiles.ARMS:
        for test in TESTS:
            preds = read_predictions(prediction_path(run_dir / "predictions", arm, test))
            ids = read_captions(run_dir / "prepared" / test / "caption.txt")
            assert sorted(p.img_id for p in preds) == sorted(ids)
            assert len(ids) == profiles.PROFILES[PROFILE].sample_size


def test_main_table_agrees_with_the_prediction_files(run_dir):
    main = read_table_csv(run_dir / "tables" / "main.csv")
    for label in TESTS.values():
        assert {f"{label} {HEADERS[k]}" for k in ("exprate", "le1", "le2")} <= set(main.columns)
    assert "Uni-MuMER-3B" in main.index  # published rows come first
    for arm in profiles.ARMS:
        row = main.loc[profiles.arm_model_name(PROFILE, arm)]
        for test, label in TESTS.items():
            expected = scores(prediction_path(run_dir / "predictions", arm, test))
            for key in ("exprate", "le1", "le2"):
                assert row[f"{label} {HEADERS[key]}"] == pytest.approx(expected[key], abs=1e-4)
    assert "ours (paper-dry, all)" in (run_dir / "tables" / "main.md").read_text()
    assert r"$\leq$1" in (run_dir / "tables" / "main.tex").read_text()


def test_main_table_has_the_hme100k_column_of_the_main_arm(run_dir, hme100k_root):
    preds = read_predictions(prediction_path(run_dir / "predictions", profiles.MAIN_ARM, profiles.HME100K_SPLIT))
    ids = [line.split("\t")[0].removesuffix(".jpg")
           for line in (hme100k_root / "test" / "caption.txt").read_text().splitlines()]
    assert sorted(p.img_id for p in preds) == sorted(ids)
    main = read_table_csv(run_dir / "tables" / "main.csv")
    expected = scores(prediction_path(run_dir / "predictions", profiles.MAIN_ARM, profiles.HME100K_SPLIT))
    row = main.loc[profiles.arm_model_name(PROFILE, profiles.MAIN_ARM)]
    for key in ("exprate", "le1", "le2"):
        assert row[f"{HME100K} {HEADERS[key]}"] == pytest.approx(expected[key], abs=1e-4)
    assert main.loc[profiles.arm_model_name(PROFILE, "vanilla"), f"{HME100K} ExpRate"] != \
        main.loc[profiles.arm_model_name(PROFILE, "vanilla"), f"{HME100K} ExpRate"]  # NaN: CROHME arms only
    assert main.loc["Uni-MuMER-3B", f"{HME100K} ExpRate"] > 0  # the published row fills the same column


def test_hme100k_model_trained_on_hme100k_train_only(run_dir, hme100k_root):
    train_images = {str(p) for p in (run_dir / "hme100k_prepared" / "train" / "images").glob("*.jpg")}
    assert len(train_images) == HME100K_SIZES["train"]
    book = json.loads((run_dir / "notebooks" / "03_sft_trl.hme100k-all.ipynb").read_text())
    cell = next(c for c in book["cells"] if "mixture_counts" in "".join(c["source"]))
    counts = ast.literal_eval("".join(cell["outputs"][-1]["data"]["text/plain"]))
    assert set(counts) == set(profiles.arm_tasks(profiles.MAIN_ARM)) and all(counts.values())
    for task in profiles.arm_tasks(profiles.MAIN_ARM):
        rows = read_sharegpt(run_dir / profiles.HME100K_SPLIT / "tasks" / f"{task}.json")
        assert rows and {img for r in rows for img in r["images"]} <= train_images


def test_hme100k_root_without_test_captions_is_refused(tmp_path, crohme_root, hme100k_root, capsys):
    (tmp_path / "hme").mkdir()
    (tmp_path / "hme" / "train").symlink_to(hme100k_root / "train")
    code, log = run(tmp_path / "out", crohme_root, capsys, hme100k=tmp_path / "hme")
    assert code == 2 and "no test/caption.txt" in log and not (tmp_path / "out").exists()


def test_ablation_table_has_the_five_arms(run_dir):
    ablation = read_table_csv(run_dir / "tables" / "ablation.csv")
    assert list(ablation.index) == list(profiles.ARMS)
    metrics = ("exprate", "le1", "le2")
    assert list(ablation.columns) == [f"{label} {HEADERS[k]}" for label in TESTS.values() for k in metrics]
    for arm in profiles.ARMS:
        for test, label in TESTS.items():
            expected = scores(prediction_path(run_dir / "predictions", arm, test))
            for key in metrics:
                assert ablation.loc[arm, f"{label} {HEADERS[key]}"] == pytest.approx(expected[key], abs=1e-4)


def test_edl_rows_are_mined_from_training_images_only(run_dir, crohme_root):
    train_images = {str(p) for p in (run_dir / "prepared" / "train" / "images").glob("*.png")}
    test_ids = held_out_index([crohme_root])
    assert set(test_ids.values()) == set(TESTS)
    for task in EDL_TASKS:
        rows = read_sharegpt(run_dir / "tasks" / f"{task}.json")
        images = [img for r in rows for img in r["images"]]
        assert images and set(images) <= train_images
        assert not any(part.startswith("test") for img in images for part in img.split("/")[-3:-1])
    mined = json.loads((run_dir / "mining" / "mined_predictions.json").read_text())
    assert {row["fold"] for row in mined} == set(range(profiles.PROFILES[PROFILE].paper.mining.k))
    assert not {row["img_id"] for row in mined} & set(test_ids)


def test_each_arm_trained_on_its_tasks(run_dir):
    for arm in profiles.ARMS:
        book = json.loads((run_dir / "notebooks" / f"03_sft_trl.{arm}.ipynb").read_text())
        cell = next(c for c in book["cells"] if "mixture_counts" in "".join(c["source"]))
        counts = ast.literal_eval("".join(cell["outputs"][-1]["data"]["text/plain"]))
        assert set(counts) == set(profiles.arm_tasks(arm)) and all(counts.values())
    assert (run_dir / "figures" / "all" / "test2016" / "exprate_by_structure.png").stat().st_size > 2000
    assert (run_dir / "figures" / "all" / "test2014" / "exprate_by_length.png").stat().st_size > 2000


def test_rerun_retrains_nothing_and_resumes_at_the_first_unfinished_step(run_dir, crohme_root, hme100k_root, capsys):
    finals = {arm: (run_dir / "sft" / arm / "final" / "model.safetensors").stat().st_mtime_ns
              for arm in profiles.ARMS}
    state = json.loads((run_dir / reproduce.RUN_FILE).read_text())
    del state["done"]["tables"]  # as if the run had been interrupted while writing the tables
    (run_dir / reproduce.RUN_FILE).write_text(json.dumps(state))
    code, log = run(run_dir, crohme_root, capsys, hme100k=hme100k_root)
    assert code == 0
    for arm in profiles.ARMS:
        assert f"03_sft_trl.ipynb [{arm}]: finished earlier with the same parameters, not retrained" in log
    assert "03_sft_trl.ipynb [hme100k-all]: finished earlier with the same parameters, not retrained" in log
    ran = [line for line in log.splitlines() if line.startswith("[reproduce:") and "finished earlier" not in line]
    assert ran == ["[reproduce:paper-dry] 04_inference_evaluation.ipynb [tables]",
                   f"[reproduce:paper-dry] done: tables in {run_dir / 'tables'}, figures in {run_dir / 'figures'}"]
    assert finals == {arm: (run_dir / "sft" / arm / "final" / "model.safetensors").stat().st_mtime_ns
                      for arm in profiles.ARMS}


def test_another_profile_into_the_same_folder_is_refused(run_dir, crohme_root, hme100k_root, capsys):
    code, log = run(run_dir, crohme_root, capsys, profile="ci", hme100k=hme100k_root)
    assert code == 2
    assert "paper profile" in log  # --data-hme100k needs the paper pipeline
    code, log = run(run_dir, crohme_root, capsys, profile="ci")
    assert code == 2
    assert f"{run_dir}: holds a run of profile 'paper-dry'" in log and "now 'ci'" in log


def test_another_hme100k_root_into_the_same_folder_is_refused(run_dir, crohme_root, hme100k_root, tmp_path,
                                                             capsys):
    shutil.copytree(hme100k_root, tmp_path / "other")  # the same files elsewhere: another run's data
    code, log = run(run_dir, crohme_root, capsys, hme100k=tmp_path / "other")
    assert code == 2 and "differs in data_hme100k: there" in log and str(tmp_path / "other") in log
    assert json.loads((run_dir / reproduce.RUN_FILE).read_text())["profile"] == PROFILE


def test_per_length_exprate_is_written_for_every_test_split(run_dir):
    import pandas as pd

    for test in TESTS:
        table = pd.read_csv(run_dir / "analysis" / test / "exprate_by_length.csv")
        assert list(table.columns) == ["bucket", "n", "exprate"]
        assert table["n"].sum() == profiles.PROFILES[PROFILE].sample_size


def test_notebook05_compares_the_main_arm_with_vanilla(run_dir):
    import nbformat

    from unimumer_lib.evaluation.compare import compare
    from unimumer_lib.formats.predictions import read_predictions

    for test in TESTS:
        nb = nbformat.read(run_dir / "notebooks" / f"05_error_analysis.{test}.ipynb", as_version=4)
        printed = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        preds = run_dir / "predictions"
        result = compare(read_predictions(preds / "vanilla" / f"{test}.json"),
                         read_predictions(preds / profiles.MAIN_ARM / f"{test}.json"))
        shown = next(line for line in printed.splitlines() if line.endswith("fixed by B"))
        assert shown.startswith(f"{result.fixed} samples")
