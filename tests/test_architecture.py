"""The package's shape, read from its source: layers, no import loops, one engine seam.

Every import statement counts: at module level, inside functions and under
``if TYPE_CHECKING:``. The layers, bottom to top: runtime; vision and convert; the API
layer (``askgpt`` itself: the session, the Assistant); the CLI. ``askgpt.__main__`` is
the program's entry point (``python -m askgpt``), the one module above the CLI.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
LAYERS = {"askgpt.runtime": 0, "askgpt.vision": 1, "askgpt.convert": 1, "askgpt": 2, "askgpt.cli": 3,
          "askgpt.__main__": 4}
MAX_MODULES = 16  # per package folder, its __init__ included ("about 15")
MAX_FUNCTION_LINES = 120


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _package_dirs() -> dict[str, Path]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {package: REPO / folder for package, folder in config["package-dir"].items()}


def _modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    roots = _package_dirs()
    for root_package, folder in roots.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            if "data" in rel or "__pycache__" in rel:
                continue
            # A folder mapped to a package of its own (cli/ under askgpt/) is walked once, as itself.
            if root_package == "askgpt" and any((folder / part) in roots.values() for part in rel[:1]):
                continue
            name = ".".join([root_package, *(p for p in rel if p != "__init__")])
            modules[name] = Module(name, path, ast.parse(path.read_text(), filename=str(path)))
    return modules


MODULES = _modules()


def _layer(name: str) -> int:
    best = max((key for key in LAYERS if name == key or name.startswith(key + ".")), key=len)
    return LAYERS[best]


def _imports(module: Module) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every askgpt import in ``module``."""
    base = module.name if module.is_package else module.name.rsplit(".", 1)[0]
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                anchor = base
                for _ in range(node.level - 1):
                    anchor = anchor.rsplit(".", 1)[0]
                target = anchor + ("." + target if target else "")
            if target == "askgpt" or target.startswith("askgpt."):
                for alias in node.names:
                    child = f"{target}.{alias.name}"
                    if child in MODULES:
                        found.append((child, "", node.lineno))
                    else:
                        found.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "askgpt"]
    return found


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(m) if target in MODULES and target != name}
            for name, m in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_walk_sees_the_whole_package():
    # The checks below are only as good as this list: every layer is present, and the
    # modules that hold the seams are found where the layout says they are.
    assert {_layer(n) for n in MODULES} == {0, 1, 2, 3, 4}
    for expected in ("askgpt.runtime.engine.base", "askgpt.runtime.engine.kinds", "askgpt.session",
                     "askgpt.assistant", "askgpt.cli.app", "askgpt.vision.pipeline", "askgpt.convert.quantize"):
        assert expected in MODULES, expected
    assert len(MODULES) > 90


def test_no_import_loops():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_loop():
    # The checker itself: a planted loop (through a function-level import) is found.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_loops_between_runtime_subpackages():
    # One level up: runtime's folders form a stack too (engine below prompting, ...).
    packages: dict[str, set[str]] = {}
    for name, targets in _graph().items():
        if not name.startswith("askgpt.runtime."):
            continue
        here = ".".join(name.split(".")[:3])
        for target in targets:
            there = ".".join(target.split(".")[:3])
            if target.startswith("askgpt.runtime.") and there != here:
                packages.setdefault(here, set()).add(there)
    for name in list(packages):
        for target in packages[name]:
            packages.setdefault(target, set())
    assert _cycles(packages) == []


def test_nothing_imports_against_the_layers():
    upward = [f"{m.path.relative_to(REPO)}:{line} imports {target}"
              for m in MODULES.values() for target, _, line in _imports(m)
              if target in MODULES and _layer(target) > _layer(m.name)]
    assert upward == []


def test_no_private_names_across_modules():
    crossing = []
    for m in MODULES.values():
        for target, name, line in _imports(m):
            if name.startswith("_") and not name.startswith("__") and target != m.name:
                crossing.append(f"{m.path.relative_to(REPO)}:{line} imports {target}.{name}")
        aliases = {a.asname or a.name: a.name for node in ast.walk(m.tree) if isinstance(node, ast.Import)
                   for a in node.names if a.name.startswith("askgpt.")}
        aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for node in ast.walk(m.tree)
                        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("askgpt")
                        for a in node.names if f"{node.module}.{a.name}" in MODULES})
        for node in ast.walk(m.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                crossing.append(f"{m.path.relative_to(REPO)}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert crossing == []


def test_registries_never_name_upper_layers_by_string():
    dotted = re.compile(r"askgpt(\.\w+)+(:\w+)?")
    found = []
    for m in MODULES.values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and dotted.fullmatch(node.value):
                target = node.value.split(":")[0]
                if target not in MODULES:  # a module's attribute ("askgpt.cli.app.create_app")
                    target = target.rsplit(".", 1)[0]
                if target in MODULES and target != "askgpt" and _layer(target) > _layer(m.name):
                    found.append(f"{m.path.relative_to(REPO)}:{node.lineno} names {node.value}")
    assert found == []


def test_llama_cpp_is_imported_only_by_the_llama_engine():
    importers = set()
    for m in MODULES.values():
        for node in ast.walk(m.tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "llama_cpp" for n in names):
                importers.add(m.name)
    assert importers, "the walk found no llama_cpp import at all"
    assert {n for n in importers if not n.startswith("askgpt.runtime.engine.llama.")} == set()


def test_package_folders_stay_small():
    per_folder: dict[Path, int] = {}
    for m in MODULES.values():
        per_folder[m.path.parent] = per_folder.get(m.path.parent, 0) + 1
    crowded = {str(folder.relative_to(REPO)): n for folder, n in per_folder.items() if n > MAX_MODULES}
    assert crowded == {}


def test_functions_stay_short():
    long = [f"{m.path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for m in MODULES.values() for node in ast.walk(m.tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


@pytest.mark.parametrize("planted, expected", [
    ("from askgpt.cli.app import create_app\n", "imports askgpt.cli.app"),
    ("def f():\n    from askgpt.session import Session\n", "imports askgpt.session"),
])
def test_layer_check_sees_function_level_imports(planted: str, expected: str):
    # The checker itself, on a planted runtime module: an upward import is reported,
    # at module level and inside a function.
    module = Module("askgpt.runtime.planted", REPO / "runtime" / "planted.py", ast.parse(planted))
    upward = [f"imports {t}" for t, _, _ in _imports(module) if t in MODULES and _layer(t) > _layer(module.name)]
    assert upward == [expected]
