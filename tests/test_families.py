"""The benchmark-family table: test-set names -> main-table columns, the README table that documents it, and a
made-up official prompt JSON with jpg images for each family through `unimumer infer` and the widget."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from unimumer_lib.pipeline import cli
from unimumer_lib.core import paths
from unimumer_lib.evaluation import widgets
from unimumer_lib.formats.families import FAMILIES, LAYOUTS, dataset_label, family_of
from unimumer_lib.models.hubfixture import build_fixture
from unimumer_lib.inference.infer import load_for_inference, predict
from unimumer_lib.latex.published import STYLES
from unimumer_lib.formats.predictions import Prediction, read_predictions
from unimumer_lib.formats.records import load_records


@pytest.mark.parametrize("name, label", [
    ("test2014", "CROHME 2014"), ("crohme_2016_pred", "CROHME 2016"), ("CROHME-2019", "CROHME 2019"),
    ("test2023", "CROHME 2023"), ("crohme_2023_results", "CROHME 2023"), ("HME100K_test", "HME100K"),
    ("im2latexv2", "Im2LaTeXv2"), ("MathWriting", "MathWriting"), ("mne_N3", "MNE N3"),
    ("test", None), ("train", None), ("crohme", None),
    # the official repository's file names (results/, results_7b/): MNE subsets, normalised and _test_ files
    ("N1_pred", "MNE N1"), ("N2_pred", "MNE N2"), ("N3_pred", "MNE N3"),
    ("crohme2023_test_pred", "CROHME 2023"), ("crohme2023_test_normalized_pred", "CROHME 2023 (normalised)"),
    ("mathwriting_test_normalized_pred", "MathWriting (normalised)"), ("mathwriting_test_pred", "MathWriting"),
    ("crohme_2014_normalized_pred", None),  # CROHME 2014 has no published normalised protocol
])
def test_dataset_label(name, label):
    assert dataset_label(name) == label


def test_families_are_consistent_and_documented():
    readme = (paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(FAMILIES) == 6
    for family in FAMILIES.values():
        assert set(family.layouts) <= set(LAYOUTS) and family.normalization in (None, *STYLES)
        assert f"| `{family.name}` | {', '.join(family.tests)} | `{family.official_folder}` |" in readme
        assert all(family_of(label) is family for label in family.tests)


# One made-up official prompt JSON per family: (JSON stem, image folder under data/<official folder>/, two ids).
PROMPT_SETS = {
    "crohme": ("crohme_2014", "2014/images", ["18_em_0", "RIT_2014_30"]),
    "crohme2023": ("crohme_2023", "test/images", ["form_5_f_748_E3736", "form_234_E1867"]),
    "hme100k": ("hme100k_test", "test/images", ["test_1", "test_2"]),
    "im2latexv2": ("im2latexv2_test", "test/images", ["1a2b3c4d", "5e6f7a8b"]),
    "mathwriting": ("mathwriting_test", "test/images", ["5401968c0d9ebacb", "84a66e55b53287c0"]),
    "mne": ("mne_N1", "N1/images", ["N1_001", "N1_002"]),
}
PROMPT = ("I have an image of a handwritten mathematical expression. Please write out the expression of the formula "
          "in the image using LaTeX format.")


def prompt_json(repo, family, captions=("x ^ { 2 }", r"\frac { a } { b }")):
    stem, sub, ids = PROMPT_SETS[family.name]
    folder = repo / "data" / family.official_folder / sub
    folder.mkdir(parents=True)
    rows = []
    for key, caption in zip(ids, captions):
        Image.new("RGB", (64, 32), "white").save(folder / f"{key}.jpg")
        rows.append({"messages": [{"role": "user", "content": "<image>" + PROMPT},
                                  {"role": "assistant", "content": caption}],
                     "images": [f"./data/{family.official_folder}/{sub}/{key}.jpg"]})
    path = repo / "data" / f"{stem}.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_every_family_prompt_json_reads_through_infer_and_the_widget(tmp_path, capsys):
    """`unimumer infer` itself on the first family; the others through the same ``infer.predict`` with the model
    loaded once (loading the checkpoint is what costs time on a busy CPU)."""
    assert set(PROMPT_SETS) == set(FAMILIES)
    hub = build_fixture()
    repo = tmp_path / "repo"
    model = None
    for family in FAMILIES.values():
        path = prompt_json(repo, family)
        assert family_of(dataset_label(path.stem)) is family
        out = tmp_path / f"{path.stem}_pred.json"
        if model is None:
            assert cli.main(["infer", "--model", str(hub), "--data", str(path), "--root", str(repo), "--out",
                             str(out), "--max-new-tokens", "3", "--batch-size", "2"]) == 0
            model, processor = load_for_inference(hub)
        else:
            predict(model, processor, load_records(path, repo), out, batch_size=2, max_new_tokens=3, progress=False)
        preds = read_predictions(out)
        assert [(p.img_id, p.gt) for p in preds] == list(zip(PROMPT_SETS[family.name][2],
                                                             ["x ^ { 2 }", r"\frac { a } { b }"]))
        assert all(p.image_path.endswith(".jpg") for p in preds)
        wrong = [Prediction(p.img_id, p.gt, p.gt + " +", image_path="/nowhere.jpg") for p in preds]
        ins = widgets.inspector(wrong, data=path, root=repo, page_size=10)
        assert ins.html.count("data:image/jpeg;base64,") == 2, family.name
    capsys.readouterr()
