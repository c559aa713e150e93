"""The task registry: every Uni-MuMER task registered once, with all that the other modules need to know of it.

A ``TaskSpec`` holds a task's name, its published prompt, its kind (``caption``: built from a caption;
``edl``: built from a model's wrong prediction), how a caption becomes its training answer, how a model's answer
is read back to LaTeX, its new-token budget, the ablation arm that adds it to vanilla, and the words of its answers
that the tiny model's tokenizer learns whole. ``register`` adds one (LLaMA-Factory's ``register_template`` is the
model); ``tasks`` (training rows), ``metrics``/``infer`` (answer extraction, budgets), ``train`` (the mixture),
``reproduce`` (arms) and ``model`` (tokenizer corpus) all read this registry, so a new task is one
``register(...)`` call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Callable

from . import edl
from ..latex import tree

PROMPT_PREFIX = "I have an image of a handwritten mathematical expression"
ANSWER_SEPARATOR = "\n"  # between the reasoning (tree, counts, correction log) and the final caption
FORMULA_SEPARATOR = "\n"  # between an EDL prompt and the formula it asks about
TASK_KINDS = ("caption", "edl")
ANSWERS = ("whole", "last-line", "tree")  # how a model's answer is read back (see extract_answer)
ARM_ORDER = ("tree", "edl", "can")  # the paper's ablation rows, in its order
BASE_TASK = "vanilla"  # the plain image -> LaTeX task: what inference runs unless told otherwise
MAIN_ARM = "all"  # the arm that trains every task
BASELINE_ARM = "vanilla"  # the arm that trains the vanilla task alone
# The compute-matched control: vanilla rows only, for as many optimizer steps as the all arm takes (several epochs
# of them), so that all - vanilla-matched is the auxiliary tasks' effect at equal compute, not more steps.
MATCHED_ARM = "vanilla-matched"
AUTO = "auto"  # extract_answer's default: the last line, or the Tree-CoT turned back into LaTeX


@dataclass(frozen=True)
class TaskSpec:
    name: str
    prompt: str  # the published prompt, byte-exact
    kind: str  # one of TASK_KINDS
    max_new_tokens: int  # generation budget in Qwen tokens, about 2x or more the longest target
    answer: str = "whole"  # one of ANSWERS
    target: Callable[[str], str] | None = None  # caption -> assistant answer (caption tasks)
    # EDL tasks: an ``edl.edl_records`` record (gt, pred, marked, log, image) -> (the formula the prompt carries
    # after FORMULA_SEPARATOR, the assistant answer)
    edl_row: Callable[[dict], tuple[str, str]] | None = None
    arm: str | None = None  # the ablation arm that adds this task to vanilla (None: vanilla itself)
    vocabulary: tuple[str, ...] = ()  # answer words the tiny model's tokenizer learns as whole tokens


TASKS = {}  # the registry: name -> TaskSpec, in registration order


class _View(Mapping):
    """{task name: one field of its spec}, always as registered now."""

    def __init__(self, field: str):
        self.field = field

    def __getitem__(self, name: str):
        return getattr(TASKS[name], self.field)

    def __iter__(self):
        return iter(TASKS)

    def __len__(self) -> int:
        return len(TASKS)

    def __repr__(self) -> str:
        return repr(dict(self))


PROMPTS = _View("prompt")  # {task: its published prompt}
MAX_NEW_TOKENS = _View("max_new_tokens")  # {task: its new-token budget}


def token_budget(task: str, vanilla_budget: int | None = None) -> int:
    """``task``'s new-token budget: its registered one, or, when a run caps the vanilla budget (the CPU profiles'
    96), that cap scaled by the task's budget over vanilla's (a Tree-CoT gets 4x a caption's), so a looping output
    stops at the same multiple of its task's length."""
    if vanilla_budget is None:
        return MAX_NEW_TOKENS[task]
    return max(1, round(vanilla_budget * MAX_NEW_TOKENS[task] / MAX_NEW_TOKENS["vanilla"]))


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task (its name must be new, its kind and answer mode known)."""
    if spec.name in TASKS or spec.name == AUTO:
        raise ValueError(f"task {spec.name!r} is already registered")
    if spec.kind not in TASK_KINDS or spec.answer not in ANSWERS:
        raise ValueError(f"task {spec.name!r}: kind must be one of {TASK_KINDS}, answer one of {ANSWERS}")
    if spec.kind == "caption" and spec.target is None:
        raise ValueError(f"caption task {spec.name!r} needs a target (caption -> answer)")
    if spec.kind == "edl" and spec.edl_row is None:
        raise ValueError(f"EDL task {spec.name!r} needs an edl_row (EDL record -> (given formula, answer))")
    TASKS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a task registered for a while (a test's toy task)."""
    TASKS.pop(name)


def get(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def names(kind: str | None = None) -> tuple[str, ...]:
    """The registered task names (of one kind), in registration order."""
    return tuple(n for n, s in TASKS.items() if kind is None or s.kind == kind)


def arms() -> dict[str, tuple[str, ...]]:
    """{arm: the tasks it adds to vanilla}: the paper's ablation order (ARM_ORDER), then any other arm in
    registration order."""
    out: dict[str, tuple[str, ...]] = {arm: () for arm in ARM_ORDER}
    for n, s in TASKS.items():
        if s.arm:
            out[s.arm] = out.get(s.arm, ()) + (n,)
    return {arm: tasks for arm, tasks in out.items() if tasks}


def vocabulary() -> tuple[str, ...]:
    return tuple(w for s in TASKS.values() for w in s.vocabulary)


def _with_reasoning(reasoning: Callable[[str], str]) -> Callable[[str], str]:
    return lambda caption: reasoning(caption) + ANSWER_SEPARATOR + caption


register(TaskSpec("vanilla", PROMPT_PREFIX + ". Please write out the expression of the formula in the image using "
                  "LaTeX format.", "caption", 512, "whole", target=lambda caption: caption))
register(TaskSpec("tree", PROMPT_PREFIX + ". Please generate the abstract syntax tree (AST) of the formula in the "
                  "image, and then provide its corresponding LaTeX format.", "caption", 2048, "tree",
                  target=_with_reasoning(tree.tree_text), arm="tree",
                  vocabulary=(*(f"({r})" for r in (tree.ABOVE, tree.BELOW, tree.SUP, tree.SUB, tree.RIGHT,
                                                   tree.NEXTLINE)),
                              "(begin_", "(end_", "{cases}", "{matrix}", "{pmatrix}", "{bmatrix}")))
register(TaskSpec("can", PROMPT_PREFIX + ". Please identify and count each distinct visible mathematical symbol in "
                  "the image, and then provide its corresponding LaTeX format.", "caption", 1024, "last-line",
                  target=_with_reasoning(tree.count_text), arm="can"))
# The EDL texts come from a third-party copy of the released data.
register(TaskSpec("error_find", PROMPT_PREFIX + " and its OCR recognition result. Please help me to detect possible "
                  "errors in the recognition result and mark the places where errors occur with <error_start> "
                  "<error_end> and <deleted>.", "edl", 768, "whole", arm="edl",
                  edl_row=lambda r: (r["pred"], r["marked"]), vocabulary=(edl.ERROR_START, edl.ERROR_END, edl.DELETED)))
register(TaskSpec("error_fix", PROMPT_PREFIX + " and a predicted formula with error tags, correct the formula by "
                  "modifying the parts marked with <error_start> and <error_end> and inserting content where "
                  "<deleted> are present. Output the modifications in a single string with the following format: "
                  "REPLACE:old -> new for errors to be replaced. INSERT:content after position for missing content. "
                  "DELETE:to_delete for parts to be removed.", "edl", 1024, "whole", arm="edl",
                  edl_row=lambda r: (r["marked"], r["log"] + ANSWER_SEPARATOR + r["gt"]),
                  vocabulary=(edl.REPLACE, edl.INSERT, edl.DELETE, edl.ARROW, edl.AFTER)))


# ---------------------------------------------------------------- reading an answer back

_FENCE = re.compile(r"```[a-zA-Z]*\n?(.*?)```", re.S)
_LABEL = re.compile(r"^(final answer|answer|latex( format)?|result)\s*[:：]\s*", re.I)
# A Tree-CoT node line (``unimumer_lib.latex.tree``): tab-indented, or ``symbol (relation)``.
_TREE_LINE = re.compile(r"^(\t|\S+ \([a-z_]+\)$)")


def extract_answer(text: str, task: str = AUTO, normalize: bool = False) -> str:
    """The LaTeX answer in a model output, read as ``task``'s spec says (``answer``).

    whole (vanilla, EDL): the whole output. last-line (can) / tree / auto: the last non-empty line (Tree-CoT and
    symbol-counting outputs end with the LaTeX). Code fences, ``$``/``\\[ \\]`` delimiters and an "Answer:" label
    are stripped. A Tree-CoT output (tree, auto) whose last line is still a tree node line (no final LaTeX line)
    is turned back into LaTeX tokens with ``unimumer_lib.latex.tree.tree_text_to_tokens``.
    ``normalize`` applies ``unimumer_lib.latex.tokens.normalize`` (off by default: published scores are exact).
    """
    if task != AUTO and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {(AUTO, *TASKS)}")
    if not isinstance(text, str):
        raise TypeError(f"model output must be a string, got {type(text).__name__}")
    mode = "tree" if task == AUTO else TASKS[task].answer
    fenced = _FENCE.findall(text)
    body = fenced[-1] if fenced and mode == "whole" else _FENCE.sub(lambda m: m.group(1), text)
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        answer = ""
    elif mode == "whole":
        answer = " ".join(lines)
    elif mode == "tree" and len(lines) > 1 and _TREE_LINE.match(lines[-1]):
        answer = _from_tree(body, fallback=lines[-1])
    else:
        answer = lines[-1]
    answer = _strip_delimiters(answer)
    if normalize:
        from ..latex.tokens import normalize as normalize_latex
        answer = normalize_latex(answer)
    return answer


def _from_tree(text: str, fallback: str) -> str:
    try:
        from ..latex.tree import tree_text_to_tokens  # looked up now (a test stands a fake tree module in)

        return " ".join(tree_text_to_tokens(text))
    except (ImportError, ValueError):
        return fallback


def _strip_delimiters(answer: str) -> str:
    answer = _LABEL.sub("", answer.strip())
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            answer = answer[len(left):len(answer) - len(right)]
            break
    return " ".join(answer.split())
