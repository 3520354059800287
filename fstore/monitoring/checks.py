"""The checks ``fstore monitor`` runs, and the metrics their results become.

A check is a callable taking a ``CheckContext`` and returning samples, each a tuple
``(metric name, labels, value)``: the latest result of the check, as numbers. It reads
whatever it needs from the repository itself (``context.config``); the monitor only
schedules it, validates what it returns against ``MONITOR_METRICS`` and exports it. Why
a table and not free names: the alert rules and the dashboard (deploy/) are written
against these names and labels, so a check that returns another name, or other labels,
is a bug to be named (the run fails and is counted), not a new series to be found later.

Checks are named on the command line: a built-in name (``BUILTIN_CHECKS``: freshness,
skew, drift, in fstore.monitoring.builtin_checks) or ``module:callable`` for a
plug-in; a class is instantiated once with no arguments, so it may keep state between runs.
"""
from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from ..config import RepoConfig
from ..errors import InvalidCheckResult, UnknownCheck

#: one sample: (metric name, labels, value)
Sample = tuple[str, dict[str, str], float]

#: metric name -> (type, label names, help): what a check may return ("gauge": the latest value)
MONITOR_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "fstore_skew_mismatch_rate": ("gauge", ("service", "feature", "against"),
                                  "Share of the feature's compared rows whose served value differs (fstore skew)"),
    "fstore_skew_rows": ("gauge", ("service", "against"), "Entity rows the latest skew check compared"),
    "fstore_drift_psi": ("gauge", ("service", "feature"), "Population stability index, reference vs current"),
    "fstore_drift_null_rate": ("gauge", ("service", "feature"), "Share of nulls in the current window"),
    "fstore_drift_level": ("gauge", ("service", "feature"), "Drift level: 0 ok, 1 warn, 2 alert"),
    "fstore_freshness_age_seconds": ("gauge", ("view", "store"),
                                     "Seconds since the view's newest data in the store (online or offline)"),
    "fstore_freshness_sla_seconds": ("gauge", ("view",), "The view's freshness_sla in seconds"),
    "fstore_freshness_breached": ("gauge", ("view",), "1 if the view's data is older than its freshness_sla"),
}
#: what the monitor reports about its own runs (never returned by a check)
RUN_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "fstore_check_last_success_timestamp_seconds": ("gauge", ("check",),
                                                    "Unix time the check last ran without an error"),
    "fstore_check_errors_total": ("counter", ("check",), "Runs of the check that raised or returned bad samples"),
    "fstore_check_duration_seconds": ("gauge", ("check",), "Seconds the check's latest run took"),
}
#: the checks ``fstore monitor`` runs when none is named
BUILTIN_CHECKS: dict[str, str] = {
    "freshness": "fstore.monitoring.builtin_checks:freshness_check",
    "skew": "fstore.monitoring.builtin_checks:skew_check",
    "drift": "fstore.monitoring.builtin_checks:drift_check",
}

#: ``fstore monitor``'s defaults (command-line only: a monitor is a deployment choice, not the
#: repository's). Here, not in exporter.py: the CLI reads them without importing
#: prometheus_client, which must not be imported before ``fstore serve`` sets its multiprocess dir.
DEFAULT_INTERVAL = "60s"
DEFAULT_WINDOW = "1h"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6571


@dataclass(frozen=True)
class CheckContext:
    """What a check is told: the repository's settings and the window to look at.

    ``since_us``/``until_us`` (UTC microseconds): the window skew and drift compare (the
    last ``--window`` before the run); ``until_us`` is also "now" for freshness.
    """

    config: RepoConfig
    since_us: int
    until_us: int


Check = Callable[[CheckContext], Iterable[Sample]]


@dataclass
class LoadedCheck:
    """A check ready to run: its label (``check=``), the callable and its latest samples."""

    name: str
    fn: Check
    samples: list[Sample]


