"""Training/serving skew: is what was served what training would see?

``check_skew`` reads a feature service's served-feature log for a time window and makes
up to two comparisons, row by row (an entity row of a logged read is one row):

* ``offline``: for each logged row, the training-set rule over the offline store at the
  request time (entity timestamp = request time), for the exact view version the log
  names, through the compiled as-of kernel (fstore.offline.historical.point_in_time_view).
  A mismatch is classified by comparing the served row's event time and status with the
  event time of the offline row that won (fstore.monitoring.skew_compare.reasons).
* ``logged``: the served rows against what the inference service logged its model got
  (the model-received log), joined on the caller's request id, the join keys and their
  order within the request.

The result is the JSON document of docs/monitoring.md ("Skew"); the CLI prints it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidArgument, UnknownObject
from ..offline.historical import point_in_time_view
from ..offline.store import OfflineStore
from ..repo.resolve import ViewRequest
from ..times import now_us
from . import skew_compare as cmp
from .skew_request import recomputed_columns
from .logread import CALLER_ID, REQUEST_TIME, LogGroup, LogPart, group_parts, has_model_log, read_parts, service_dir

OFFLINE = "offline"
LOGGED = "logged"
BOTH = "both"
AGAINST = (OFFLINE, LOGGED, BOTH)
#: examples kept per feature and comparison, by default
EXAMPLES = 5
_STATUS_SUFFIX = "__status"
_TS_SUFFIX = "__event_timestamp"
_ROW = "row"


def check_skew(registry: dict[str, Any], store: OfflineStore, service: str, since_us: int | None = None,
               until_us: int | None = None, against: str | None = None, examples: int = EXAMPLES,
               model: str | None = None) -> dict[str, Any]:
    """The skew report of ``service`` over logged reads with request time in [since, until]
    (defaults: every logged read up to now). ``against``: 'offline', 'logged' or 'both'
    (default: both when the service has a model-received log, else offline)."""
    until_us = now_us() if until_us is None else until_us
    lo = since_us if since_us is not None else -(1 << 62)
    if lo > until_us:
        raise InvalidArgument(f"--since {cmp.iso(lo)} is after --until {cmp.iso(until_us)}")
    root = store.root
    if service not in registry["feature_services"] and not service_dir(root, service).is_dir():
        raise UnknownObject(f"unknown feature service {service!r} and no log for it under "
                            f"{service_dir(root, service)}; known: {', '.join(registry['feature_services']) or 'none'}")
    kinds = _against(against, has_model_log(root, service), root, service)
    groups = _read_served(root, service, lo, until_us, model)
    report: dict[str, Any] = {"service": service, "since": cmp.iso(_first(groups, lo)), "until": cmp.iso(until_us),
                              "comparisons": []}
    if model is not None:
        report["model"] = model  # only the reads that named this model (a GET's model)
    for kind in kinds:
        if kind == OFFLINE:
            report["comparisons"].append(_against_offline(registry, store, groups, examples))
        else:
            report["comparisons"].append(_against_logged(groups, _read_model(root, service, lo, until_us), examples))
    return report


def _read_served(root: Path, service: str, since_us: int, until_us: int, model: str | None) -> list[LogGroup]:
    """The served rows in the window (of reads that named ``model``, when given), grouped by
    their files' metadata: it names the view version each column was served from."""
    parts = read_parts(service_dir(root, service), since_us, until_us, named_model=model)
    for part in parts:
        _require_meta(part)
    return group_parts(parts)


def _require_meta(part: LogPart) -> None:
    """A served log file without valid ``fstore.log`` metadata is refused, by name."""
    if part.meta is None:
        raise InvalidArgument(f"log file {part.path} has no valid 'fstore.log' metadata: not a served-feature "
                              "log file")
    if not isinstance(part.meta.get("features"), list) or not isinstance(part.meta.get("keys"), list):
        raise InvalidArgument(f"log file {part.path}: its 'fstore.log' metadata is not valid (it needs "
                              "'features' and 'keys' lists)")


def _read_model(root: Path, service: str, since_us: int, until_us: int) -> pa.Table | None:
    """The model-received rows in the window (None: the service has no such file at all)."""
    parts = read_parts(service_dir(root, service, model=True), since_us, until_us)
    return pa.concat_tables([p.table for p in parts], promote_options="permissive") if parts else None


def worst_rate(report: dict[str, Any]) -> float:
    """The highest mismatch rate of any feature in any comparison (0.0 with none)."""
    return max((f["mismatch_rate"] for c in report["comparisons"] for f in c["features"]), default=0.0)


def _against(against: str | None, has_model: bool, root: Path, service: str) -> list[str]:
    if against is None:
        return [OFFLINE, LOGGED] if has_model else [OFFLINE]
    if against not in AGAINST:
        raise InvalidArgument(f"--against must be one of {', '.join(AGAINST)}, got {against!r}")
    if against != OFFLINE and not has_model:
        raise InvalidArgument(f"--against {against}: service {service!r} has no model-received log (no file under "
                              f"{service_dir(root, service, model=True)}); log it with "
                              "fstore.monitoring.log_features, or use --against offline")
    return [OFFLINE, LOGGED] if against == BOTH else [against]


