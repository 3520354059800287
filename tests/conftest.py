"""Shared fixtures: the example repository of the spec, with small realistic data.

``make_demo_repo(path)`` writes ``fstore.yaml``, ``features/defs.yaml`` (or the
equivalent ``features/defs.py``), ``data/customer_stats.parquet`` and two CSV
files under ``data/trips/``. Tests change it with ``write_defs``/``edit_defs``
and the data writers below, always through real files.
"""
from __future__ import annotations

import collections
import datetime as dt
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

UTC = dt.timezone.utc

PROJECT_YAML = "project: demo\n"

DEFS_YAML = """\
entities:
  - name: customer
    join_keys: [customer_id]
  - name: driver
    join_keys: [driver_id]
sources:
  - name: customer_stats_src
    path: data/customer_stats.parquet     # a file, a folder or a glob, relative to the repository
    timestamp_field: event_timestamp
    created_timestamp_field: created_timestamp   # optional
  - name: trips_src
    path: data/trips/*.csv
    timestamp_field: ts
feature_views:
  - name: customer_stats
    version: 1
    entities: [customer]
    source: customer_stats_src
    ttl: 7d                                # optional; absent or 0 means no limit
    owner: risk-team@example.com
    freshness_sla: 1h
    description: Rolling customer spend statistics
    features:
      - {name: avg_amount_7d, dtype: float64, default: 0.0}
      - {name: txn_count_7d, dtype: int64}
      - {name: segment, dtype: string}
  - name: customer_driver
    version: 1
    entities: [customer, driver]           # a composite key
    source: trips_src
    features:
      - {name: trips_together, dtype: int64, default: 0}
feature_services:
  - name: fraud_v1
    features: [customer_stats:avg_amount_7d, customer_driver]   # one feature, or a whole view
"""

# The same repository written in Python: several spellings on purpose (objects or
# names for entities and sources, a timedelta ttl, view[[...]] references).
DEFS_PY = """\
import datetime as dt

from fstore import Entity, Feature, FeatureService, FeatureView, Source

customer = Entity(name="customer", join_keys=["customer_id"])
driver = Entity(name="driver", join_keys=["driver_id"])

customer_stats_src = Source(
    name="customer_stats_src",
    path="data/customer_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_field="created_timestamp",
)

customer_stats = FeatureView(
    name="customer_stats",
    version=1,
    entities=[customer],
    source=customer_stats_src,
    ttl=dt.timedelta(days=7),
    owner="risk-team@example.com",
    freshness_sla="1h",
    description="Rolling customer spend statistics",
    features=[
        Feature(name="avg_amount_7d", dtype="float64", default=0.0),
        Feature(name="txn_count_7d", dtype="int64"),
        Feature(name="segment", dtype="string"),
    ],
)

customer_driver = FeatureView(
    name="customer_driver",
    entities=["customer", driver],
    source=Source(name="trips_src", path="data/trips/*.csv", timestamp_field="ts"),
    features=[Feature(name="trips_together", dtype="int64", default=0)],
)

fraud_v1 = FeatureService(name="fraud_v1", features=[customer_stats[["avg_amount_7d"]], customer_driver])
"""

TRIPS_FILES: dict[str, str] = {
    "2024-01-01.csv": (
        "customer_id,driver_id,ts,trips_together\n"
        "1001,501,2024-01-01T08:05:00,1\n"
        "1001,502,2024-01-01T09:40:00,2\n"
        "1002,501,2024-01-01T10:15:00Z,1\n"
        "1003,503,2024-01-01T23:59:59,4\n"
    ),
    "2024-01-02.csv": (
        "customer_id,driver_id,ts,trips_together\n"
        "1001,501,2024-01-02T07:30:00,2\n"
        "1003,503,2024-01-02T12:00:00,5\n"
        "1004,502,2024-01-02T18:45:00,1\n"
    ),
}


