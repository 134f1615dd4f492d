"""The layering of compare/: imports point only down the data flow, with no cycles.

Data flows one way — inputs → sides → judge → parity → output → tools → api → cli — and so
must the imports between compare's subpackages. Read from the source (ast), never by
importing: a module may import from its own layer or a lower one, at module level. The one
import made inside functions is of the ``reference`` package (it imports Keras, so it waits
until a check needs it), which is not a compare module. The package itself
(``compare/__init__.py``) names the public API lazily (PEP 562), so that ``compare.judge``
needs NumPy only.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPARE = ROOT / "compare"
# The console script imports the command inside its signal handlers, so that an interrupt
# while importing is a clean exit too (compare/entry.py): the one import a function may make.
DELAYED = {("compare.entry", "compare.cli")}
LAYERS = [
    "errors",
    "version",
    "inputs",
    "sides",
    "judge",
    "parity",
    "output",
    "tools",
    "api",
    "cli",
    "entry",
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    """The layer of a compare module; None for the package itself (the public API, on top)."""
    parts = module.split(".")
    if parts == ["compare"]:
        return None
    return LAYERS.index(parts[1])


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported compare module, line, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text("utf-8"))
    module = _module_name(path)
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks count as module level
        if isinstance(node, ast.If):
            top_level |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            base = node.module
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")[
                    : len(module.split(".")) - node.level + (path.name == "__init__.py")
                ]
                base = ".".join([*package, base])
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name == "compare" or name.startswith("compare."):
                found.append((name, node.lineno, id(node) in top_level))
    return found


def _resolve(name: str) -> str | None:
    """The compare module a dotted name refers to (``compare.parity.run.check_parity`` →
    ``compare.parity.run``), or None when it names something else."""
    parts = name.split(".")
    while parts:
        candidate = ROOT.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return None


SOURCES = sorted(COMPARE.rglob("*.py"))


def test_every_compare_module_is_in_a_layer() -> None:
    for path in SOURCES:
        module = _module_name(path)
        if module != "compare":
            assert module.split(".")[1] in LAYERS, f"{module} is in no layer: add it to LAYERS"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_only_down_the_flow(path: Path) -> None:
    here = _module_name(path)
    mine = _layer(here)
    for name, line, module_level in _imports(path):
        target = _resolve(name)
        if target is None or target == here:
            continue
        theirs = _layer(target)
        where = f"{path.relative_to(ROOT)}:{line} imports {target}"
        assert theirs is not None or mine is None, f"{where}: only the public API imports it"
        if mine is not None and theirs is not None:
            assert theirs <= mine, f"{where}, which is further down the flow ({LAYERS[theirs]})"
        assert module_level or (here, target) in DELAYED, f"{where} inside a function"


def test_there_is_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        here = _module_name(path)
        for name, _, _ in _imports(path):
            target = _resolve(name)
            if target is not None and target != here:
                graph.setdefault(here, set()).add(target)
    # the package imports its submodules' API; a submodule importing the package closes a cycle
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(f"{node}.") and node != "compare":
                continue  # a package's __init__ importing its own submodule
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node)


def test_the_judge_needs_numpy_only() -> None:
    code = (
        "import sys; import compare.judge.checks, compare.judge.tolerances; "
        "heavy = {'keras', 'tensorflow', 'jax', 'torch', 'pandas', 'matplotlib', 'scratch'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
