"""``fstore drift``: has what a service's features look like moved away from a reference?

Per feature of the service, a reference (a training set file, or a window of the offline
store) is compared with a current window (the served-feature logs, or a window of the
offline store) by the PSI of ``fstore.monitoring.psi`` and the null rates; numbers also
get their mean, std (population, ddof=0), min and max on each side.

Each feature gets a level from its thresholds (``monitoring:`` of the feature, else of
its view, else ``MONITORING_DEFAULTS``):

- ``alert``: PSI >= psi_alert, or the current null rate > max_null_rate, or the reference
  has values and the current window has rows but none of them non-null (the PSI cannot
  be computed: the feature went dark);
- ``warn``: psi_warn <= PSI < psi_alert;
- ``ok``: otherwise, and when the reference has no non-null value (PSI null) or the
  current window has no rows at all.

The result (``DriftResult.to_json``) is the documented JSON; the CLI exits 1 when any
feature is at ``alert``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..config import RepoConfig
from ..errors import DriftInputError, InvalidArgument
from ..offline.store import OfflineStore
from ..repo.definitions import MONITORING_DEFAULTS
from ..repo.resolve import resolve
from ..times import to_us
from .drift_data import Output, Side, outputs_of, read_log_window, read_offline_window, read_reference_file
from .drift_numbers import numeric_histogram
from .psi import Histogram, categorical_histogram

LEVELS = ("ok", "warn", "alert")        # the order matters: the worst level is the largest index
NUMBER_DTYPES = frozenset({"int32", "int64", "float32", "float64"})
NUMERIC_BINS = NUMBER_DTYPES | {"timestamp"}   # binned by deciles; the rest by category
CURRENT_KINDS = ("logs", "offline")


@dataclass
class FeatureDrift:
    """One feature's comparison: the JSON entry and the histogram the HTML report draws."""

    entry: dict[str, Any]
    histogram: Histogram


@dataclass
class DriftResult:
    service: str
    reference: dict[str, Any]
    current: dict[str, Any]
    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def level(self) -> str:
        return max((f.entry["level"] for f in self.features), key=LEVELS.index, default="ok")

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "level": self.level, "reference": self.reference,
                "current": self.current, "features": [f.entry for f in self.features]}


def thresholds(out: Output) -> dict[str, float | None]:
    """The feature's thresholds: its own, else its view's, else the defaults."""
    return {**MONITORING_DEFAULTS, **out.view.get("monitoring", {}), **out.feature.get("monitoring", {})}


def level_of(psi: float | None, null_rate_cur: float | None, ref_values: int, cur_rows: int,
             cur_values: int, limits: dict[str, float | None]) -> str:
    """The level of one feature (rule in the module docstring)."""
    max_null = limits["max_null_rate"]
    if psi is not None and psi >= limits["psi_alert"]:  # type: ignore[operator]
        return "alert"
    if max_null is not None and null_rate_cur is not None and null_rate_cur > max_null:
        return "alert"
    if ref_values and cur_rows and not cur_values:
        return "alert"
    if psi is not None and psi >= limits["psi_warn"]:  # type: ignore[operator]
        return "warn"
    return "ok"


def compare_feature(out: Output, ref: pa.ChunkedArray, cur: pa.ChunkedArray) -> FeatureDrift:
    """The PSI, null rates, statistics and level of one feature."""
    entry: dict[str, Any] = {"feature": out.column, "view": out.view.get("name"), "dtype": out.dtype}
    if out.dtype in NUMERIC_BINS:
        hist, r, c = numeric_histogram(ref, cur)
        if out.dtype in NUMBER_DTYPES:
            entry.update(r.stats("ref"))
            entry.update(c.stats("cur"))
        ref_nulls, cur_nulls, ref_values, cur_values = r.nulls, c.nulls, r.values, c.values
    else:
        hist = categorical_histogram(ref, cur)
        ref_nulls, cur_nulls = ref.null_count, cur.null_count
        ref_values, cur_values = len(ref) - ref_nulls, len(cur) - cur_nulls
    value = hist.psi
    limits = thresholds(out)
    null_ref = ref_nulls / len(ref) if len(ref) else None
    null_cur = cur_nulls / len(cur) if len(cur) else None
    entry.update({"psi": value, "null_rate_ref": null_ref, "null_rate_cur": null_cur,
                  "level": level_of(value, null_cur, ref_values, len(cur), cur_values, limits),
                  "rows_ref": len(ref), "rows_cur": len(cur), "bins": len(hist.labels),
                  "thresholds": limits})
    return FeatureDrift(entry, hist)


