"""Prediction files: round trip, clear errors naming the record, duplicate and missing ids."""

from __future__ import annotations

import json

import pytest

from unimumer_lib.formats.predictions import (KNOWN_KEYS, Prediction, duplicate_ids, missing_ids, read_columns,
                                      read_predictions, write_predictions)


def dump(tmp_path, data, name="pred.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def record(i, **over):
    return {"img_id": f"id{i}", "gt": "x ^ { 2 }", "pred": "x ^ { 2 }", "image_path": f"images/id{i}.png", **over}


def test_round_trip_keeps_extra_keys_and_unicode(tmp_path):
    preds = [Prediction("a", "\\alpha + 1", "\\alpha + l", "a.png", {"dataset": "CROHME 2014", "raw": "∑ x"}),
             Prediction("b", "x", "x")]
    path = write_predictions(tmp_path / "out" / "p.json", preds)
    back = read_predictions(path)
    assert back == preds
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert set(rows[0]) == set(KNOWN_KEYS) | {"dataset", "raw"}
    assert "∑" in path.read_text(encoding="utf-8")


def test_reference_file_reads_with_unique_ids_matching_crohme(reference_predictions, crohme_root):
    preds = read_predictions(reference_predictions)
    assert len(preds) == 986
    assert duplicate_ids(preds) == {}
    stems = sorted(p.stem for p in (crohme_root / "test2014").glob("*.inkml"))
    assert missing_ids(preds, stems) == []


def test_malformed_json_names_file_and_line(tmp_path):
    path = dump(tmp_path, '[{"img_id": "a",\n "gt": }]')
    with pytest.raises(ValueError, match=r"pred\.json: malformed JSON at line 2"):
        read_predictions(path)


def test_not_a_list(tmp_path):
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_predictions(dump(tmp_path, {"img_id": "a"}))


def test_missing_key_names_record(tmp_path):
    rows = [record(0), {k: v for k, v in record(1).items() if k != "gt"}]
    with pytest.raises(ValueError, match=r"record 1 \(img_id 'id1'\): missing key\(s\) gt"):
        read_predictions(dump(tmp_path, rows))


@pytest.mark.parametrize("bad", [None, 3, ["x"]])
def test_non_string_prediction_names_record(tmp_path, bad):
    rows = [record(0), record(1), record(2, pred=bad)]
    with pytest.raises(ValueError, match=r"record 2 \(img_id 'id2'\): 'pred' must be a string"):
        read_predictions(dump(tmp_path, rows))


def test_record_not_an_object(tmp_path):
    with pytest.raises(ValueError, match="record 1: expected an object"):
        read_predictions(dump(tmp_path, [record(0), "x"]))


def test_duplicates_reported_not_merged(tmp_path):
    rows = [record(0), record(1), record(0, pred="y")]
    path = dump(tmp_path, rows)
    with pytest.raises(ValueError, match=r"1 duplicate img_id\(s\): id0 \(x2\)"):
        read_predictions(path)
    kept = read_predictions(path, allow_duplicates=True)
    assert len(kept) == 3 and duplicate_ids(kept) == {"id0": 2}


def test_missing_ids_in_expected_order():
    preds = [Prediction("b", "x", "x")]
    assert missing_ids(preds, ["c", "b", "a"]) == ["c", "a"]


def test_write_validates(tmp_path):
    with pytest.raises(ValueError, match="'pred' must be a string"):
        write_predictions(tmp_path / "p.json", [record(0, pred=1)])


def test_image_path_is_optional(tmp_path):
    rows = [{k: v for k, v in record(0).items() if k != "image_path"}]
    assert read_predictions(dump(tmp_path, rows))[0].image_path == ""


@pytest.mark.parametrize("rows", [
    [record(0), {k: v for k, v in record(1).items() if k != "gt"}],
    [record(0), record(1), record(2, pred=None)],
    [record(0), record(1, img_id=7)],
    [record(0), "x"],
    [record(0), record(1, image_path=3)],
    [record(0), record(1), record(0, pred="y")],
    [],
])
def test_read_columns_refuses_what_read_predictions_refuses_with_the_same_message(tmp_path, rows):
    path = dump(tmp_path, rows)
    with pytest.raises(ValueError) as theirs:
        read_predictions(path)
    with pytest.raises(ValueError) as ours:
        read_columns(path)
    assert str(ours.value) == str(theirs.value)


def test_read_columns_holds_the_records_texts(reference_predictions, tmp_path):
    preds = read_predictions(reference_predictions)
    columns = read_columns(reference_predictions, ("img_id", "gt", "pred", "dataset"))
    assert columns["gt"] == [p.gt for p in preds] and columns["pred"] == [p.pred for p in preds]
    assert columns["img_id"] == [p.img_id for p in preds] and set(columns["dataset"]) == {None}
    rows = [record(0, dataset="a"), record(1, image_path=None)]
    assert read_columns(dump(tmp_path, rows), ("dataset",)) == {"dataset": ["a", None]}


def test_a_dataset_that_is_not_a_string_is_named_with_its_record(tmp_path):
    """Issue 34 (item 28): "dataset": ["l"] failed later with "unhashable type: 'list'", naming nothing."""
    import json

    from unimumer_lib.formats.predictions import read_columns, read_predictions
    from unimumer_lib.evaluation.report import evaluate_files

    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"img_id": "a", "gt": "x", "pred": "x", "dataset": "d"},
                                {"img_id": "b", "gt": "y", "pred": "y", "dataset": ["l"]}]))
    for read in (read_predictions, lambda p: read_columns(p, ("gt", "pred", "dataset")),
                 lambda p: evaluate_files([p], by_dataset=True)):
        with pytest.raises(ValueError, match=r"p\.json: record 1 \(img_id 'b'\): 'dataset' must be a string or null"):
            read(path)


