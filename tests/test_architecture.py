"""The package's import graph: no cycles, and no module imports from a higher layer.

Every ``import`` and ``from … import`` of every module of ``constrained_eq`` counts — at the top, inside
functions, and under ``if TYPE_CHECKING:`` — read from the source with :mod:`ast`, without importing it.
The layers (docs/architecture.md), lowest first::

    _utils < core < testing < symmetry < homotopy < training < integrations < models < data < tasks < run

A module may import its own layer and the layers below. The top-level ``constrained_eq/__init__.py``
(the public API) and ``__main__.py`` stand above every layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "constrained_eq"

LAYERS = {"_utils": 0, "core": 1, "testing": 2, "symmetry": 3, "homotopy": 4, "training": 5, "integrations": 6,
          "models": 7, "data": 8, "tasks": 9, "run": 10}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _known(name: str, known: dict[str, Path]) -> str | None:
    """The longest module of the package that ``name`` is or lies in (``None`` outside the package)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name if name.startswith(PACKAGE.name) else None


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import statement anywhere in the module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            found = _known(target, known)
            if found is not None and found != name:
                out.append((found, node.lineno))
    return out


def graph(package: Path = PACKAGE) -> dict[str, list[tuple[str, int]]]:
    known = modules(package)
    return {name: imports(name, path, known) for name, path in known.items()}


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = []
    for name, targets in sorted(edges.items()):
        for target, line in targets:
            own, other = layer(name), layer(target)
            if own is not None and other is not None and other > own:
                bad.append(f"{name}:{line} imports {target} (layer {name.split('.')[1]} < {target.split('.')[1]})")
    return bad


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    succ = {n: sorted({t for t, _ in ts}) for n, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in succ:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(succ[node]):
                work.append((node, i + 1))
                child = succ[node][i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert subpackages == set(LAYERS), "give a new subpackage its place in LAYERS (and in docs/architecture.md)"


def test_no_module_imports_a_higher_layer():
    bad = upward_imports(graph())
    assert not bad, f"imports against the layer order {' < '.join(sorted(LAYERS, key=LAYERS.get))}:\n" \
        + "\n".join(bad)


def test_the_import_graph_has_no_cycles():
    found = cycles(graph())
    assert not found, "import cycles (TYPE_CHECKING and function-level imports count):\n" \
        + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(("module", "statement", "kind"), [
    ("_utils/checks.py", "from constrained_eq.core.problem.target import Target", "upward"),
    ("core/solver/engine.py", "from constrained_eq.training.loop import fit", "upward"),
    ("core/solver/optimizers.py", "from constrained_eq.core.solver.engine import Solver", "cycle"),
    ("symmetry/reps.py", "from constrained_eq.homotopy import relax", "upward"),
    ("data/nbody.py", "from ..tasks import base", "upward"),
])
def test_the_checks_catch_a_bad_import(tmp_path, module, statement, kind):
    """A copy of the package with one bad import, inside a function under TYPE_CHECKING, fails the check."""
    copy = tmp_path / PACKAGE.name
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    victim = copy / module
    victim.write_text(victim.read_text(encoding="utf-8") + "\n\ndef _late():\n    from typing import TYPE_CHECKING\n\n"
                      f"    if TYPE_CHECKING:\n        {statement}\n", encoding="utf-8")
    known = modules(copy)
    edges = {name: imports(name, path, known) for name, path in known.items()}
    if kind == "upward":
        assert any(line.startswith(module_name(victim, copy)) for line in upward_imports(edges))
    else:
        assert any(module_name(victim, copy) in c for c in cycles(edges))


def test_moved_public_names_still_resolve():
    import constrained_eq as ceq
    from constrained_eq.symmetry import LieDerivative, projection_error

    assert ceq.LieDerivative is ceq.symmetry.LieDerivative is LieDerivative is ceq.homotopy.LieDerivative
    assert projection_error is ceq.homotopy.projection_error
    assert repr(LieDerivative(weight=0.01)) == "Penalty(target=lie_regularizer, weight=0.01)"


def test_docs_architecture_lists_every_module():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
               if f"`{p.relative_to(PACKAGE).as_posix()}`" not in page]
    assert not missing, f"give these modules a line in docs/architecture.md: {missing}"


def test_no_module_imports_another_modules_private_names():
    """``from m import _name`` only for private modules (``models/_vn.py``), never for a private function or class."""
    known = modules()
    bad = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE.name):
                bad += [f"{name}:{node.lineno} imports {node.module}.{alias.name}" for alias in node.names
                        if alias.name.startswith("_") and not alias.name.startswith("__")
                        and f"{node.module}.{alias.name}" not in known]
    assert not bad, "make these names public (or move them) instead:\n" + "\n".join(bad)


def test_no_module_re_exports_another_modules_names():
    """A name is imported from the module that defines it: only packages' ``__init__`` files gather names."""
    bad = []
    for name, path in modules().items():
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith(PACKAGE.name) for alias in node.names}
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                bad += [f"{name}.__all__ lists {n}" for n in ast.literal_eval(node.value) if n in imported]
    assert not bad, "import these from the module that defines them:\n" + "\n".join(bad)


CORE_ORDER = {"problem": 0, "formulations": 1, "solver": 2}


def core_upward_imports(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Imports inside ``core`` against its order problem < formulations < solver."""
    def place(name: str) -> int | None:
        parts = name.split(".")
        return CORE_ORDER.get(parts[2]) if len(parts) > 2 and parts[1] == "core" else None

    return [f"{name}:{line} imports {target}" for name, targets in sorted(edges.items()) for target, line in targets
            if place(name) is not None and place(target) is not None and place(target) > place(name)]


def test_every_core_subpackage_has_a_place():
    core = PACKAGE / "core"
    assert {p.name for p in core.iterdir() if (p / "__init__.py").exists()} == set(CORE_ORDER)
    assert sorted(p.name for p in core.glob("*.py")) == ["__init__.py"], "core's modules live in its subpackages"


def test_core_keeps_the_order_problem_formulations_solver():
    bad = core_upward_imports(graph())
    assert not bad, "imports against core's order problem < formulations < solver:\n" + "\n".join(bad)


def test_the_core_order_check_catches_a_bad_import():
    edges = {"constrained_eq.core.problem.target": [("constrained_eq.core.solver.engine", 3)],
             "constrained_eq.core.solver.engine": [("constrained_eq.core.problem.target", 5)]}
    assert core_upward_imports(edges) == [
        "constrained_eq.core.problem.target:3 imports constrained_eq.core.solver.engine"]


def test_test_folders_mirror_the_package():
    """Each folder of tests/ is a package of constrained_eq (``utils`` for ``_utils``), or an end-to-end group of run."""
    tests = Path(__file__).resolve().parent
    end_to_end = {"run/pipeline", "run/security"}
    folders = {p.relative_to(tests).as_posix() for p in tests.rglob("*")
               if p.is_dir() and "__pycache__" not in p.parts}
    strays = sorted(f for f in folders - end_to_end
                    if not (PACKAGE / ("_utils" + f[len("utils"):] if f.split("/")[0] == "utils" else f)).is_dir())
    assert not strays, f"these test folders mirror no package of constrained_eq: {strays}"
    flat = sorted(p.name for p in tests.glob("test_*.py"))
    assert flat == ["test_architecture.py", "test_docs.py", "test_docs_cooper.py", "test_docs_distributed.py",
                    "test_extending.py", "test_packaging.py", "test_startup.py"], "whole-package tests only at the top"
