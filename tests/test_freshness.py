"""Freshness: each view's freshness_sla against its newest data online (watermark or newest
push) and offline (newest ingested event); ``fstore freshness`` and the server's gauges."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import edit_defs, make_views_repo, utc_ts, write_view_source
from fstore import FeatureStore
from fstore.online.status import freshness_breached
from server_util import HOST, Server, device_rows, free_port, repo_copy, wait_metric

UTC = dt.timezone.utc


def fstore(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("fstore")
    return subprocess.run([str(exe), "-r", str(root), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def test_the_rule() -> None:
    assert not freshness_breached(None, None, 10)          # no SLA: never
    assert freshness_breached(5, None, 10)                 # no data: breached
    assert not freshness_breached(5, 5, 10) and freshness_breached(5, 4, 10)
    assert not freshness_breached(5, 20, 10)               # in the future: age 0


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = make_views_repo(tmp_path / "repo", {
        "fresh": {"keys": [("uid", "int")], "features": [("x", "float64", None)]},
        "plain": {"keys": [("uid", "int")], "features": [("y", "float64", None)]}})
    now = dt.datetime.now(UTC)
    for view, col, age in (("fresh", "x", dt.timedelta(hours=3)), ("plain", "y", dt.timedelta(days=30))):
        write_view_source(root, view, pa.table({"uid": [1, 2], "ts": utc_ts([now - age - dt.timedelta(hours=1),
                                                                             now - age]),
                                                "created": utc_ts([now, now]), col: [1.0, 2.0]}))

    def sla(doc: dict[str, Any]) -> None:
        doc["feature_views"][0]["freshness_sla"] = "2h"
    edit_defs(root, sla)
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
    return root


def checks(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["view"], c["store"]): c for c in doc["views"]}


def test_breaches_offline_and_online_then_a_push_clears_online(repo: Path) -> None:
    # ingested 3 h ago with a 2 h SLA: offline breached; never materialized: online breached
    p = fstore(repo, "freshness", "--json")
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["breached"] == 2 and set(checks(doc)) == {("fresh_v1", "offline"), ("fresh_v1", "online")}
    off = checks(doc)[("fresh_v1", "offline")]
    assert off["freshness_sla"] == "2h" and off["freshness_sla_seconds"] == 7200
    assert 3 * 3600 - 5 <= off["age_seconds"] <= 3 * 3600 + 60
    assert checks(doc)[("fresh_v1", "online")]["newest_event"] is None
    # --all lists the view without an SLA too, never in breach
    every = checks(json.loads(fstore(repo, "freshness", "--all", "--json").stdout))
    assert every[("plain_v1", "offline")]["breached"] is False and every[("plain_v1", "offline")]["age_seconds"] > 86400
    # a push of a recent event makes online fresh (stored, so another process sees it), not offline
    with FeatureStore(repo) as fs:
        fs.push("fresh", {"uid": [3], "ts": [dt.datetime.now(UTC) - dt.timedelta(minutes=5)],
                          "created": [dt.datetime.now(UTC)], "x": [3.0]})
    doc = json.loads(fstore(repo, "freshness", "--json", "--all").stdout)
    on = checks(doc)[("fresh_v1", "online")]
    assert on["breached"] is False and 290 <= on["age_seconds"] <= 400
    assert doc["breached"] == 1
    # materialized up to now: the watermark is fresh as well; a new ingest clears offline
    p = fstore(repo, "freshness")
    assert p.returncode == 1 and "fresh_v1" in p.stdout and "offline" in p.stdout
    with FeatureStore(repo) as fs:
        fs.materialize_incremental("now")
        status = fs.freshness()
    assert [c["store"] for c in status.breached] == ["offline"]


@pytest.mark.timeout(90)
def test_the_server_exports_the_sla_and_the_breach(tmp_path_factory: pytest.TempPathFactory) -> None:
    """device (SLA 30m) materialized to an hour ago: breached until a push of a recent event;
    customer_stats (SLA 1h) materialized ahead: not breached; a view without an SLA: no series."""
    root = repo_copy(tmp_path_factory, "freshness")
    edit_defs(root, lambda doc: next(v for v in doc["feature_views"] if v["name"] == "device")
              .__setitem__("freshness_sla", "30m"))
    now_us = time.time_ns() // 1000
    marks = {"device_v1": now_us - 3600 * 10**6, "customer_stats_v1": now_us + 86_400 * 10**6}
    with FeatureStore(root) as store:
        store.apply()
        store.online.write(lambda txn: [store.online.set_watermark(txn, v, us) for v, us in marks.items()])
    srv = Server(root, metrics_port=free_port())
    try:
        port = srv.metrics_port
        assert wait_metric(port, 'fstore_freshness_sla_seconds{view="device_v1"}', lambda v: v is not None) == 1800
        assert wait_metric(port, 'fstore_freshness_breached{view="device_v1"}', lambda v: v is not None) == 1
        assert wait_metric(port, 'fstore_freshness_sla_seconds{view="customer_stats_v1"}',
                           lambda v: v is not None) == 3600
        assert wait_metric(port, 'fstore_freshness_breached{view="customer_stats_v1"}', lambda v: v is not None) == 0
        from fstore.client import Client
        with Client(HOST, srv.port, timeout=10) as c:
            assert c.push("device", device_rows(["f-1"], dt.datetime.now(UTC) - dt.timedelta(seconds=60))) == 1
        assert wait_metric(port, 'fstore_freshness_breached{view="device_v1"}', lambda v: v == 0) == 0
        from server_util import metrics
        assert not any(k.startswith("fstore_freshness_sla_seconds") and "customer_driver" in k
                       for k in metrics(port))
    finally:
        srv.stop()
