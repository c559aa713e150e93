"""Learnability gates: does a model do each auxiliary task under that task's own prompt?

A multi-task arm whose auxiliary tasks are not learned trains on noise, so its table row measures a broken recipe,
not the method. For each auxiliary task the gate reads the model's outputs on test images, greedily:

- **well-formed**: the share of outputs in the task's format: a Tree-CoT that parses (``tree.parse_tree_text``) then
  a LaTeX line; a count line that parses (``sym: n, ...``) then a LaTeX line; an ``error_find`` output whose marks
  pair up and whose unmarked tokens are the given formula; an ``error_fix`` log that parses (``edl.parse_log``)
  then a LaTeX line;
- **ExpRate** of the LaTeX read from those outputs (``taskspec.extract_answer``), beside the same model's ExpRate
  under the vanilla prompt;
- for EDL, on wrong transcriptions made from the ground truth with look-alike errors (``edl.LOOKALIKES``, seeded):
  the share of ``error_find`` outputs equal to the marked formula and of ``error_fix`` corrections equal to the
  ground truth (**exact**).

``BARS`` are the bars an arm must clear; ``misses`` says which a result misses.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..tasks.spec import ANSWER_SEPARATOR, BASE_TASK, FORMULA_SEPARATOR, PROMPTS, extract_answer, token_budget

AUX_TASKS = ("tree", "can", "error_find", "error_fix")
BARS = {"well_formed": 90.0, "exprate_gap": 10.0, "error_fix_exact": 30.0}  # percent / points
_COUNT_ITEM = re.compile(r"^\S+: \d+$")


@dataclass(frozen=True)
class Gate:
    """One task's gate on ``n`` images (percentages); ``exprate`` is None for error_find (its output is a marked
    formula, not a reading), ``exact`` None for the caption tasks."""

    task: str
    n: int
    well_formed: float
    exprate: float | None
    vanilla_exprate: float
    exact: float | None = None


def _reasoning_and_answer(text: str) -> tuple[str, str] | None:
    head, sep, last = text.strip().rpartition(ANSWER_SEPARATOR)
    return (head, last) if sep and head.strip() and last.strip() else None


def well_formed(task: str, text: str, given: str = "") -> bool:
    """Whether ``text`` is in ``task``'s output format (``given``: the formula an EDL prompt carried)."""
    from ..tasks import edl
    from ..latex.tree import TreeError, parse_tree_text

    if task not in AUX_TASKS:
        raise ValueError(f"{task!r} has no learnability gate (one of {', '.join(AUX_TASKS)})")
    if task == "error_find":
        toks, plain, open_mark = text.split(), [], False
        for t in toks:
            if t == edl.ERROR_START:
                if open_mark:
                    return False
                open_mark = True
            elif t == edl.ERROR_END:
                if not open_mark:
                    return False
                open_mark = False
            elif t != edl.DELETED:
                plain.append(t)
        return not open_mark and plain == given.split()
    parts = _reasoning_and_answer(text)
    if parts is None:
        return False
    head = parts[0]
    try:
        if task == "tree":
            parse_tree_text(head)
        elif task == "can":
            if not all(_COUNT_ITEM.match(item) for item in head.split(", ")):
                return False
        else:
            edl.parse_log(head)
    except (TreeError, ValueError):
        return False
    return True


def reading(task: str, text: str) -> str:
    """The LaTeX an output of ``task`` ends with: error_fix's corrected formula is its last line (the registry reads
    error_fix's whole output, log included); the others as ``taskspec.extract_answer`` reads them."""
    if task == "error_fix":
        return extract_answer(text.strip().rpartition(ANSWER_SEPARATOR)[2], BASE_TASK)
    return extract_answer(text, task)


def wrong_transcriptions(captions: list[str], seed: int = 0) -> list[tuple[str, str, str] | None]:
    """(wrong, marked, log) per caption, from 1-2 look-alike errors (None where no confusion applies)."""
    from ..tasks import edl

    rng, out = random.Random(seed), []
    for caption in captions:
        wrong = edl.inject_errors(caption, edl.LOOKALIKES, rng, max_edits=2)
        out.append(None if wrong is None else (wrong, *edl.edl_targets(caption, wrong)))
    return out


def _outputs(model, processor, images: list, prompts: list[str], task: str, batch_size: int,
             max_new_tokens: int | None = None) -> list[str]:
    from ..inference.infer import decoding, generate

    settings = decoding(processor.tokenizer, task=task, max_new_tokens=token_budget(task, max_new_tokens))
    out = []
    for i in range(0, len(images), batch_size):
        out += [t[0] for t in generate(model, processor, images[i:i + batch_size], prompts[i:i + batch_size],
                                       settings)]
    return out


