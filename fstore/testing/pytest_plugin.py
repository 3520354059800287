"""The pytest plugin: ``pytest --fstore-repo PATH`` adds one test per validation rule.

Registered by the ``pytest11`` entry point of the fstore package, so an installed fstore
offers the option to every pytest run; without ``--fstore-repo`` it adds nothing. The
gates run once per session; the test of a rule fails when the rule has an error finding,
and lists its warnings in the report sections without failing. Nothing in fstore imports
this module: only pytest loads it.
"""
from __future__ import annotations

from typing import Any

import pytest

_REPORT = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fstore")
    group.addoption("--fstore-repo", default=None, metavar="PATH",
                    help="Run fstore validate's gates on this feature repository, one test per rule.")
    group.addoption("--fstore-sample", type=int, default=200, metavar="N",
                    help="Entity rows per view for the point-in-time self-test (default 200).")
    group.addoption("--fstore-seed", type=int, default=0, metavar="S", help="Seed of that sample (default 0).")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("fstore_repo") is None:
        return
    from fstore.validate.rules import RULES

    items.extend(FstoreGate.from_parent(session, name=f"fstore-validate[{rule}]", rule=rule) for rule in RULES)


class FstoreGate(pytest.Item):
    """One validation rule of the repository named by --fstore-repo."""

    def __init__(self, *, rule: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = rule

    def runtest(self) -> None:
        mine = [f for f in _report(self.config).findings if f.rule == self.rule]
        warnings = [f for f in mine if f.severity != "error"]
        if warnings:
            self.add_report_section("call", "fstore warnings", "\n".join(_line(f) for f in warnings))
        errors = [f for f in mine if f.severity == "error"]
        if errors:
            raise GateFailed(errors)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, GateFailed):
            return "\n".join(_line(f) for f in excinfo.value.findings)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return str(self.config.getoption("fstore_repo")), None, self.name


class GateFailed(Exception):
    """A rule found errors (not an fstore error: a test outcome)."""

    def __init__(self, findings: list[Any]) -> None:
        super().__init__(f"{len(findings)} error finding(s)")
        self.findings = findings


def _report(config: pytest.Config) -> Any:
    """The session's validation report, made on first use."""
    if _REPORT not in config.stash:
        from fstore.validate.run import validate_repository

        config.stash[_REPORT] = validate_repository(config.getoption("fstore_repo"),
                                                    sample=config.getoption("fstore_sample"),
                                                    seed=config.getoption("fstore_seed"))
    return config.stash[_REPORT]


def _line(f: Any) -> str:
    where = ":".join(p for p in (f.view, f.feature) if p)
    return f"{f.severity} {f.rule}{' ' + where if where else ''}: {f.message}"
