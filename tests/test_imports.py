"""Imports point one way: backbones <- heads <- deploy <- tasks <- interop, benchmarks; no first-party import inside a
function (one that exists to dodge a cycle means the code sits in the wrong room); no cycle between files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a package may import its own modules and those of the packages before it
LAYERS = {"backbones": 0, "heads": 1, "deploy": 2, "tasks": 3, "interop": 4, "benchmarks": 5}
ALLOWED = {package: {p for p, level in LAYERS.items() if level <= LAYERS[package]} for package in LAYERS}
ALLOWED["interop"].discard("benchmarks")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> list[Path]:
    return sorted(path for package in LAYERS for path in (ROOT / package).rglob("*.py"))


MODULES = {module_name(path): path for path in source_files()}


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported first-party module, line, inside a function) for every import in the file; `from a import b`
    counts as an import of `a.b` where that is a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + [base]).strip(".")
                for alias in child.names:
                    target = f"{base}.{alias.name}"
                    found.append((target if target in MODULES else base, child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return [(name, line, local) for name, line, local in found if name.split(".")[0] in LAYERS]


IMPORTS = {name: imports_of(path) for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_one_way(module):
    package = module.split(".")[0]
    wrong = [(name, line) for name, line, _ in IMPORTS[module] if name.split(".")[0] not in ALLOWED[package]]
    assert not wrong, f"{MODULES[module]} imports {wrong}: {package} may import only {sorted(ALLOWED[package])}"


# benchmark scripts import inside functions on purpose: a measuring parent process must not hold what it measures
LIBRARY = sorted(module for module in MODULES if not module.startswith("benchmarks"))


@pytest.mark.parametrize("module", LIBRARY)
def test_no_first_party_import_inside_a_function(module):
    local = [(name, line) for name, line, inside in IMPORTS[module] if inside]
    assert not local, f"{MODULES[module]} imports {local} inside functions: import at the top, or move the code"


def test_no_import_cycle_between_files():
    graph = {module: {name for name, _, _ in IMPORTS[module] if name in MODULES} for module in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path, module, target]
            if target not in state and (found := cycle_from(target, [*path, module])):
                return found
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = cycle_from(module, [])
            assert found is None, "import cycle: " + " -> ".join(found[found.index(found[-1]) :])


def test_the_checker_sees_violations(tmp_path):
    """The rules above can fail: a heads module importing tasks, a local import and a cycle are all found."""
    path = ROOT / "heads" / "_probe_for_test_imports.py"
    path.write_text("import tasks.models\n\n\ndef f():\n    from backbones import layers\n")
    try:
        found = imports_of(path)
    finally:
        path.unlink()
    assert ("tasks.models", 1, False) in found and ("backbones.layers", 5, True) in found
    assert "tasks" not in ALLOWED["heads"] and "tasks" not in ALLOWED["deploy"] and "heads" not in ALLOWED["backbones"]