def load_check(spec: str) -> LoadedCheck:
    """The check a built-in name or ``module:callable`` names; UnknownCheck says why not."""
    target = BUILTIN_CHECKS.get(spec, spec)
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise UnknownCheck(f"check {spec!r}: expected one of {', '.join(BUILTIN_CHECKS)} or 'module:callable'")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise UnknownCheck(f"check {spec!r}: no module {module!r} is installed"
                           + (" (this fstore has no such check yet; name others with --check)"
                              if spec in BUILTIN_CHECKS else ""))
    try:
        obj = getattr(importlib.import_module(module), attr)
    except AttributeError:
        raise UnknownCheck(f"check {spec!r}: module {module!r} has no {attr!r}") from None
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        raise UnknownCheck(f"check {spec!r}: {target} is not callable")
    return LoadedCheck(spec, obj, [])


def validate(check: str, samples: Iterable[Sample]) -> list[Sample]:
    """The samples as a list, each checked against MONITOR_METRICS; InvalidCheckResult names
    the check, the metric and what is wrong."""
    out: list[Sample] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for sample in samples:
        if not (isinstance(sample, tuple) and len(sample) == 3):
            raise InvalidCheckResult(f"check {check!r}: expected (metric, labels, value), got {sample!r}")
        name, labels, value = sample
        spec = MONITOR_METRICS.get(name)
        if spec is None:
            raise InvalidCheckResult(f"check {check!r}: unknown metric {name!r}; known: {', '.join(MONITOR_METRICS)}")
        if not isinstance(labels, dict) or set(labels) != set(spec[1]) or not all(
                isinstance(v, str) for v in labels.values()):
            raise InvalidCheckResult(f"check {check!r}: metric {name!r} needs the string labels "
                                     f"{', '.join(spec[1])}; got {labels!r}")
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (int, float)):
            raise InvalidCheckResult(f"check {check!r}: metric {name!r} {labels}: not a number: {value!r}")
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise InvalidCheckResult(f"check {check!r}: metric {name!r} {labels} returned twice")
        seen.add(key)
        out.append((name, dict(labels), float(value)))
    return out


@dataclass
class RunStats:
    """The monitor's own numbers for one check."""

    last_success: float | None = None
    errors: int = 0
    seconds: float | None = None


def run_check(check: LoadedCheck, context: CheckContext, stats: RunStats,
              owned: dict[tuple[str, tuple[tuple[str, str], ...]], str]) -> str | None:
    """Run one check and keep its samples; the error message if it failed (its previous
    samples are kept then, and ``fstore_check_last_success_timestamp_seconds`` says how old
    they are). ``owned``: which check exports each series, so two never export the same one."""
    start = time.monotonic()
    try:
        samples = validate(check.name, check.fn(context))
        for name, labels, _ in samples:
            owner = owned.get((name, tuple(sorted(labels.items()))))
            if owner is not None and owner != check.name:
                raise InvalidCheckResult(f"check {check.name!r}: metric {name!r} {labels} is already "
                                         f"exported by check {owner!r}")
    except Exception as exc:  # noqa: BLE001 - any failure of a plug-in is counted and reported
        stats.errors += 1
        stats.seconds = time.monotonic() - start
        return str(exc) if isinstance(exc, InvalidCheckResult) else f"check {check.name!r}: " + _describe(exc)
    for key in [k for k, v in owned.items() if v == check.name]:
        del owned[key]
    for name, labels, _ in samples:
        owned[(name, tuple(sorted(labels.items())))] = check.name
    check.samples = samples
    stats.seconds = time.monotonic() - start
    stats.last_success = time.time()
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def families(checks: list[LoadedCheck], stats: dict[str, RunStats]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every metric's samples, from the checks' latest results and the monitor's own numbers."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in (*MONITOR_METRICS, *RUN_METRICS)}
    for check in checks:
        for name, labels, value in check.samples:
            out[name].append((labels, value))
        s = stats[check.name]
        label = {"check": check.name}
        out["fstore_check_errors_total"].append((label, float(s.errors)))
        if s.last_success is not None:
            out["fstore_check_last_success_timestamp_seconds"].append((label, s.last_success))
        if s.seconds is not None:
            out["fstore_check_duration_seconds"].append((label, s.seconds))
    return out


def metric_spec(name: str) -> tuple[str, tuple[str, ...], str]:
    """(type, label names, help) of a metric the monitor exports."""
    return MONITOR_METRICS.get(name) or RUN_METRICS[name]


def load_checks(specs: list[str]) -> list[LoadedCheck]:
    """Load every named check up front, so a missing one stops the monitor before it starts."""
    return [load_check(spec) for spec in specs]
