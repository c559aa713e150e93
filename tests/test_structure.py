"""The package's shape: its modules import one another without a cycle (lazy imports inside functions included),
so data flows one way (files -> records -> tasks -> training -> predictions -> metrics/analysis)."""

from __future__ import annotations

import ast
from pathlib import Path

import unimumer_lib

PACKAGE = Path(unimumer_lib.__file__).parent
MODULES = {p.stem for p in PACKAGE.glob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The package modules ``path`` imports anywhere in it (``from . import x``, ``from .x import y``,
    ``from unimumer_lib.x import y``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1 or (node.module or "").split(".")[0] == "unimumer_lib":
            parts = (node.module or "").split(".")
            inner = parts[1:] if parts[0] == "unimumer_lib" else parts
            found |= {inner[0]} if inner and inner[0] else {a.name for a in node.names}
    return (found & MODULES) - {path.stem}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_made_up_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_imports_itself_without_a_cycle():
    graph = {m: imports_of(PACKAGE / f"{m}.py") for m in MODULES}
    assert graph["report"] >= {"metrics", "normalize"} and "report" not in graph["normalize"]
    assert cycles(graph) == []


MAX_PARAMETERS = 10  # issue 23: a function taking more groups them in a settings type (Recipe, Mining, ...)


def parameter_counts(source: str) -> dict[str, int]:
    """{function name (line): parameters} of every function in ``source``, ``self``/``cls`` not counted and
    ``*args``/``**kwargs`` one each."""
    counts = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            n = len(names) + (a.vararg is not None) + (a.kwarg is not None) - (names[:1] in (["self"], ["cls"]))
            counts[f"{node.name} (line {node.lineno})"] = n
    return counts


def test_parameter_counter_on_made_up_functions():
    source = ("def f(a, b=1, *rest, c, **kw): pass\n"
              "class K:\n    def m(self, x): pass\n")
    assert parameter_counts(source) == {"f (line 1)": 5, "m (line 3)": 1}


def test_no_function_takes_more_than_ten_parameters():
    over = {f"{path.name}: {name}": n for path in sorted(PACKAGE.glob("*.py"))
            for name, n in parameter_counts(path.read_text(encoding="utf-8")).items() if n > MAX_PARAMETERS}
    assert over == {}
