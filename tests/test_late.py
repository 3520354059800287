"""Rule L1, late-arriving data (fstore.offline.late): on real ingested offline stores."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from fstore import FeatureStore
from fstore.offline.late import late_rows
from fstore.quickstart import write_repository
from test_historical import make_repo, ts, write_source

S = 1_000_000
H = 3600 * S


def _store(root: Path, extra: str, rows: list[tuple[int, int, int | None]]) -> tuple[FeatureStore, dict]:
    """One view ``v`` keyed by k, with ``extra`` YAML lines; rows are (k, event s, created s)."""
    make_repo(root, {"v": {"keys": [("k", "int")], "features": [("v", "int64", None)]}}, buckets=3)
    defs = root / "features" / "defs.yaml"
    defs.write_text(defs.read_text().replace("    source: v_src\n", "    source: v_src\n" + extra))
    write_source(root, "v", pa.table({
        "k": pa.array([r[0] for r in rows], pa.int64()), "ts": ts(*[r[1] * S for r in rows]),
        "created": ts(*[None if r[2] is None else r[2] * S for r in rows]), "v": list(range(len(rows)))}))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    return fs, fs.registry.load()["feature_views"]["v_v1"]


ROWS = [(1, 0, 0), (1, 10, 3600 + 10), (2, 5, 5 + 3601), (3, 7, 7 + 9000), (4, 0, None), (5, 100, 50)]


def test_late_rows_are_leakage_with_event_time_as_of(tmp_path):
    fs, view = _store(tmp_path / "r", "    freshness_sla: 1h\n", ROWS)
    [f] = late_rows(fs.offline, view)
    assert f["rule"] == "L1" and f["severity"] == "error" and f["view"] == "v_v1" and f["feature"] is None
    assert f["rows"] == 2  # exactly 1h late is on time; a null created time is not judged
    assert "k=3" in f["message"] and "freshness_sla" in f["message"] and "leakage" in f["message"]
    assert "150m later" in f["message"]
    assert set(f) == {"rule", "severity", "view", "feature", "message", "rows"}


def test_max_delay_overrides_the_sla(tmp_path):
    fs, view = _store(tmp_path / "a", "    freshness_sla: 1h\n    max_delay: 2h\n", ROWS)
    [f] = late_rows(fs.offline, view)
    assert (f["severity"], f["rows"]) == ("error", 1) and "max_delay" in f["message"]
    fs, view = _store(tmp_path / "b", "    freshness_sla: 3h\n    max_delay: 30m\n", ROWS)
    assert late_rows(fs.offline, view)[0]["rows"] == 3


def test_created_timestamp_as_of_is_not_leakage(tmp_path):
    fs, view = _store(tmp_path / "b", "    max_delay: 30m\n    as_of: created_timestamp\n", ROWS)
    assert late_rows(fs.offline, view) == []


def test_silent_on_time_unbounded_or_not_ingested(tmp_path):
    fs, view = _store(tmp_path / "a", "    freshness_sla: 3h\n", ROWS)
    assert late_rows(fs.offline, view) == []
    fs, view = _store(tmp_path / "b", "", ROWS)  # neither max_delay nor freshness_sla: skipped
    assert late_rows(fs.offline, view) == []
    assert late_rows(fs.offline, {**view, "freshness_sla_us": H, "version": 9}) == []  # never ingested


def test_quickstart_is_clean_and_would_leak_on_event_time(tmp_path):
    root = tmp_path / "qs"
    write_repository(root, customers=200, days=5)
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    views = fs.registry.load()["feature_views"]
    assert [f for v in views.values() for f in late_rows(fs.offline, v)] == []
    # its late corrections (a day after the event, SLA 1h) are leakage where the join is on event time
    [f] = late_rows(fs.offline, {**views["customer_stats_v1"], "as_of": None})
    assert f["severity"] == "error" and f["rows"] > 0