def ts(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A UTC time in January 2024."""
    return dt.datetime(2024, 1, day, hour, minute, tzinfo=UTC)


def customer_stats_table(extra_columns: bool = False) -> pa.Table:
    """Daily customer statistics: five customers, a null value and a re-statement.

    Customer 1002's row for Jan 3 is written twice, the second time with a later
    created timestamp (a correction), as upstream jobs do.
    """
    rows = [
        # customer_id, event, created, avg, count, segment
        (1001, ts(1), ts(1, 1), 25.50, 3, "gold"),
        (1001, ts(2), ts(2, 1), 27.25, 4, "gold"),
        (1001, ts(3), ts(3, 1), 30.00, 5, "gold"),
        (1002, ts(1), ts(1, 1), 12.00, 1, "silver"),
        (1002, ts(3), ts(3, 1), 14.75, 2, "silver"),
        (1002, ts(3), ts(3, 6), 15.75, 2, "silver"),
        (1003, ts(2), ts(2, 1), None, 0, "bronze"),
        (1004, ts(1), ts(1, 1), 99.99, 12, None),
        (1004, ts(4), ts(4, 1), 101.10, 13, "platinum"),
        (1005, ts(5), ts(5, 1), 5.00, 1, "bronze"),
    ]
    cols = list(zip(*rows))
    table = pa.table({
        "customer_id": pa.array(cols[0], pa.int64()),
        "event_timestamp": pa.array(cols[1], pa.timestamp("us", tz="UTC")),
        "created_timestamp": pa.array(cols[2], pa.timestamp("us", tz="UTC")),
        "avg_amount_7d": pa.array(cols[3], pa.float64()),
        "txn_count_7d": pa.array(cols[4], pa.int64()),
        "segment": pa.array(cols[5], pa.string()),
    })
    if extra_columns:  # what a version 2 of the view may use
        table = table.append_column("max_amount_7d", pa.array([c * 2 if c else None for c in cols[3]], pa.float64()))
    return table


def make_demo_repo(root: Path, *, python: bool = False, extra_columns: bool = False) -> Path:
    """Write the spec's example repository into ``root`` (created if needed) and return it.

    ``python=True`` writes ``features/defs.py`` instead of ``features/defs.yaml``;
    ``extra_columns=True`` adds a ``max_amount_7d`` column to the Parquet source.
    """
    root = Path(root)
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "data" / "trips").mkdir(parents=True, exist_ok=True)
    (root / "fstore.yaml").write_text(PROJECT_YAML)
    if python:
        (root / "features" / "defs.py").write_text(DEFS_PY)
    else:
        (root / "features" / "defs.yaml").write_text(DEFS_YAML)
    pq.write_table(customer_stats_table(extra_columns), root / "data" / "customer_stats.parquet")
    for name, text in TRIPS_FILES.items():
        (root / "data" / "trips" / name).write_text(text)
    return root


def write_defs(repo: Path, text: str, name: str = "defs.yaml") -> Path:
    path = repo / "features" / name
    path.write_text(text)
    return path


def load_defs(repo: Path) -> dict[str, Any]:
    return yaml.safe_load((repo / "features" / "defs.yaml").read_text())


def edit_defs(repo: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Load features/defs.yaml, let ``change`` edit the document in place, write it back."""
    doc = load_defs(repo)
    change(doc)
    (repo / "features" / "defs.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return doc


def find(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The item called ``name`` in a list of definitions."""
    return next(i for i in items if i["name"] == name)


def write_csv(repo: Path, name: str, text: str, *, bump_mtime: bool = True) -> Path:
    """(Re)write a trips CSV; the mtime is moved forward so a same-size rewrite is seen as a change."""
    path = repo / "data" / "trips" / name
    existed = path.exists()
    old_ns = path.stat().st_mtime_ns if existed else 0
    path.write_text(text)
    if existed and bump_mtime:
        new_ns = max(path.stat().st_mtime_ns, old_ns + 1_000_000_000)
        os.utime(path, ns=(new_ns, new_ns))
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder`` (hidden ones too) with its bytes and mtime."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def multiset(rows: list[tuple]) -> collections.Counter:
    return collections.Counter(rows)


@pytest.fixture
def demo_repo(tmp_path: Path) -> Path:
    """The spec's example repository, not yet applied."""
    return make_demo_repo(tmp_path / "repo")


@pytest.fixture
def demo_store(demo_repo: Path):
    """A FeatureStore over the example repository, applied and not yet ingested."""
    from fstore import FeatureStore

    fs = FeatureStore(demo_repo)
    fs.apply()
    return fs


# ---- repositories for the online store tests --------------------------------------------

def make_views_repo(root: Path, views: dict[str, dict], *, buckets: int = 4,
                    online: dict[str, Any] | None = None, services: str = "") -> Path:
    """A repository whose view ``V`` reads the folder ``data/V`` (see ``write_view_source``).

    ``views``: name -> {"keys": [(column, "int"|"string")], "features": [(name, dtype,
    default)], "ttl": str|None, "created": bool (a created_timestamp column ``created``,
    default True), "version": int}. Every source's event time column is ``ts``.
    ``online`` is written as the ``online_store`` section of fstore.yaml.
    """
    root.mkdir(parents=True, exist_ok=True)
    project = {"project": "t", "offline_store": {"buckets": buckets}}
    if online:
        project["online_store"] = online
    (root / "fstore.yaml").write_text(yaml.safe_dump(project))
    (root / "features").mkdir(exist_ok=True)
    keys = list(dict.fromkeys(col for spec in views.values() for col, _ in spec["keys"]))
    doc: dict[str, Any] = {
        "entities": [{"name": f"e_{col}", "join_keys": [col]} for col in keys],
        "sources": [], "feature_views": []}
    for name, spec in views.items():
        src = {"name": f"{name}_src", "path": f"data/{name}", "timestamp_field": "ts"}
        if spec.get("created", True):
            src["created_timestamp_field"] = "created"
        doc["sources"].append(src)
        view = {"name": name, "version": spec.get("version", 1),
                "entities": [f"e_{col}" for col, _ in spec["keys"]], "source": f"{name}_src",
                "features": [{"name": f, "dtype": d, **({} if default is None else {"default": default})}
                             for f, d, default in spec["features"]]}
        if spec.get("ttl"):
            view["ttl"] = spec["ttl"]
        doc["feature_views"].append(view)
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
                                                 + services)
    return root


def write_view_source(root: Path, view: str, table: pa.Table, part: int = 0) -> Path:
    """Write ``data/<view>/part-<part>.parquet``."""
    d = root / "data" / view
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"part-{part}.parquet"
    pq.write_table(table, path)
    return path


def utc_ts(values: list[Any]) -> pa.Array:
    """A UTC microsecond timestamp column from datetimes or ints of microseconds (None = null)."""
    if any(isinstance(v, int) for v in values):
        return pa.array(values, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.array(values, pa.timestamp("us", tz="UTC"))


# ---- a feature server over a module's repository ---------------------------------------------
# (for the modules that define a module-scoped ``repo`` fixture: test_server_*, test_client)

@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Any]:
    """``fstore serve`` on the module's repository (a server_util.Server), stopped after the module."""
    from server_util import Server

    srv = Server(repo)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def fs(repo: Path) -> Iterator[Any]:
    """An in-process FeatureStore on the module's repository."""
    from fstore import FeatureStore

    with FeatureStore(repo) as store:
        yield store


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server with a metrics port, on its own repository; device_v1 is materialized up to
    an hour ago, customer_stats_v1 up to a day ahead (the fixture data was materialized in a
    window, which sets no watermark). A server_util.Server, stopped after the module."""
    import time

    from fstore import FeatureStore
    from server_util import Server, free_port, repo_copy

    root = repo_copy(tmp_path_factory, "metered")
    now_us = time.time_ns() // 1000
    marks = {"device_v1": now_us - 3600 * 10**6, "customer_stats_v1": now_us + 86_400 * 10**6}
    with FeatureStore(root) as store:
        store.online.write(lambda txn: [store.online.set_watermark(txn, v, us) for v, us in marks.items()])
    srv = Server(root, metrics_port=free_port())
    try:
        yield srv
    finally:
        srv.stop()
