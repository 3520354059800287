"""The .pyi stubs of the compiled modules say exactly what the modules export."""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parents[1] / "fstore" / "_ext"


def stub_names(path: Path) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text())
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


@pytest.mark.parametrize("stub", sorted(EXT.glob("*.pyi")), ids=lambda p: p.stem)
def test_stub_matches_module(stub: Path):
    module = importlib.import_module(f"fstore._ext.{stub.stem}")
    declared = stub_names(stub)
    public = {n for n in dir(module) if not n.startswith("_") and not inspect.ismodule(getattr(module, n))
              and getattr(getattr(module, n), "__module__", module.__name__) in (module.__name__, "builtins")}
    public = {n for n in public if not isinstance(getattr(module, n), type) or
              getattr(module, n).__module__ == module.__name__}
    assert set(declared) <= set(dir(module)), f"stub declares what the module lacks: {set(declared) - set(dir(module))}"
    missing = {n for n in public if callable(getattr(module, n))} - set(declared)
    assert not missing, f"the module exports callables its stub does not declare: {missing}"
    for name, node in declared.items():
        if isinstance(node, ast.FunctionDef):
            params = [a.arg for a in node.args.args]
            try:
                real = list(inspect.signature(getattr(module, name)).parameters)
            except (TypeError, ValueError):
                continue
            assert real == params, f"{stub.stem}.{name}: stub {params} vs module {real}"