def _first(groups: list[LogGroup], since_us: int) -> int:
    """The window's start as reported: --since, else the first logged request time."""
    if since_us > -(1 << 62):
        return since_us
    firsts = [pc.min(g.table.column(REQUEST_TIME)).cast(pa.int64()).as_py() for g in groups]
    return min((f for f in firsts if f is not None), default=0)


# ---- served vs offline ---------------------------------------------------------------------


def _against_offline(registry: dict[str, Any], store: OfflineStore, groups: list[LogGroup],
                     examples: int) -> dict[str, Any]:
    tallies: dict[str, cmp.FeatureTally] = {}
    shown: list[dict[str, Any]] = []
    rows = 0
    for g in groups:
        table = g.table
        rows += table.num_rows
        ts = cmp.times_us(table.column(REQUEST_TIME))
        recomputed = recomputed_columns(registry, store, g)  # request-time features: training's recomputation
        for spec in g.meta["features"]:
            if spec.get("request_view"):
                col = spec["column"]
                tally = tallies.setdefault(col, cmp.FeatureTally(col))
                served, status, served_ts = _served(table, col, g)
                exp = recomputed[col]
                equal = cmp.equal_mask(served, exp, spec["dtype"])
                codes = cmp.computed_reasons(~equal, status, np.zeros(len(equal), dtype=np.int8))
                tally.add(~equal, cmp.abs_diffs(served, exp, spec["dtype"], equal), codes)
                shown += _examples(table, g, col, served, exp, status, served_ts, None, codes,
                                   examples - sum(1 for e in shown if e["feature"] == col))
        for view, specs in _by_view(g, registry):
            req = ViewRequest(view, [s["feature"] for s in specs], [s["column"] for s in specs],
                              list(range(len(specs))))
            expected, offline_ts = point_in_time_view(store, req, table.select(view["join_keys"]), ts)
            dtypes = {f["name"]: f["dtype"] for f in view["features"]}
            for spec, exp in zip(specs, expected):
                col = spec["column"]
                exp = recomputed.get(col, exp)  # an on_miss view's: what training fills where it misses
                tally = tallies.setdefault(col, cmp.FeatureTally(col))
                served, status, served_ts = _served(table, col, g)
                equal = cmp.equal_mask(served, exp, dtypes[spec["feature"]])
                codes = cmp.computed_reasons(~equal, status, cmp.reasons(~equal, status, served_ts, offline_ts))
                tally.add(~equal, cmp.abs_diffs(served, exp, dtypes[spec["feature"]], equal), codes)
                shown += _examples(table, g, col, served, exp, status, served_ts, offline_ts, codes,
                                   examples - sum(1 for e in shown if e["feature"] == col))
    return {"against": OFFLINE, "rows": rows, "features": [t.as_json() for t in tallies.values()],
            "examples": shown}


