"""The README's runnable examples run: the Hugging Face datasets / parquet export on a prepared split."""

from __future__ import annotations

import re

import pandas as pd

from unimumer_lib.core import paths
from unimumer_lib.data.prepare import prepare_crohme

README = (paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")


def python_block(heading: str) -> str:
    section = README[README.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_export_example_runs_on_a_prepared_split(crohme_root, tmp_path, monkeypatch, capsys):
    prepare_crohme(crohme_root, tmp_path / "data" / "crohme", splits=["test2014"], limit=6, height=32, workers=1)
    code = python_block("## Export: Hugging Face").replace('"data/crohme/train"', '"data/crohme/test2014"')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert "num_rows: 6" in capsys.readouterr().out
    frame = pd.read_parquet(tmp_path / "exports" / "crohme_train.parquet")
    assert len(frame) == 6 and frame["image"].map(lambda im: im["bytes"][:4] == b"\x89PNG").all()
