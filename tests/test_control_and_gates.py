"""The miniature's fair-test pieces: the compute-matched control arm (vanilla rows for as many steps as the all arm),
its paired table, the per-arm learnability-gate table, and synthetic splits composed from writers the base never
saw."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from PIL import Image

from unimumer_lib.evaluation import gates, report
from unimumer_lib.pipeline import reproduce
from unimumer_lib.pipeline import runplan
from unimumer_lib.pipeline import profiles
from unimumer_lib.evaluation.compare import compare
from unimumer_lib.formats.predictions import Prediction, read_predictions, write_predictions
from unimumer_lib.formats.sharegpt import sharegpt_row, write_sharegpt
from unimumer_lib.data.synth import SYNTH_MARKER
from unimumer_lib.tasks.spec import PROMPTS
from unimumer_lib.training.train import epoch_steps


def _task_file(tmp_path, task: str, n: int):
    image = tmp_path / "img.png"
    if not image.exists():
        Image.new("RGB", (32, 16), "white").save(image)
    return write_sharegpt(tmp_path / f"{task}.json", [sharegpt_row(PROMPTS[task], f"x + {i}", [str(image)])
                                                      for i in range(n)])


def test_the_matched_arm_gets_the_all_arms_steps(tmp_path):
    files = {"vanilla": _task_file(tmp_path, "vanilla", 10), "tree": _task_file(tmp_path, "tree", 30)}
    # cpu-sft: one epoch at an effective batch of 8 -> 40 rows take 5 steps, the 10 vanilla rows alone 2
    assert epoch_steps(list(files.values()), "cpu-sft") == 5 == math.ceil(40 / 8)
    assert epoch_steps([files["vanilla"]], "cpu-sft") == 2
    assert epoch_steps(list(files.values()), "cpu-sft", ratios={"tree": 0.5}) == math.ceil(25 / 8)


def test_the_matched_arm_is_vanilla_data_with_the_all_arms_files_as_its_step_count(tmp_path):
    assert profiles.arm_tasks(profiles.MATCHED_ARM) == ["vanilla"]
    with pytest.raises(ValueError, match="name both"):
        profiles.parse_arms(["vanilla", profiles.MATCHED_ARM])
    arms = profiles.parse_arms(["vanilla", profiles.MATCHED_ARM, "all"])
    steps = {s.key: s for s in runplan.paper_steps("smoke", tmp_path, tmp_path / "raw", ["test"], arms)}
    matched = steps[f"03[{profiles.MATCHED_ARM}]"].parameters
    assert [p.rsplit("/", 1)[-1] for p in matched["train_json"]] == ["vanilla.json"]
    assert matched["steps_of"] == steps["03[all]"].parameters["train_json"]
    assert "steps_of" not in steps["03[vanilla]"].parameters
    assert profiles.MATCHED_ARM in steps["tables"].parameters["paper_arms"]


def _predictions(path, gts, preds):
    write_predictions(path, [Prediction(img_id=f"e{i}", gt=g, pred=p, image_path="") for i, (g, p) in
                             enumerate(zip(gts, preds))])


def test_paired_tables_compare_all_with_vanilla_and_with_the_matched_control(tmp_path):
    gts = [f"x ^ {i}" for i in range(10)]
    arms = {"vanilla": gts[:4] + ["y"] * 6, profiles.MATCHED_ARM: gts[:6] + ["y"] * 4, "all": gts[:5] + ["y"] * 5}
    for arm, preds in arms.items():
        (tmp_path / "preds" / arm).mkdir(parents=True)
        _predictions(tmp_path / "preds" / arm / "test.json", gts, preds)
    written = report.write_paper_tables(tmp_path / "preds", list(arms), {"test": "synthetic"},
                                       {a: a for a in arms}, tmp_path / "tables")
    assert {"ablation_paired", "ablation_paired_matched"} <= set(written)
    matched = pd.read_csv(written["ablation_paired_matched"]["csv"]).set_index("metric").loc["ExpRate"]
    plain = pd.read_csv(written["ablation_paired"]["csv"]).set_index("metric").loc["ExpRate"]
    assert matched[f"all - {profiles.MATCHED_ARM}"] == pytest.approx(50.0 - 60.0)
    assert plain["all - vanilla"] == pytest.approx(50.0 - 40.0)
    again = compare(read_predictions(tmp_path / "preds" / profiles.MATCHED_ARM / "test.json"),
                    read_predictions(tmp_path / "preds" / "all" / "test.json"), "exprate").as_row()
    assert matched["95% low"] == pytest.approx(again["95% low"], abs=1e-3) and again["95% low"] < -10.0 + 1e-9


def test_the_gate_table_has_every_arm_and_task_and_says_which_hold(tmp_path):
    made = {"zero-shot": gates.Gate("tree", 200, 12.0, 3.0, 30.0),
            "all": gates.Gate("tree", 200, 97.5, 41.0, 44.0)}
    paths = {}
    for arm, gate in made.items():
        fix = gates.Gate("error_fix", 150, 95.0, 35.0 if arm == "all" else 1.0, 44.0, 35.0 if arm == "all" else 1.0)
        paths[arm] = tmp_path / arm / gates.GATES_FILE
        paths[arm].parent.mkdir()
        paths[arm].write_text(json.dumps({"gates": {"tree": gate.__dict__, "error_fix": fix.__dict__}}))
    written = report.write_gate_table(paths, tmp_path / "tables")
    table = pd.read_csv(written["csv"]).set_index(["arm", "task"])
    assert table.loc[("all", "tree"), "holds"] and table.loc[("all", "error_fix"), "holds"]
    assert not table.loc[("zero-shot", "tree"), "holds"] and not table.loc[("zero-shot", "error_fix"), "holds"]
    assert table.loc[("all", "tree"), "well_formed"] == 97.5
    assert "zero-shot" in written["md"].read_text()


def test_synthetic_splits_are_composed_from_the_writer_groups_asked(tmp_path):
    root = reproduce.synthetic_root(tmp_path, 6, 4, writers=("finetune", "test"))
    for split, group in (("train", "finetune"), ("test", "test")):
        marker = json.loads((tmp_path / f"raw_{split}.tmp" / SYNTH_MARKER).read_text())
        assert marker["glyphs"] == "shipped" and marker["writers"] == group, split
    assert len(list((root / "test").glob("*.inkml"))) == 4


def test_p_values_print_in_scientific_notation_and_synthetic_rows_stand_apart_from_published_ones(tmp_path):
    gts = [f"x ^ {i}" for i in range(40)]
    arms = {"vanilla": gts[:30] + ["y"] * 10, "all": gts[:2] + ["y"] * 38}
    for arm, preds in arms.items():
        (tmp_path / "preds" / arm).mkdir(parents=True)
        _predictions(tmp_path / "preds" / arm / "test.json", gts, preds)
    written = report.write_paper_tables(tmp_path / "preds", list(arms), {"test": "synthetic"},
                                       {a: f"ours ({a})" for a in arms}, tmp_path / "tables")
    p = pd.read_csv(written["ablation_paired"]["csv"]).set_index("metric").loc["ExpRate", "McNemar p"]
    assert 0 < p < 1e-3  # 28 broken, 0 fixed
    row = next(line for line in written["ablation_paired"]["md"].read_text().splitlines() if "| ExpRate |" in line)
    assert row.rstrip(" |").endswith(report.format_p(p)) and "e-" in report.format_p(p) and "| 0.00 |" not in row
    assert report.format_p(p) in written["ablation_paired"]["tex"].read_text()
    main = pd.read_csv(written["main"]["csv"])  # ours only: no column in common with the published CROHME rows
    assert list(main.iloc[:, 0]) == ["ours (vanilla)", "ours (all)"] and not any("CROHME" in c for c in main.columns)
    published = pd.read_csv(written["published"]["csv"])
    assert "Uni-MuMER-3B" in set(published.iloc[:, 0]) and not any("synthetic" in c for c in published.columns)
    assert report.format_p(0.2345) == "0.234" and report.format_p(float("nan")) == "–"


def test_tables_shown_in_a_notebook_have_two_decimals_dashes_and_readable_p_values():
    import re

    table = pd.DataFrame({"structure": ["fraction", "matrix"], "n": [3, 0], "exprate": [12.3456, float("nan")],
                          "McNemar p": [1.03e-15, 0.5]})
    cells = re.findall(r">([^<>]+)</td>", report.for_display(table).to_html())
    assert cells == ["fraction", "3", "12.35", "1.0e-15", "matrix", "0", "–", "0.500"]
