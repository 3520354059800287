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

A request view's outputs (computed at read time) are features like the others against a
training set file and the served-feature logs, which both hold them; an offline window
has no stored row of them, so a comparison with one leaves them out and says so
(``skipped``).

The result (``DriftResult.to_json``) is the documented JSON; the CLI exits 1 when any
feature is at ``alert``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RepoConfig
from ..errors import DriftInputError, InvalidArgument
from ..offline.store import OfflineStore
from ..repo.resolve import ViewRequest, resolve
from ..times import to_us
from .drift_compare import LEVELS, FeatureDrift, compare_feature, compare_features, compare_parts, level_of
from .drift_data import NOT_STORED, Output, Part, Side, log_parts, log_window, outputs_of, \
    read_offline_window, read_reference_file

__all__ = ["CURRENT_KINDS", "LEVELS", "DriftResult", "FeatureDrift", "Output", "compare_feature",
           "compare_features", "drift", "level_of"]
CURRENT_KINDS = ("logs", "offline")


@dataclass
class DriftResult:
    service: str
    reference: dict[str, Any]
    current: dict[str, Any]
    features: list[FeatureDrift] = field(default_factory=list)
    #: the features left out, each with why (a request view's, against an offline window)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def level(self) -> str:
        return max((f.entry["level"] for f in self.features), key=LEVELS.index, default="ok")

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "level": self.level, "reference": self.reference,
                "current": self.current, "features": [f.entry for f in self.features],
                **({"skipped": list(self.skipped)} if self.skipped else {})}  # absent when none


def drift(config: RepoConfig, registry: dict[str, Any], offline: OfflineStore, offline_ready: frozenset[str],
          service: str, *, reference: str | Path | None = None, reference_window: tuple[Any, Any] | None = None,
          since: Any = None, until: Any = None, current: str = "logs", model: str | None = None) -> DriftResult:
    """Compare the service's features of a reference with a current window (module docstring).

    Exactly one of ``reference`` (a training set file) and ``reference_window`` ((START, END)
    of the offline store, None for an open end) is given. ``since``/``until`` bound the
    current window (request time of the logs, event time offline); None: unbounded. The
    reference is read whole; the logs are read and tallied file by file."""
    if (reference is None) == (reference_window is None):
        raise InvalidArgument("give exactly one of reference (a training set file) or reference_window (START END)")
    if current not in CURRENT_KINDS:
        raise InvalidArgument(f"current must be one of {', '.join(CURRENT_KINDS)}, got {current!r}")
    computed: list[ViewRequest] = []
    requests = resolve(registry, feature_service=service, ready=offline_ready, computed=computed)
    outputs = outputs_of(requests + computed)
    skipped: list[Output] = []
    if reference_window is not None or current == "offline":
        # a request view's outputs have no stored rows: an offline window cannot give them
        by_function = {id(r.view) for r in computed}
        skipped = [o for o in outputs if id(o.view) in by_function]
        outputs = [o for o in outputs if id(o.view) not in by_function]
    if reference is not None:
        ref = read_reference_file(Path(reference), service, outputs)
    else:
        start, end = (_time(t, what) for t, what in zip(reference_window, ("reference START", "reference END")))  # type: ignore[arg-type]
        ref = read_offline_window(offline, requests, outputs, start, end)
    _require_rows(ref, "reference", config, service)
    since_us, until_us = _time(since, "since"), _time(until, "until")
    parts: list[Part] | Any
    if current == "logs":
        describe, parts = log_window(since_us, until_us, model), log_parts(config, service, outputs, since_us,
                                                                           until_us, model)
    else:
        cur = read_offline_window(offline, requests, outputs, since_us, until_us)
        _require_rows(cur, "current", config, service)
        describe, parts = cur.describe, [(cur.rows, cur.columns)]
    rows, features = compare_parts(outputs, ref.columns, parts)
    _require_rows(Side(describe, rows, {}), "current", config, service)
    return DriftResult(service, {**ref.describe, "rows": ref.rows}, {**describe, "rows": rows}, features,
                       [{"feature": o.column, "view": o.view["name"], "why": NOT_STORED} for o in skipped])


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
