"""pytest-benchmark wiring of the gate's suites (run by ``python -m benchmarks.gate``).

Every pair (an fstore kernel and its floor) runs in ``--gate-passes`` passes; the items are
reordered so a pass runs every pair once, the two sides of a pair back to back, fstore first
in even passes and the floor first in odd ones. A burst of load from another process then
hits one pass of one pair, and the runner takes the median over passes of the per-pass
ratio (the suites' fixtures are session-scoped, so the reordering makes nothing twice).
The process is pinned to one CPU (the last allowed) before pyarrow and DuckDB start their
thread pools, so both sides of a pair get the same single core.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fstore gate")
    group.addoption("--gate-work", default=None, help="folder of the gate's data (made once, reused)")
    group.addoption("--gate-passes", type=int, default=1, help="passes over every pair (the runner gives gate.toml's)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "gate_pass" in metafunc.fixturenames:
        passes = metafunc.config.getoption("--gate-passes")
        metafunc.parametrize("gate_pass", range(passes), ids=[f"pass{p}" for p in range(passes)])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Pass by pass, pair by pair (in file order), the sides alternating which goes first."""
    def key(item: pytest.Item) -> tuple[int, int, int]:
        p = item.callspec.params.get("gate_pass", 0) if hasattr(item, "callspec") else 0
        side = 0 if item.name.split("[")[0].endswith("_fstore") else 1
        return p, order[item.name.split("[")[0].rsplit("_", 1)[0]], side if p % 2 == 0 else 1 - side

    order: dict[str, int] = {}
    for item in items:
        order.setdefault(item.name.split("[")[0].rsplit("_", 1)[0], len(order))
    items.sort(key=key)


@pytest.fixture(scope="session")
def work(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = pytestconfig.getoption("--gate-work")
    path = Path(given) if given else tmp_path_factory.mktemp("gate")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def online_data(work: Path) -> dict[str, Any]:
    from .data import online

    return online(work)


@pytest.fixture(scope="session")
def history_data(work: Path) -> dict[str, Any]:
    from .data import history

    return history(work)


@pytest.fixture(scope="session")
def floor_env(online_data: dict[str, Any]) -> Any:
    from .data import open_floor

    env = open_floor(online_data["floor"])
    yield env
    env.close()
