"""The package's shape: modules in folders by job, layered so that data flows one way (core -> formats -> latex ->
data -> tasks -> models -> inference -> evaluation -> training -> pipeline); no import (lazy imports inside functions
included) climbs from a lower layer to a higher one, and modules import one another without a cycle."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path


import unimumer_lib

PACKAGE = Path(unimumer_lib.__file__).parent
# The layers, lowest first: a module may import its own layer and the layers below it.
LAYERS = ("core", "formats", "latex", "data", "tasks", "models", "inference", "evaluation", "training", "pipeline")
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
MODULES = {".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in SOURCES}  # "core.files", ...


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imports_of(path: Path, package: Path = PACKAGE, modules: set[str] = MODULES) -> set[str]:
    """The package modules ``path`` imports anywhere in it: relative imports of any level (``from . import x``,
    ``from ..core.files import y``) and ``from unimumer_lib.x.y import z``; names resolved to modules where they
    are modules."""
    here = path.relative_to(package).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = list(here[: len(here) - (node.level - 1)] if node.level > 1 else here)
        elif (node.module or "").split(".")[0] == "unimumer_lib":
            base = []
        else:
            continue
        parts = [p for p in (node.module or "").split(".") if p]
        parts = parts[1:] if not node.level else parts
        target = ".".join(base + parts)
        for alias in node.names:
            full = f"{target}.{alias.name}" if target else alias.name
            found.add(full if full in modules else target)
    return {m for m in found if m in modules} - {module_name(path) if package == PACKAGE else path.stem}


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


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


def test_import_reader_on_a_made_up_package(tmp_path):
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    (tmp_path / "low" / "a.py").write_text("x = 1\n")
    (tmp_path / "low" / "b.py").write_text("from . import a\n")
    (tmp_path / "high" / "c.py").write_text("def f():\n    from ..low.b import y\n    from ..low import a as z\n")
    modules = {"low.a", "low.b", "high.c"}
    assert imports_of(tmp_path / "high" / "c.py", tmp_path, modules) == {"low.b", "low.a"}
    assert imports_of(tmp_path / "low" / "b.py", tmp_path, modules) == {"low.a"}


GRAPH = {module_name(p): imports_of(p) for p in SOURCES}


def test_every_module_lives_in_a_layer_folder_with_a_docstring():
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"]  # nothing left in the flat folder
    assert {m.split(".")[0] for m in MODULES} == set(LAYERS)
    for folder in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc) > 80, folder
    assert all(ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) for p in SOURCES)


def test_the_package_imports_itself_without_a_cycle():
    assert GRAPH["evaluation.report"] >= {"evaluation.metrics", "latex.published"}
    assert "evaluation.report" not in GRAPH["latex.published"]
    assert cycles(GRAPH) == []


def test_no_import_climbs_from_a_lower_layer_to_a_higher_one():
    climbs = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps if layer_of(d) > layer_of(m))
    assert climbs == []
    assert GRAPH["data.glyphs"] >= {"data.splits"} and not any(layer_of(d) > 0 for d in GRAPH["core.files"])


TOP_LEVEL_KINDS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
# Names defined at the top of more than one module on purpose, with the same meaning in each: the stamp a
# command writes into what it makes (to become one provenance protocol).
SAME_MEANING = {"MADE_BY"}


def top_level_names(source: str) -> set[str]:
    """Public functions, classes and constants defined at the top of a module (not imported there)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, TOP_LEVEL_KINDS):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if not n.startswith("_")}


def test_no_public_name_is_defined_in_two_modules():
    assert top_level_names("def f(): pass\nX = 1\n_y = 2\nclass K: pass\nfrom a import b\n") == {"f", "X", "K"}
    where = defaultdict(list)
    for path in SOURCES:
        for name in top_level_names(path.read_text(encoding="utf-8")):
            where[name].append(module_name(path))
    twice = {name: sorted(mods) for name, mods in where.items() if len(mods) > 1 and name not in SAME_MEANING}
    assert twice == {}


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
    over = {f"{module_name(path)}: {name}": n for path in SOURCES
            for name, n in parameter_counts(path.read_text(encoding="utf-8")).items() if n > MAX_PARAMETERS}
    assert over == {}


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 60


def function_lengths(source: str) -> dict[str, int]:
    """{function name: lines from its ``def`` to its last line} of every function in ``source``, nested included."""
    return {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_function_lengths_on_made_up_source():
    assert function_lengths("def f():\n    x = 1\n\n    return x\n\n\ndef g(): pass\n") == {"f": 4, "g": 1}


def test_modules_and_functions_stay_short():
    long_modules = {module_name(p) for p in SOURCES
                    if len(p.read_text(encoding="utf-8").splitlines()) > MAX_MODULE_LINES}
    long_functions = {f"{module_name(p)}.{name}" for p in SOURCES
                      for name, n in function_lengths(p.read_text(encoding="utf-8")).items() if n > MAX_FUNCTION_LINES}
    assert long_modules == set() and long_functions == set()


def test_the_readme_module_table_matches_the_folders():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines()
            if line.startswith("| `") and line.split("|")[1].strip().endswith("/`")]
    listed = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        folder = cells[0].strip("`/")
        listed[folder] = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cells[1])))
    assert list(listed) == list(LAYERS)  # every folder, in layer order
    for folder in LAYERS:
        assert listed[folder] == {m.split(".")[1] for m in MODULES if m.startswith(folder + ".")}, folder
