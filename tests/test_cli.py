"""The console script: every subcommand and option says what it is for."""

from __future__ import annotations

import pytest

from unimumer_lib.pipeline import cli
from unimumer_lib.pipeline.cli import build_parser


def test_every_option_has_help_text():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"prepare", "tasks", "train", "infer", "eval", "compare", "pretrain", "reproduce"} <= set(commands)
    missing = [(name, action.option_strings or action.dest) for name, sub in commands.items()
               for action in sub._actions if action.dest != "help" and not action.help]
    assert missing == []


@pytest.mark.parametrize("argv,option", [
    (["infer", "--model", "tiny-base", "--data", "x", "--out", "p.json", "--batch-size", "-1"], "--batch-size"),
    (["infer", "--model", "tiny-base", "--data", "x", "--out", "p.json", "--batch-size", "0"], "--batch-size"),
    (["infer", "--model", "tiny-base", "--image", "x.png", "--num-beams", "0"], "--num-beams"),
    (["infer", "--model", "tiny-base", "--image", "x.png", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["compare", "a.json", "b.json", "--samples", "0"], "--samples"),
    (["compare", "a.json", "b.json", "--samples", "-5"], "--samples"),
    (["synth", "--out", "o", "--seed", "-1"], "--seed"),
    (["synth", "--out", "o", "--n", "-3"], "--n"),
    (["prepare", "crohme", "--src", "s", "--out", "o", "--workers", "0"], "--workers"),
    (["pretrain", "--out", "o", "--work", "w", "--steps", "0"], "--steps"),
])
def test_a_bad_option_value_is_one_line_naming_the_option(argv, option, capsys, tmp_path, monkeypatch):
    """Issue 34 (items 9, 27, 29): such values wrote [] with exit 0, or failed deep inside numpy naming no option."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and f"argument {option}" in err[-1] and "whole number >=" in err[-1]
    assert not list(tmp_path.iterdir())  # nothing written


def test_version_is_the_packages_and_the_citation_file_names_it(capsys):
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"unimumer {version}"
    citation = (root / "CITATION.cff").read_text()
    assert f"version: {version}" in citation and "cff-version: 1.2.0" in citation
    assert "Uni-MuMER" in citation and (root / "CHANGELOG.md").read_text().startswith("# Changelog")