def drift(config: RepoConfig, registry: dict[str, Any], offline: OfflineStore, offline_ready: frozenset[str],
          service: str, *, reference: str | Path | None = None, reference_window: tuple[Any, Any] | None = None,
          since: Any = None, until: Any = None, current: str = "logs", model: str | None = None) -> DriftResult:
    """Compare the service's features of a reference with a current window (module docstring).

    Exactly one of ``reference`` (a training set file) and ``reference_window`` ((START, END)
    of the offline store, None for an open end) is given. ``since``/``until`` bound the
    current window (request time of the logs, event time offline); None: unbounded."""
    if (reference is None) == (reference_window is None):
        raise InvalidArgument("give exactly one of reference (a training set file) or reference_window (START END)")
    if current not in CURRENT_KINDS:
        raise InvalidArgument(f"current must be one of {', '.join(CURRENT_KINDS)}, got {current!r}")
    requests = resolve(registry, feature_service=service, ready=offline_ready)
    outputs = outputs_of(requests)
    if reference is not None:
        ref = read_reference_file(Path(reference), service, outputs)
    else:
        start, end = (_time(t, what) for t, what in zip(reference_window, ("reference START", "reference END")))  # type: ignore[arg-type]
        ref = read_offline_window(offline, requests, outputs, start, end)
    since_us, until_us = _time(since, "since"), _time(until, "until")
    if current == "logs":
        cur = read_log_window(config, service, outputs, since_us, until_us, model)
    else:
        cur = read_offline_window(offline, requests, outputs, since_us, until_us)
    _require_rows(ref, "reference", config, service)
    _require_rows(cur, "current", config, service)
    return _compare(service, outputs, ref, cur)


def _require_rows(side: Side, which: str, config: RepoConfig, service: str) -> None:
    """An empty side is an error (a wrong window, no logging), never a clean result."""
    if side.rows:
        return
    d = side.describe
    if d["kind"] == "logs":
        where = config.rel(config.offline_path / "logs" / service)
        raise DriftInputError(f"{which}: no served-feature log rows of service {service!r} with a request time in "
                              f"[{d['since'] or 'the first'}, {d['until'] or 'the last'}] (under {where}); "
                              f"is logging on for the service?")
    if d["kind"] == "offline":
        raise DriftInputError(f"{which}: no offline rows of the service's views with an event time in "
                              f"[{d['start'] or 'the first'}, {d['end'] or 'the last'}]")
    raise DriftInputError(f"{which}: {d['path']} has no rows")


def _time(value: Any, what: str) -> int | None:
    return None if value is None else to_us(value, what=what)


def _compare(service: str, outputs: list[Output], ref: Side, cur: Side) -> DriftResult:
    result = DriftResult(service, {**ref.describe, "rows": ref.rows}, {**cur.describe, "rows": cur.rows})
    result.features = compare_features(outputs, ref.columns, cur.columns)
    return result


def compare_features(outputs: list[Output], ref: dict[str, Any], cur: dict[str, Any]) -> list[FeatureDrift]:
    """Every feature's comparison, in output order, features spread over the machine's
    cores: numpy's quantile and comparisons and Arrow's kernels release the GIL, so threads
    run them side by side (1.7-1.9x on 2 cores for 20 features of 10M rows)."""
    if len(outputs) < 2:
        return [compare_feature(o, ref[o.column], cur[o.column]) for o in outputs]
    with ThreadPoolExecutor(max_workers=min(len(outputs), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda o: compare_feature(o, ref[o.column], cur[o.column]), outputs))
