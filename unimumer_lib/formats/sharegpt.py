"""LLaMA-Factory's sharegpt rows, the format of Uni-MuMER's training and prompt files: ``messages`` (``from`` /
``value`` turns, the user's starting with ``<image>``) and ``images``; reading them with a reason for each bad row,
writing them, and making one (``sharegpt_row``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.files import atomic_write_text


# LLaMA-Factory "sharegpt" layout (dataset_info: formatting=sharegpt, messages/images columns).
SHAREGPT_MESSAGES = "messages"
SHAREGPT_IMAGES = "images"
ROLE_KEY = "from"
CONTENT_KEY = "value"
ROLE_USER = "human"
ROLE_ASSISTANT = "gpt"
ROLE_SYSTEM = "system"
IMAGE_TOKEN = "<image>"


def validate_sharegpt_row(row: Any, index: int) -> None:
    """Raise ValueError naming the record index and the reason when ``row`` is not a valid sharegpt record."""
    def bad(reason: str):
        raise ValueError(f"sharegpt record {index}: {reason}")

    if not isinstance(row, dict):
        bad(f"expected an object, got {type(row).__name__}")
    messages = row.get(SHAREGPT_MESSAGES)
    if not isinstance(messages, list) or not messages:
        bad(f"'{SHAREGPT_MESSAGES}' must be a non-empty list")
    images = row.get(SHAREGPT_IMAGES, [])
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        bad(f"'{SHAREGPT_IMAGES}' must be a list of non-empty path strings")
    turns = [m for m in messages if not (isinstance(m, dict) and m.get(ROLE_KEY) == ROLE_SYSTEM)]
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {ROLE_KEY, CONTENT_KEY}:
            bad(f"message {j} must have exactly the keys '{ROLE_KEY}' and '{CONTENT_KEY}'")
        if m[ROLE_KEY] not in (ROLE_USER, ROLE_ASSISTANT, ROLE_SYSTEM):
            bad(f"message {j} has role {m[ROLE_KEY]!r}, expected {ROLE_USER!r} or {ROLE_ASSISTANT!r}")
        if not isinstance(m[CONTENT_KEY], str):
            bad(f"message {j} value must be a string")
    for j, m in enumerate(turns):
        want = ROLE_USER if j % 2 == 0 else ROLE_ASSISTANT
        if m[ROLE_KEY] != want:
            bad(f"turn {j} is {m[ROLE_KEY]!r}, expected {want!r} (turns alternate, starting with {ROLE_USER!r})")
    if turns[-1][ROLE_KEY] != ROLE_ASSISTANT:
        bad(f"last turn must be {ROLE_ASSISTANT!r}")
    placeholders = sum(m[CONTENT_KEY].count(IMAGE_TOKEN) for m in messages)
    if placeholders != len(images):
        bad(f"{placeholders} {IMAGE_TOKEN} placeholders but {len(images)} images")


def read_json_list(path) -> list:
    """A JSON file holding a list; errors name the file and where the JSON breaks."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def read_sharegpt(path) -> list[dict]:
    """Read and validate a sharegpt JSON list; errors name the file, record index and reason."""
    path = Path(path)
    rows = read_json_list(path)
    for i, row in enumerate(rows):
        try:
            validate_sharegpt_row(row, i)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return rows


def write_sharegpt(path, rows: list[dict]) -> Path:
    """Validate every row, then write the JSON list atomically."""
    for i, row in enumerate(rows):
        validate_sharegpt_row(row, i)
    return atomic_write_text(path, json.dumps(rows, ensure_ascii=False, indent=1) + "\n")


def sharegpt_row(prompt: str, answer: str, images: list[str]) -> dict:
    """One single-turn record; the prompt gets one ``<image>`` placeholder per image if it lacks them."""
    if prompt.count(IMAGE_TOKEN) != len(images):
        prompt = IMAGE_TOKEN * len(images) + prompt
    return {SHAREGPT_MESSAGES: [{ROLE_KEY: ROLE_USER, CONTENT_KEY: prompt},
                                {ROLE_KEY: ROLE_ASSISTANT, CONTENT_KEY: answer}],
            SHAREGPT_IMAGES: list(images)}


# Its rows are sharegpt with OpenAI-style keys ({"role", "content"}); ours use {"from", "value"}. Both are read.
ROLE_KEYS = (ROLE_KEY, "role")
CONTENT_KEYS = (CONTENT_KEY, "content")
ASSISTANT_ROLES = (ROLE_ASSISTANT, "assistant")


def message_field(message: dict, keys: tuple[str, ...]):
    return next((message[k] for k in keys if k in message), None)
