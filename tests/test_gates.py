"""Learnability gates: the format checks accept every task's own training targets and reject broken outputs; a model
that never learned the auxiliary tasks (the vanilla-only tiny base) fails their gates, and its vanilla ExpRate is
the one ``predict`` gives."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from unimumer_lib.tasks import edl
from unimumer_lib.evaluation import gates
from unimumer_lib.training import pretrain
from unimumer_lib.training import stream
from unimumer_lib.data import captions
from unimumer_lib.inference.infer import exprate, predict
from unimumer_lib.models.model import load_model
from unimumer_lib.tasks.spec import TASKS

CAPTIONS = captions.sample_captions(200, seed=3)


@pytest.mark.parametrize("task", ["tree", "can"])
def test_training_targets_are_well_formed(task):
    targets = []
    for c in CAPTIONS:
        try:
            targets.append(TASKS[task].target(c))
        except ValueError:  # a caption the tree cannot carry
            continue
    assert len(targets) > 150
    assert all(gates.well_formed(task, t) for t in targets)
    assert not any(gates.well_formed(task, t.rpartition("\n")[2]) for t in targets)  # the LaTeX line alone


def test_edl_targets_are_well_formed_and_broken_ones_are_not():
    made = [w for w in gates.wrong_transcriptions(CAPTIONS, seed=1) if w is not None]
    assert len(made) > 150
    for (wrong, marked, log), caption in zip(made, [c for c, w in zip(CAPTIONS, gates.wrong_transcriptions(
            CAPTIONS, seed=1)) if w is not None]):
        assert gates.well_formed("error_find", marked, given=wrong)
        assert gates.well_formed("error_fix", log + "\n" + caption)
        assert edl.apply_corrections(marked, log) == caption
    wrong, marked, log = made[0]
    assert not gates.well_formed("error_find", marked + " " + edl.ERROR_START, given=wrong)  # unclosed mark
    assert not gates.well_formed("error_find", marked + " x", given=wrong)  # not a copy of the given formula
    assert not gates.well_formed("error_fix", "1: 1, 1: 1\nx")  # not a correction log
    assert not gates.well_formed("can", "x: 1, y\nx y")
    assert not gates.well_formed("tree", "x (right) y\nx y")
    with pytest.raises(ValueError, match="no learnability gate"):
        gates.well_formed("vanilla", "x")


def test_the_latex_read_from_each_format_is_its_caption():
    caption = "\\frac { a } { b } + 1"
    for task in ("tree", "can"):
        assert gates.reading(task, TASKS[task].target(caption)) == caption
    wrong, marked, log = gates.wrong_transcriptions([caption], seed=2)[0]
    assert gates.reading("error_fix", log + "\n" + caption) == caption != gates.reading("error_fix", log + "\n" + wrong)


def test_check_names_each_missed_bar():
    ok = gates.Gate("tree", 100, 95.0, 30.0, 35.0)
    assert gates.misses({"tree": ok}) == []
    misses = gates.misses({"tree": gates.Gate("tree", 100, 50.0, 10.0, 35.0),
                          "error_fix": gates.Gate("error_fix", 80, 99.0, 20.0, 25.0, 20.0)})
    assert len(misses) == 3 and misses[0].startswith("tree: 50.0 % well-formed")
    assert "error_fix: 20.0 % exact" in misses[2]


def test_a_vanilla_only_base_fails_the_auxiliary_gates(tmp_path):
    model, processor = load_model(pretrain.BASE_NAME, dtype="float32")
    records = stream.held_out_records(tmp_path / "img", 24, offset=2000)
    result = gates.measure(model, processor, records, out=tmp_path / "gates.json", batch_size=12)
    assert set(result) == set(gates.AUX_TASKS)
    preds = predict(model, processor, records, tmp_path / "pred.json", batch_size=12, progress=False)
    assert result["tree"].vanilla_exprate == pytest.approx(100 * exprate(preds))
    assert result["tree"].well_formed < 50 and result["can"].well_formed < 50
    assert any(m.startswith("tree:") for m in gates.misses(result))
    saved = json.loads((tmp_path / "gates.json").read_text())
    assert len(saved["outputs"]["tree"]) == 24 and len(saved["outputs"]["error_fix"]) == result["error_fix"].n


def test_gates_of_a_prepared_split_are_written_and_read_back(tmp_path):
    """What notebook 04 runs per arm (``gate_images``): the gates of a model on a prepared split's first n images,
    written beside its results and read back for the gates table."""
    from PIL import Image

    from unimumer_lib.formats.records import write_comer

    records = stream.held_out_records(tmp_path / "img", 10, offset=2100)
    split = write_comer(tmp_path / "split", [replace(r, image=Image.open(r.image_path)) for r in records]).parent
    measured = gates.measure_split(pretrain.BASE_NAME, split, tmp_path / gates.GATES_FILE, n=6, batch_size=6)
    assert gates.read_gates(tmp_path / gates.GATES_FILE) == measured and measured["tree"].n == 6


def test_a_capped_run_scales_each_tasks_budget_and_its_outputs_stay_within_it(tmp_path):
    """The CPU profiles cap vanilla at 96 new tokens; a gate's looping Tree-CoT stops at the same multiple of its
    task's length instead of running to the GPU budget (2,048)."""
    from unimumer_lib.tasks.spec import MAX_NEW_TOKENS, token_budget

    assert token_budget("tree") == MAX_NEW_TOKENS["tree"]
    assert token_budget("vanilla", 96) == 96 and token_budget("tree", 96) == 96 * 4 and token_budget("can", 8) == 16
    model, processor = load_model(pretrain.BASE_NAME, dtype="float32")
    records = stream.held_out_records(tmp_path / "img", 4, offset=2200)
    gates.measure(model, processor, records, out=tmp_path / "gates.json", batch_size=4, max_new_tokens=6)
    outputs = json.loads((tmp_path / "gates.json").read_text())["outputs"]
    for task, texts in outputs.items():
        lengths = [len(processor.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        assert max(lengths) <= token_budget(task, 6), (task, lengths)