def measure(model, processor, records: list, out: str | Path | None = None, tasks=AUX_TASKS,
            batch_size: int = 16, seed: int = 0, max_new_tokens: int | None = None) -> dict[str, Gate]:
    """The gates of ``tasks`` on ``records`` (captioned images); every output is written to ``out`` (JSON) when
    given. Unreadable images are left out of every task alike. ``max_new_tokens``: the run's vanilla budget, each
    task's scaled from it (``taskspec.token_budget``); None: the registered budgets."""
    from ..inference.infer import open_checked
    from .metrics import score

    opened = [(r, im) for r in records for im, why in [open_checked(r)] if not why]
    images, gts = [im for _, im in opened], [r.caption for r, _ in opened]
    outputs = {BASE_TASK: _outputs(model, processor, images, [PROMPTS[BASE_TASK]] * len(images), BASE_TASK,
                                   batch_size, max_new_tokens)}
    vanilla = score(gts, [extract_answer(t, BASE_TASK) for t in outputs[BASE_TASK]]).exprate
    wrong = wrong_transcriptions(gts, seed)
    edl_idx = [i for i, w in enumerate(wrong) if w is not None]
    gates = {}
    for task in tasks:
        idx = edl_idx if task in ("error_find", "error_fix") else list(range(len(images)))
        given = [wrong[i][0 if task == "error_find" else 1] for i in idx] if task in ("error_find", "error_fix") \
            else [""] * len(idx)
        prompts = [PROMPTS[task] + (FORMULA_SEPARATOR + g if g else "") for g in given]
        texts = _outputs(model, processor, [images[i] for i in idx], prompts, task, batch_size, max_new_tokens)
        outputs[task] = texts
        formed = 100.0 * sum(well_formed(task, t, g) for t, g in zip(texts, given)) / max(1, len(idx))
        if task == "error_find":
            exact = 100.0 * sum(t.split() == wrong[i][1].split() for t, i in zip(texts, idx)) / max(1, len(idx))
            gates[task] = Gate(task, len(idx), formed, None, vanilla, exact)
            continue
        read = [reading(task, t) for t in texts]
        rate = score([gts[i] for i in idx], read).exprate if idx else 0.0
        gates[task] = Gate(task, len(idx), formed, rate, vanilla, rate if task == "error_fix" else None)
    if out is not None:
        from ..core.files import atomic_write_text

        atomic_write_text(Path(out), json.dumps({"gates": {t: asdict(g) for t, g in gates.items()},
                                                 "ids": [r.id for r, _ in opened], "outputs": outputs},
                                                ensure_ascii=False, indent=1) + "\n")
    return gates


def misses(gates: dict[str, Gate]) -> list[str]:
    """The bars (``BARS``) the gates miss, one line each; [] when every gate holds."""
    misses = []
    for task, g in gates.items():
        if g.well_formed < BARS["well_formed"]:
            misses.append(f"{task}: {g.well_formed:.1f} % well-formed outputs (bar {BARS['well_formed']:g} %)")
        if g.exprate is not None and g.vanilla_exprate - g.exprate > BARS["exprate_gap"]:
            misses.append(f"{task}: ExpRate {g.exprate:.1f} read from its outputs, {g.vanilla_exprate:.1f} under the "
                          f"vanilla prompt (bar: within {BARS['exprate_gap']:g} points)")
        if task == "error_fix" and g.exact < BARS["error_fix_exact"]:
            misses.append(f"error_fix: {g.exact:.1f} % exact corrections (bar {BARS['error_fix_exact']:g} %)")
    return misses


GATES_FILE = "gates.json"  # beside an arm's results: its gates and every output they read


def measure_split(model_path, split: str | Path, out: str | Path, n: int, batch_size: int = 16,
                  seed: int = 0, max_new_tokens: int | None = None) -> dict[str, Gate]:
    """The gates of the model at ``model_path`` on the first ``n`` records of a prepared split, written to ``out``
    (``GATES_FILE``); ``max_new_tokens`` as in ``measure``."""
    from ..inference.infer import load_for_inference
    from ..models.model import resolve_model_path
    from ..formats.records import load_records

    records = load_records(Path(split))[:n]
    model, processor = load_for_inference(resolve_model_path(model_path))
    return measure(model, processor, records, out=out, batch_size=batch_size, seed=seed,
                   max_new_tokens=max_new_tokens)


def read_gates(path: str | Path) -> dict[str, Gate]:
    """The gates a ``measure(..., out=path)`` wrote."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {task: Gate(**g) for task, g in data["gates"].items()}


def table(gates_by_arm: dict[str, dict[str, Gate]]):
    """A DataFrame: one row per (arm, task) with the gate's numbers and whether it holds."""
    import pandas as pd

    rows = []
    for arm, gates in gates_by_arm.items():
        for task, g in gates.items():
            rows.append({"arm": arm, **asdict(g), "holds": not misses({task: g})})
    return pd.DataFrame(rows)
