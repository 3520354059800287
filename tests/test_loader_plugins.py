"""The example SQLite extract loader in loaders/, used through a real repository."""
from __future__ import annotations

import datetime as dt
import sqlite3
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from fstore import FeatureStore
from fstore.errors import DefinitionErrors

LOADERS = Path(__file__).resolve().parents[1] / "loaders"

DEFS = """\
entities:
  - {name: customer, join_keys: [customer_id]}
sources:
  - name: orders_src
    path: warehouse.db
    format: sqlite_extract:SqliteExtractLoader
    timestamp_field: ts
    options: {query: "SELECT customer_id, ts, amount FROM orders"}
feature_views:
  - name: orders
    entities: [customer]
    source: orders_src
    features: [{name: amount, dtype: float64}]
"""


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(LOADERS))
    (tmp_path / "fstore.yaml").write_text("project: wh\n")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "defs.yaml").write_text(DEFS)
    with sqlite3.connect(tmp_path / "warehouse.db") as conn:
        conn.execute("CREATE TABLE orders (customer_id INTEGER, ts TEXT, amount REAL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                         [(1, "2024-01-01T00:00:00", 10.0), (1, "2024-01-02T00:00:00", 20.0), (2, "2024-01-01T00:00:00", 5.0)])
    yield tmp_path
    sys.modules.pop("sqlite_extract", None)


def test_sqlite_extract_ingests_and_joins(repo):
    fs = FeatureStore(repo)
    fs.apply()
    [result] = fs.ingest()
    assert result.rows == 3
    assert fs.ingest()[0].up_to_date  # same file, same query: nothing re-read
    ent = pa.table({"customer_id": [1, 1, 2], "event_timestamp": pa.array(
        [dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 3), dt.datetime(2023, 12, 31)], pa.timestamp("us"))})
    out = fs.get_historical_features(ent, ["orders:amount"])
    assert out.column("amount").to_pylist() == [10.0, 20.0, None]


def test_sqlite_extract_schema_is_checked(repo):
    defs = (repo / "features" / "defs.yaml").read_text().replace("{name: amount, dtype: float64}",
                                                                 "{name: amount, dtype: string}")
    (repo / "features" / "defs.yaml").write_text(defs)
    with pytest.raises(DefinitionErrors, match=r"orders.*amount.*declared string"):
        FeatureStore(repo).plan()
