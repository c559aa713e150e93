"""Every lower bound in requirements.txt is at least what the code needs: TRL's own checks (read from the installed
TRL's source) and the floors TRL declares for its dependencies."""

from __future__ import annotations

import importlib.metadata
import inspect
import re

from packaging.requirements import Requirement
from packaging.version import Version

from unimumer_lib.core.paths import REPO_ROOT


def floors() -> dict[str, Version]:
    out = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            for spec in req.specifier:
                if spec.operator in (">=", "=="):
                    out[req.name.lower()] = Version(spec.version)
    return out


def test_transformers_floor_meets_trl_assistant_only_loss_on_vision_data():
    from trl.trainer import sft_trainer

    src = inspect.getsource(sft_trainer)
    needed = re.findall(r"Assistant-only loss for vision datasets requires transformers>=(\d+(?:\.\d+)*)", src)
    assert needed, "TRL no longer states its transformers floor for vision assistant-only loss: read it again"
    assert floors()["transformers"] >= max(Version(v) for v in needed)
    # processor_kwargs (infer.generate) exists from transformers 5.4, which TRL's collator checks too
    assert 'Version("5.4.0")' in src and floors()["transformers"] >= Version("5.4.0")


def test_floors_meet_what_trl_declares():
    ours = floors()
    for line in importlib.metadata.requires("trl"):
        req = Requirement(line)
        if req.marker is not None or req.name.lower() not in ours:
            continue
        for spec in req.specifier:
            if spec.operator == ">=":
                assert ours[req.name.lower()] >= Version(spec.version), (req.name, spec.version)
