"""The house keeps its shape: layers import only downward (the table in docs/architecture.md),
package faces stay lazy, the network client stays light, compiled modules that others
cimport have their .pxd, and the shared constants have one home."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fstore"


def layer_table() -> list[tuple[int, str, str]]:
    """(floor, layer name, module prefix) rows of the ```layers block of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    rows = []
    for line in block[1].strip().splitlines():
        floor, name, *prefixes = line.split()
        rows.extend((int(floor), name, p) for p in prefixes)
    return rows


TABLE = layer_table()


def layer_of(module: str) -> tuple[int, str, str]:
    """The row whose prefix names ``module`` most closely."""
    best = None
    for row in TABLE:
        prefix = row[2]
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[2]):
                best = row
    assert best is not None, f"module {module} is in no layer of docs/architecture.md"
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every fstore module ``source`` imports, at any depth of the code."""
    out = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "fstore")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fstore":
                continue
            # "from . import x" / "from .pkg import mod": the name may itself be a module
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                is_module = (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or \
                    (ROOT / Path(*candidate.split("."))).is_dir()
                out.append((node.lineno, candidate if is_module else target))
    return out


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """Imports of ``module`` that break the layer table: a higher layer, or the same
    floor in another package."""
    floor, name, prefix = layer_of(module)
    found = []
    for line, target in imported(module, source, is_package):
        t_floor, t_name, t_prefix = layer_of(target)
        if t_floor > floor or (t_floor == floor and t_name != name):
            found.append(f"{module}:{line} imports {target}: layer {name} ({floor}) may not import "
                         f"layer {t_name} ({t_floor})")
    return found


def python_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_import_goes_down_the_layers() -> None:
    problems = []
    for path in python_modules():
        problems += violations(module_name(path), path.read_text(), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


def test_compiled_modules_import_only_the_base() -> None:
    """A .pyx cannot be parsed as Python: its fstore imports and cimports are read as lines."""
    problems = []
    for path in sorted((PACKAGE / "_ext").glob("*.pyx")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(r"\s*(?:from|import)\s+(fstore[\w.]*)", line)
            if m and layer_of(m[1])[0] > 0:
                problems.append(f"{path.name}:{i} imports {m[1]} ({layer_of(m[1])[1]})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module, source, expected", [
    ("fstore.repo.names", "from ..serving.client import Client\n", "layer repo (3) may not import layer serving"),
    ("fstore.online.store", "def f():\n    from fstore.feature_store import FeatureStore\n",
     "layer online (5) may not import layer top"),
    ("fstore.serving.client", "from ..monitoring import checks\n", "layer serving (6) may not import layer monitoring"),
    ("fstore.errors", "from .config import RepoConfig\n", "layer base (0) may not import layer config"),
    ("fstore.offline.store", "from fstore import online\n", "layer offline (4) may not import layer online"),
])
def test_the_layer_check_catches_a_violation(module: str, source: str, expected: str) -> None:
    """The check itself fails on an upward import (also one hidden in a function)."""
    found = violations(module, source)
    assert len(found) == 1 and expected in found[0], found


def test_a_downward_import_is_no_violation() -> None:
    assert violations("fstore.serving.client", "from ..online.response import OnlineResponse\n"
                      "from ..errors import FstoreError\nfrom .protocol import GET\n") == []
    assert violations("fstore.online.service", "from ..monitoring.events import hook\n") == []


def test_package_faces_are_lazy() -> None:
    """A subpackage's __init__ imports only fstore._lazy (and names, lazily, its public face):
    importing fstore.online.response must not run the rest of fstore.online."""
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        if init.parent.name == "_ext":
            continue
        targets = {t for _, t in imported(module_name(init), init.read_text(), True)}
        assert targets <= {"fstore._lazy"}, (init, targets)


def test_the_client_imports_neither_pyarrow_nor_lmdb() -> None:
    """In a fresh interpreter: an inference service reading over the network pays for neither."""
    code = ("import sys, fstore.client, fstore\n"
            "c = fstore.client.Client\n"
            "heavy = sorted(m for m in ('pyarrow', 'lmdb', 'fstore.online.store', 'fstore.feature_store') "
            "if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"import fstore.client loaded: {out.stdout.strip()}"


def test_every_cimported_pyx_has_its_pxd() -> None:
    cimported = set()
    for path in (PACKAGE / "_ext").glob("*.pyx"):
        cimported |= set(re.findall(r"from fstore\._ext\.(\w+) cimport", path.read_text()))
    assert cimported, "no compiled module cimports another"
    for name in sorted(cimported):
        assert (PACKAGE / "_ext" / f"{name}.pxd").exists(), f"{name}.pyx is cimported but has no .pxd"
        assert (PACKAGE / "_ext" / f"{name}.pyi").exists(), f"{name} has no .pyi stub"


def test_shared_constants_come_from_one_place() -> None:
    """Statuses, kinds and op codes are the enums of _constants.pxd; Python takes them from there."""
    from fstore._ext._constants import Kind, Op, Status
    from fstore.online.codec import KIND_OF
    from fstore.online.response import Status as ResponseStatus
    from fstore.repo.definitions import DTYPES
    from fstore.serving.connection import HANDLERS
    from fstore.serving.protocol import OPS

    assert ResponseStatus is Status
    assert [s.name for s in Status] == ["PRESENT", "NOT_FOUND", "EXPIRED", "DEFAULTED", "UNAVAILABLE", "COMPUTED"]
    assert set(KIND_OF) == set(DTYPES) and sorted(KIND_OF.values()) == sorted(int(k) for k in Kind)
    assert set(OPS) == {int(op) for op in Op} == set(HANDLERS)
    # the literals live in the .pxd only: no other source file spells a status's value
    pxd = (PACKAGE / "_ext" / "_constants.pxd").read_text()
    assert "PRESENT = 0" in pxd
    for path in [*python_modules(), *(PACKAGE / "_ext").glob("*.pyx")]:
        text = path.read_text()
        assert not re.search(r"\b(PRESENT|NOT_FOUND|EXPIRED|DEFAULTED)\s*=\s*\d", text), path
        assert "range(4)" not in text, path


def test_the_versioned_name_is_spelled_once() -> None:
    hits = [p for p in python_modules() if re.search(r"_v\{", p.read_text())]
    assert hits == [PACKAGE / "repo" / "names.py"], hits
