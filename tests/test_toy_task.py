"""A task added in one place (``taskspec.register``) goes through the whole pipeline: its rows are built from real
CROHME captions, the mixture counts it, the tiny model trains on it, inference uses its prompt, budget and answer
reading, and the predictions score."""

from __future__ import annotations

import json

import pytest

from unimumer_lib.pipeline import profiles
from unimumer_lib.tasks import spec as taskspec
from unimumer_lib.inference.infer import predict
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.evaluation.report import evaluate_files
from unimumer_lib.formats.sharegpt import read_sharegpt
from unimumer_lib.tasks.build import build_task_files
from unimumer_lib.training.train import train
from unimumer_lib.training.sftdata import load_sharegpt_dataset, mixture_counts, task_files

TOY = taskspec.TaskSpec(
    "reverse", taskspec.PROMPT_PREFIX + ". Please list its symbols from right to left, and then provide its "
    "corresponding LaTeX format.", "caption", 96, "last-line",
    target=lambda caption: " ".join(reversed(caption.split())) + taskspec.ANSWER_SEPARATOR + caption, arm="rev")


@pytest.fixture
def toy_task():
    taskspec.register(TOY)
    yield TOY
    taskspec.unregister(TOY.name)


def test_a_registered_toy_task_runs_through_tasks_train_infer_eval(toy_task, crohme_root, tmp_path):
    records = sample_caption_set(crohme_root / "train", tmp_path / "set", 6, min_tokens=3, max_tokens=8, height=48)
    summary = build_task_files(tmp_path / "tasks", ["vanilla", "reverse"], captions=tmp_path / "set" / "caption.txt",
                               test_roots=[])
    assert summary["reverse"] == {"read": 6, "written": 6, "rejected": 0}
    rows = read_sharegpt(tmp_path / "tasks" / "reverse.json")
    answer = rows[0]["messages"][1]["value"]
    assert answer.splitlines()[0] == " ".join(reversed(answer.splitlines()[1].split()))
    assert "reverse" in json.dumps(json.loads((tmp_path / "tasks" / "dataset_info.json").read_text()))

    files = task_files(tmp_path / "tasks")
    assert mixture_counts(load_sharegpt_dataset(files)) == {"vanilla": 6, "reverse": 6}
    result = train(files, model_path="tiny", out_dir=tmp_path / "run", max_steps=2, disable_tqdm=True,
                   save_steps=10**6)
    preds = predict(result.model, result.processor, records, tmp_path / "pred.json", task="reverse",
                    progress=False)
    settings = json.loads((tmp_path / "pred.json.run.json").read_text())
    assert settings["task"] == "reverse" and settings["prompt"] == TOY.prompt
    assert settings["decoding"]["max_new_tokens"] == TOY.max_new_tokens
    assert len(preds) == 6 and all("\n" not in p.pred for p in preds)  # the last line, as its spec reads it
    assert evaluate_files([tmp_path / "pred.json"])[0]["n"] == 6
    assert profiles.arm_tasks("rev") == ["vanilla", "reverse"]
    assert taskspec.extract_answer("x y\nz", "reverse") == "z"


def test_a_task_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        taskspec.register(taskspec.get("vanilla"))
    with pytest.raises(ValueError, match="needs a target"):
        taskspec.register(taskspec.TaskSpec("x", "p", "caption", 8))


TOY_EDL = taskspec.TaskSpec(
    "error_count", taskspec.PROMPT_PREFIX + " and its OCR recognition result. Please count the wrong symbols in the "
    "recognition result, and then provide the corrected LaTeX format.", "edl", 96, "last-line", arm="count",
    edl_row=lambda r: (r["pred"], f"{len(r['log'].splitlines())} errors" + taskspec.ANSWER_SEPARATOR + r["gt"]))


def test_a_registered_edl_kind_task_builds_its_rows_and_trains(crohme_root, tmp_path):
    """An EDL task added in one place: its rows come from the EDL records of wrong predictions through its spec,
    beside error_find's, the mixture counts it and the tiny model trains on it; its prompt carries the formula."""
    import random

    from unimumer_lib.formats.predictions import Prediction, write_predictions
    from unimumer_lib.tasks import edl
    from unimumer_lib.tasks.spec import FORMULA_SEPARATOR

    records = sample_caption_set(crohme_root / "train", tmp_path / "set", 8, min_tokens=3, max_tokens=8, height=48)
    rng = random.Random(0)
    wrong = [(r, edl.inject_errors(r.caption, edl.LOOKALIKES, rng, max_edits=1)) for r in records]
    preds = [Prediction(r.id, r.caption, p, r.image_path) for r, p in wrong if p]
    write_predictions(tmp_path / "pred.json", preds)
    with pytest.raises(ValueError, match="needs an edl_row"):
        taskspec.register(taskspec.TaskSpec("no_row", "x", "edl", 8))
    taskspec.register(TOY_EDL)
    try:
        summary = build_task_files(tmp_path / "tasks", ["error_find", "error_count"],
                                   predictions=tmp_path / "pred.json", test_roots=[], root=tmp_path / "set")
        assert summary["error_count"]["written"] == summary["error_find"]["written"] == len(preds) > 0
        rows = read_sharegpt(tmp_path / "tasks" / "error_count.json")
        user, answer = (m["value"] for m in rows[0]["messages"])
        given = next(p for p in preds if p.image_path and p.gt == answer.splitlines()[-1])
        assert user.endswith(TOY_EDL.prompt + FORMULA_SEPARATOR + given.pred)
        assert answer.splitlines()[0] == "1 errors"
        files = task_files(tmp_path / "tasks")
        assert mixture_counts(load_sharegpt_dataset(files, test_roots=[])) == {"error_find": len(preds),
                                                                               "error_count": len(preds)}
        result = train(files, model_path="tiny", out_dir=tmp_path / "run", max_steps=2, disable_tqdm=True,
                       save_steps=10**6, test_roots=[])
        assert result.global_step == 2 and taskspec.extract_answer("1 errors\nx", "error_count") == "x"
    finally:
        taskspec.unregister(TOY_EDL.name)