def test_eval_reads_the_projects_own_prediction_files_in_a_folder(tmp_path, capsys):
    """``unimumer eval FOLDER`` on predictions/<arm>/: the ``<split>.json`` files infer wrote (beside their
    ``.run.json``), not only the official ``*_pred.json`` ones; side files are not taken for predictions."""
    from unimumer_lib.pipeline import cli
    from unimumer_lib.formats.predictions import RUN_SUFFIX, prediction_files

    arm = tmp_path / "predictions" / "all"
    arm.mkdir(parents=True)
    write_predictions(arm / "test.json", [Prediction("a", "x + 1", "x + 1"), Prediction("b", "y", "z")])
    (arm / ("test.json" + RUN_SUFFIX)).write_text("{}")
    assert prediction_files([tmp_path / "predictions"]) == [arm / "test.json"]
    assert cli.main(["eval", str(tmp_path / "predictions")]) == 0
    assert "50.00" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.json").write_text("[]")
    assert cli.main(["eval", str(tmp_path / "empty")]) == 2
    assert "holds no prediction file" in capsys.readouterr().err


def test_predictions_without_any_ground_truth_are_refused_by_eval(tmp_path, capsys):
    from unimumer_lib.pipeline import cli

    write_predictions(tmp_path / "unlabelled.json", [Prediction("a", "", "x + 1"), Prediction("b", "", "y")])
    assert cli.main(["eval", str(tmp_path / "unlabelled.json")]) == 2
    err = capsys.readouterr().err
    assert "unlabelled.json" in err and "every ground truth (gt) is empty" in err


def test_unreadable_images_are_never_scored_as_read(tmp_path, capsys):
    """Issue 34 (item 13): rejected rows (error set, pred "") of unlabelled images were exact matches: 44.44 %
    from nothing. They count as wrong in eval and compare."""
    from unimumer_lib.pipeline import cli
    from unimumer_lib.evaluation import report
    from unimumer_lib.evaluation.compare import compare

    rows = [Prediction(f"r{i}", "", "", "", {"error": f"r{i}.png: not an image file"}) for i in range(4)]
    rows += [Prediction(f"o{i}", "x + 1", "x + 1" if i < 3 else "x", "") for i in range(5)]
    write_predictions(tmp_path / "mixed.json", rows)
    for normalize in (None, "crohme"):
        assert report.evaluate_files([tmp_path / "mixed.json"], normalize=normalize)[0]["exprate"] == \
            pytest.approx(100 * 3 / 9)
    assert compare(rows, rows, "exprate").rate_a == pytest.approx(100 * 3 / 9)
    assert cli.main(["eval", str(tmp_path / "mixed.json")]) == 0 and "33.33" in capsys.readouterr().out
