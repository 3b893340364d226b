"""The package layering of docs/architecture.md, checked by walking every module's imports.

Imports point one way: ``cli`` (click only) -> ``commands`` -> ``targets`` -> ``compile`` -> ``sim`` ->
``ir``; ``prune`` -> ``train`` -> ``nn``, ``data``; utilities at the bottom. Function-level (lazy)
imports count the same as module-level ones: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import snnc

ROOT = Path(snnc.__file__).parent

# layer -> the layers it may import (besides itself). A layer is a package under snnc/ or a module.
UTIL = {"errors", "fileio", "ui", "registry"}
ALLOWED = {
    "cli": {"commands", "targets", "prune", "errors", "fileio", "ui"},
    "__main__": {"cli"},
    "snnc": {"api"},  # snnc/__init__.py: the API, loaded on first use
    "api": {"commands", "checkpoint", "nn", "data", *UTIL},
    "demo": {"data", *UTIL},
    "commands": {"targets", "compile", "prune", "train", "sim", "nn", "data", "ir", "checkpoint", *UTIL},
    "targets": {"compile", "sim", "ir", "checkpoint", *UTIL},
    "compile": {"sim", "nn", "ir", *UTIL},
    "prune": {"train", "nn", "data", "checkpoint", *UTIL},
    "train": {"nn", "data", *UTIL},
    "sim": {"ir", *UTIL},
    "nn": {"ir", "errors"},
    "data": {"errors"},
    "ir": {"errors", "fileio"},
    "checkpoint": {"nn", "errors", "fileio"},
    "registry": {"errors"},
    "ui": set(),
    "fileio": {"errors"},
    "errors": set(),
}


def _module_name(path: Path) -> str:
    parts = ("snnc", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str) -> str:
    """``snnc.a.b.c`` -> the longest prefix that is a module of ours."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts)


def _imports(module: str) -> set[str]:
    """Every snnc module ``module`` imports, anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" for a in node.names]  # a submodule, or an attribute of base
        else:
            continue
        found |= {_resolve(n) for n in names if n == "snnc" or n.startswith("snnc.")}
    found.discard(module)
    found.discard("")
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "snnc"


def test_every_module_is_in_a_layer():
    unknown = sorted({_layer(m) for m in MODULES} - set(ALLOWED) - {"snnc"})
    assert not unknown, f"add these packages to the layer table of docs/architecture.md: {unknown}"


def test_imports_point_down_the_layers():
    wrong = [
        f"{m} imports {dep}"
        for m, deps in GRAPH.items()
        for dep in sorted(deps)
        if _layer(dep) not in (_layer(m), "snnc") and _layer(dep) not in ALLOWED.get(_layer(m), ())
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_nothing_imports_the_cli():
    users = sorted(m for m, deps in GRAPH.items() if "snnc.cli" in deps and m != "snnc.__main__")
    assert not users, f"the library imports snnc.cli: {users}"


def test_no_import_cycles_between_modules():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(GRAPH[m]):
            # a package's __init__ re-exporting its own submodules is not a cycle of design
            if m.startswith(dep + ".") and MODULES[dep].name == "__init__.py":
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m)


def test_no_private_names_cross_modules():
    """``from snnc.x import _name`` reaches into another module's internals: make the name public."""
    wrong = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("snnc"):
                wrong += [
                    f"{m}: {a.name} from {node.module}"
                    for a in node.names
                    # a package's private module (``sim._numba_kernels``) is its own business
                    if a.name.startswith("_") and f"{node.module}.{a.name}" not in MODULES
                ]
    assert not wrong, "private names imported across modules:\n" + "\n".join(wrong)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The walk finds lazy imports (a function body) and relative ones."""
    fake = ROOT / "ir" / "graph.py"
    src = "def f():\n    from snnc.targets import loihi2\n    from ..cli import cli\n"
    monkeypatch.setitem(MODULES, "snnc.ir.graph", tmp_path / "graph.py")
    (tmp_path / "graph.py").write_text(src)
    assert _imports("snnc.ir.graph") >= {"snnc.targets.loihi2", "snnc.cli"}
    assert fake.exists()
