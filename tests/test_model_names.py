"""What ``--model`` names is decided before any download: a shipped name, a checkpoint folder, a cached or reachable
hub id. A near miss gets "did you mean", a random-weight shape is refused for inference unless asked for, and every
message names what was given and why it cannot be used."""

from __future__ import annotations

import huggingface_hub
import pytest
from PIL import Image

from unimumer_lib.pipeline import cli
from unimumer_lib.models.model import ModelNotFound, check_model


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (64, 32), "white").save(path)
    return path


@pytest.fixture
def no_hub(monkeypatch):
    """The hub must not be asked: any request fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "model_info", refuse)


def _infer(capsys, *args) -> tuple[int, str]:
    code = cli.main(["infer", *args])
    return code, capsys.readouterr().err


def test_a_near_miss_of_a_shipped_name_says_did_you_mean_without_asking_the_hub(image, capsys, no_hub):
    code, err = _infer(capsys, "--model", "tinybase", "--image", str(image))
    assert code == 2 and "'tinybase'" in err and "did you mean 'tiny-base'" in err


def test_a_missing_folder_is_named_as_a_folder(image, capsys, no_hub):
    code, err = _infer(capsys, "--model", "/no/such/dir", "--image", str(image))
    assert code == 2 and "'/no/such/dir'" in err and "no such folder" in err
    code, err = _infer(capsys, "--model", "runs/sft/final", "--image", str(image))
    assert code == 2 and "no such folder" in err


def test_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path, image, capsys, no_hub):
    (tmp_path / "run").mkdir()
    code, err = _infer(capsys, "--model", str(tmp_path / "run"), "--image", str(image))
    assert code == 2 and "a folder without config.json" in err


def test_a_random_weight_shape_is_refused_for_inference_unless_asked_for(image, capsys, no_hub):
    code, err = _infer(capsys, "--model", "tiny", "--image", str(image))
    assert code == 2 and "random weights" in err and "--allow-untrained" in err
    code = cli.main(["infer", "--model", "tiny", "--allow-untrained", "--image", str(image), "--max-new-tokens", "4"])
    assert code == 0


def test_no_input_says_nothing_to_recognise(capsys, no_hub):
    code, err = _infer(capsys, "--model", "tiny-base")
    assert code == 2 and "nothing to recognise" in err


def test_a_hub_id_offline_and_not_cached_fails_at_once(monkeypatch, no_hub):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFound, match="not in the local hub cache"):
        check_model("someorg/some-model")


def test_an_unreachable_hub_is_asked_once_and_named(monkeypatch):
    calls = []

    def unreachable(name, timeout=None):
        calls.append((name, timeout))
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelNotFound, match="cannot be reached .*ConnectionError"):
        check_model("someorg/some-model")
    assert len(calls) == 1 and calls[0][1] <= 15


def test_shipped_names_folders_and_training_shapes_pass(tmp_path, no_hub):
    check_model("tiny-base")
    check_model("tiny")  # training from a random shape is fine
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    check_model(tmp_path / "ckpt", inference=True)