def _by_view(group: LogGroup, registry: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The group's logged features by the exact view version that served them."""
    views = registry["feature_views"]
    out: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for spec in group.meta["features"]:
        if spec.get("request_view"):
            continue  # no stored row: compared with training's recomputation (skew_request)
        record = views.get(spec["view"])
        if record is None:
            raise UnknownObject(f"log file {group.files[0]} names feature view {spec['view']!r}, which is not in "
                                "the registry: cannot rebuild what training sees for it")
        if spec["feature"] not in {f["name"] for f in record["features"]}:
            raise UnknownObject(f"log file {group.files[0]} names feature {spec['feature']!r} of "
                                f"{spec['view']}, which that view does not have")
        if spec["column"] not in group.table.column_names:
            raise InvalidArgument(f"log file {group.files[0]} has no column {spec['column']!r}, which its "
                                  "'fstore.log' metadata lists")
        out.setdefault(spec["view"], (record, []))[1].append(spec)
    return list(out.values())


def _served(table: pa.Table, col: str, group: LogGroup) -> tuple[pa.ChunkedArray, np.ndarray, np.ndarray]:
    """A logged feature's values, statuses (int8) and event times (NO_TIME: none)."""
    for name in (col + _STATUS_SUFFIX, col + _TS_SUFFIX):
        if name not in table.column_names:
            raise InvalidArgument(f"log file {group.files[0]} has no column {name!r} (feature {col!r})")
    status = np.asarray(table.column(col + _STATUS_SUFFIX).to_numpy(zero_copy_only=False), dtype=np.int64)
    return table.column(col), status, cmp.times_us(table.column(col + _TS_SUFFIX))


def _examples(table: pa.Table, group: LogGroup, col: str, served: Any, expected: Any, status: np.ndarray,
              served_ts: np.ndarray, offline_ts: np.ndarray | None, codes: np.ndarray, limit: int,
              keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` mismatching rows of one feature, as the JSON's ``examples``."""
    if limit <= 0:
        return []
    idx = np.flatnonzero(codes)[:limit]
    keys = list(keys if keys is not None else group.meta["keys"])
    names = {int(s): s.name for s in cmp.Status}
    out = []
    for i in idx.tolist():
        out.append({
            "feature": col,
            "entity": {k: cmp.json_value(table.column(k)[i].as_py()) for k in keys},
            "request_time": cmp.iso(table.column(REQUEST_TIME)[i].as_py()),
            "served": cmp.json_value(served[i].as_py()),
            "expected": cmp.json_value(expected[i].as_py()),
            "served_status": names.get(int(status[i]), str(int(status[i]))),
            "served_event_timestamp": cmp.iso(int(served_ts[i])),
            "expected_event_timestamp": cmp.iso(int(offline_ts[i])) if offline_ts is not None else None,
            "reason": cmp.REASONS[codes[i]],
        })
    return out


# ---- served vs logged by the caller ------------------------------------------------------------


def _against_logged(groups: list[LogGroup], model: pa.Table | None, examples: int) -> dict[str, Any]:
    tallies: dict[str, cmp.FeatureTally] = {}
    shown: list[dict[str, Any]] = []
    rows = unmatched_served = 0
    matched_model = 0
    model_rows = 0 if model is None else model.num_rows
    for g in groups:
        if model is None or CALLER_ID not in g.table.column_names:
            unmatched_served += g.table.num_rows
            continue
        keys = list(g.meta["keys"])
        served_idx, model_idx = _join(g.table, model, keys, g)
        rows += len(served_idx)
        matched_model += len(served_idx)
        unmatched_served += g.table.num_rows - len(served_idx)
        table = g.table.take(pa.array(served_idx))
        got = model.take(pa.array(model_idx))
        dtypes = {s["column"]: s["dtype"] for s in g.meta["features"]}
        for col, dtype in dtypes.items():
            if col not in got.column_names:
                continue
            tally = tallies.setdefault(col, cmp.FeatureTally(col))
            served, status, served_ts = _served(table, col, g)
            logged = _as_served(got.column(col), served.type, col)
            equal = cmp.equal_mask(served, logged, dtype)
            codes = cmp.logged_reasons(~equal, status)
            tally.add(~equal, cmp.abs_diffs(served, logged, dtype, equal), codes)
            shown += _examples(table, g, col, served, logged, status, served_ts, None, codes,
                               examples - sum(1 for e in shown if e["feature"] == col), keys)
    return {"against": LOGGED, "rows": rows, "features": [t.as_json() for t in tallies.values()],
            "examples": shown, "unmatched_served": unmatched_served, "unmatched_logged": model_rows - matched_model}


def _join(served: pa.Table, model: pa.Table, keys: list[str], group: LogGroup) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the served rows and the model rows that pair up: same caller request
    id, same join keys, and the same occurrence of those keys within the request (served:
    by row; model: in file order)."""
    missing = [k for k in [CALLER_ID, *keys] if k not in model.column_names]
    if missing:
        raise InvalidArgument(f"the model-received log of service {group.meta.get('service')!r} has no column "
                              f"{missing[0]!r} (it needs {CALLER_ID}, {REQUEST_TIME} and the join keys "
                              f"{', '.join(keys)})")
    left = _numbered(served.select([CALLER_ID, *keys]), keys, _ROW if _ROW in served.column_names else None)
    right = _numbered(model.select([CALLER_ID, *keys]).cast(pa.schema(
        [pa.field(CALLER_ID, pa.string())] + [served.schema.field(k) for k in keys])), keys, None)
    on = [CALLER_ID, *keys, "__n"]
    joined = left.join(right, keys=on, join_type="inner", left_suffix="", right_suffix="_m")
    return (np.asarray(joined.column("__i").to_numpy(), dtype=np.int64),
            np.asarray(joined.column("__i_m").to_numpy(), dtype=np.int64))


def _numbered(t: pa.Table, keys: list[str], order: str | None) -> pa.Table:
    """``t`` with its row index (__i) and the occurrence number of its (request, keys) (__n)."""
    df = t.to_pandas()
    df["__i"] = np.arange(len(df), dtype=np.int64)
    df = df[df[CALLER_ID].notna()]
    df["__n"] = df.groupby([CALLER_ID, *keys], sort=False, dropna=False).cumcount().astype(np.int64)
    return pa.Table.from_pandas(df, preserve_index=False)


def _as_served(col: pa.ChunkedArray, target: pa.DataType, name: str) -> pa.ChunkedArray:
    """The model's column in the served type, exactly, or a clear error naming the feature."""
    if col.type == target:
        return col
    try:
        return col.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(f"the model-received log's column {name!r} holds {col.type} values, which do not "
                              f"convert exactly to the served {target} ({exc})") from None


__all__ = ["AGAINST", "BOTH", "EXAMPLES", "LOGGED", "OFFLINE", "check_skew", "worst_rate"]
