"""Provenance: how a command knows what it wrote, and refuses what it did not write or wrote with other settings.

One protocol for every command that writes (``prepare``, ``synth``, ``infer``, ``train``, ``pretrain``,
``reproduce``): each writes a stamp (a JSON record naming the tool in ``made_by`` and the settings that made the
output) before its first output, reads it back on the next run (``read_stamp``), and then resumes or reuses what
it holds only under equal settings. The refusals are one error type, ``ProvenanceMismatch``, in two message
shapes: ``not_ours`` (output there without a stamp of this tool: never replaced) and ``other_settings`` (a stamp
of other settings, naming each difference as "there ..., now ...").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

MADE_BY = "made_by"  # the stamp field that names the tool


class ProvenanceMismatch(ValueError):
    """A folder or file holds what this command did not write, or wrote with other settings."""


def read_stamp(path: Path, made_by: str) -> dict | None:
    """The stamp at ``path`` when ``made_by`` wrote it; None when there is none, it does not parse, or another
    tool wrote it (the caller decides whether that is foreign output)."""
    try:
        stamp = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get(MADE_BY) == made_by else None


def differences(held: dict, wanted: dict, keys: Iterable[str] | None = None) -> list[str]:
    """The settings (``keys``, default every key of either) whose values differ, in order."""
    keys = list(keys) if keys is not None else sorted({*held, *wanted})
    return [k for k in keys if held.get(k) != wanted.get(k)]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def other_settings(where: Path | str, what: str, held: dict, wanted: dict, remedy: str,
                   keys: Iterable[str] | None = None) -> ProvenanceMismatch:
    """The refusal of ``where``, which holds ``what`` made with other settings: "<where>: holds <what> made with
    other settings (differs in k: there X, now Y; ...); <remedy>"."""
    diff = differences(held, wanted, keys)
    detail = "; ".join(f"{k}: there {_short(held.get(k))}, now {_short(wanted.get(k))}" for k in diff[:3])
    detail += f"; and {len(diff) - 3} more" if len(diff) > 3 else ""
    return ProvenanceMismatch(f"{where}: holds {what} made with other settings (differs in {detail}); {remedy}")


def not_ours(where: Path | str, tool: str, stamp: str, remedy: str, found: str = "") -> ProvenanceMismatch:
    """The refusal of ``where``, which holds output ``tool`` did not write (no ``stamp`` of it): "<where>: not
    made by <tool> (no <stamp>[; found ...]); it is never replaced: <remedy>"."""
    seen = f"; found {found}" if found else ""
    return ProvenanceMismatch(f"{where}: not made by {tool} (no {stamp} of it{seen}); it is never replaced: {remedy}")
