"""The feature server's Prometheus metrics endpoint (``--metrics-port``), against the real
``fstore serve`` in a subprocess: request, value and error counters summed over workers,
the open-connection, data-age and in-flight gauges, and the metrics folder removed on
exit. Only 127.0.0.1; every loop and wait is bounded.
"""
from __future__ import annotations

import datetime as dt
import socket
import time

import pytest

from fstore import FeatureStore
from fstore.client import Client
from server_util import (GET, HOST, PUSH_BASE, STATS, UTC, Raw, Server, WriterHeld, assert_error, device_rows,
                         free_port, get_args, metrics, push_frame, repo_copy, wait_metric, worker_pids)


# ---- 9. workers and metrics -------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_two_workers_share_the_port_and_report_metrics(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "workers")
    with FeatureStore(root) as fs:
        expected = fs.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in (1, 2, 3, 10**9)]) \
            .to_dict(include_metadata=True)
    mport = free_port()
    srv = Server(root, workers=2, metrics_port=mport)
    conns: list[Raw] = []
    try:
        deadline = time.monotonic() + 30
        while len(worker_pids(srv)) < 2:  # both workers listen
            assert time.monotonic() < deadline, worker_pids(srv)
            time.sleep(0.1)
        for i in range(64):  # connections spread over the workers by the kernel
            raw = Raw(srv.port, timeout=10)
            conns.append(raw)
            raw.request(GET, 2, get_args([1, 2, 3, 10**9]))
            rid, ok, res = raw.read()
            assert (rid, ok) == (2, True)
            assert dict(zip(res["names"], res["values"]))["segment"] == expected["segment"]
            if i >= 8 and all(n > 0 for n in worker_pids(srv).values()):
                break
        per_worker = worker_pids(srv)
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
        for raw in conns[:3]:
            raw.request(GET, 3, get_args([1], ["customer_stats:nope"]))
            assert_error(raw.read(), 3, "UNKNOWN_OBJECT")
        deadline = time.monotonic() + 15
        while True:
            m = metrics(mport)
            if m.get("fstore_open_connections") == len(conns):
                break
            assert time.monotonic() < deadline, {k: v for k, v in m.items() if k.startswith("fstore_open")}
            time.sleep(0.1)
        assert m['fstore_request_seconds_count{op="get"}'] >= len(conns)
        assert m['fstore_request_seconds_bucket{le="+Inf",op="get"}'] == m['fstore_request_seconds_count{op="get"}']
        assert m['fstore_values_total{status="PRESENT",view="customer_stats_v1"}'] > 0
        # customer 10**9 in every request
        assert m['fstore_values_total{status="NOT_FOUND",view="customer_stats_v1"}'] >= len(conns)
        assert m['fstore_errors_total{code="UNKNOWN_OBJECT"}'] >= 3
        for raw in conns:
            raw.close()
        deadline = time.monotonic() + 15
        while metrics(mport).get("fstore_open_connections") != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert srv.terminate(20) == 0
    finally:
        for raw in conns:
            raw.close()
        srv.stop()


# ---- 10. gauges --------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_data_age_gauge_follows_the_watermark_and_pushes(metered: Server) -> None:
    """fstore_data_age_seconds: now minus the newer of the view's watermark and the newest
    event time pushed to it; refreshed about once a second without any request."""
    port = metered.metrics_port
    device = 'fstore_data_age_seconds{view="device_v1"}'
    age = wait_metric(port, device, lambda v: v is not None)
    assert 3600 - 5 <= age <= 3600 + 60, age  # the watermark set an hour ago
    # materialized up to a day ahead: no age
    assert wait_metric(port, 'fstore_data_age_seconds{view="customer_stats_v1"}', lambda v: v is not None) == 0
    with Client(HOST, metered.port, timeout=10) as c:
        assert c.push("device", device_rows(["age-1"], dt.datetime.now(UTC) - dt.timedelta(seconds=120))) == 1
    age = wait_metric(port, device, lambda v: v is not None and v < 1000)
    assert 120 <= age <= 180, age
    later = wait_metric(port, device, lambda v: v is not None and v > age)  # it keeps ageing on its own
    assert later <= 180


@pytest.mark.timeout(60)
def test_inflight_gauge_counts_pushes_waiting_for_their_commit(metered: Server) -> None:
    """PUSHes waiting for the LMDB writer are in flight and get no reply before their
    commit; once written, the gauge is back to 0."""
    port = metered.metrics_port
    ids = [PUSH_BASE + 40_000 + i for i in range(3)]
    wait_metric(port, "fstore_inflight_requests", lambda v: v == 0)
    held = WriterHeld(metered)
    try:
        with Raw(metered.port, timeout=20) as raw:
            for i, k in enumerate(ids):
                raw.send(push_frame(10 + i, [k]))
            wait_metric(port, "fstore_inflight_requests", lambda v: v == 3)
            raw.sock.settimeout(0.5)
            with pytest.raises(socket.timeout):
                raw.read()  # nothing is answered before it is committed
            raw.sock.settimeout(20)
            held.release()
            replies = sorted((raw.read() for _ in ids), key=lambda r: r[0])
    finally:
        held.release()
    assert replies == [[10 + i, True, {"written": 1, "offline": False}] for i in range(3)]
    wait_metric(port, "fstore_inflight_requests", lambda v: v == 0)
    with Client(HOST, metered.port, timeout=10) as c:
        assert c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in ids]).values(
            "txn_count_7d") == [k * 3 + 1 for k in ids]


# ---- 11. the metrics folder -----------------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_folder_is_removed_when_the_server_exits(tmp_path_factory: pytest.TempPathFactory,
                                                         workers: int) -> None:
    root = repo_copy(tmp_path_factory, f"metricsdir{workers}")
    tmp = root.parent / "tmp"
    tmp.mkdir()
    mport = free_port()
    srv = Server(root, workers=workers, metrics_port=mport, env={"TMPDIR": str(tmp)})
    try:
        with Client(HOST, srv.port, timeout=10) as c:
            c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
        wait_metric(mport, 'fstore_request_seconds_count{op="get"}', lambda v: v is not None and v >= 1)
        made = list(tmp.glob("fstore-metrics-*"))
        assert len(made) == 1 and any(made[0].glob("*.db")), made
        assert srv.terminate(30) == 0, srv.logs()
        assert not made[0].exists()
    finally:
        srv.stop()


# ---- 12. GET metrics counted in C -----------------------------------------------------------------

def _get_metrics(port: int) -> dict[str, float]:
    return {k: v for k, v in metrics(port).items()
            if k.startswith(("fstore_entity_rows", 'fstore_request_seconds_count{op="get"}',
                             'fstore_request_seconds_bucket{le="+Inf",op="get"}', "fstore_values_total"))}


@pytest.mark.timeout(120)
def test_get_metrics_equal_what_was_sent_on_both_paths_and_workers(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No served-read listener: the GETs are counted in C (fast path and Python path alike)
    and flushed by each worker's timer; the scrape, summed over two workers, equals the
    requests, rows per request and value statuses the replies carried."""
    root = repo_copy(tmp_path_factory, "counted")
    mport = free_port()
    srv = Server(root, workers=2, metrics_port=mport)
    conns: list[Raw] = []
    sizes = [1, 3, 7, 60, 0]  # 0: an empty entity map, answered by the Python path
    names = ["PRESENT", "NOT_FOUND", "EXPIRED", "DEFAULTED"]
    gets, rows = 0, [0] * len(sizes)
    statuses: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 30
        while len(worker_pids(srv)) < 2:
            assert time.monotonic() < deadline, worker_pids(srv)
            time.sleep(0.1)
        for _ in range(64):  # connections spread over the workers by the kernel
            conns.append(Raw(srv.port, timeout=10))
            if len(conns) >= 4 and all(n > 0 for n in worker_pids(srv).values()):
                break
        assert all(n > 0 for n in worker_pids(srv).values()), worker_pids(srv)
        perms = [STATS, STATS[::-1], STATS[1:] + STATS[:1]]  # a new shape: the Python path on each worker
        for round_ in range(30):
            for c, raw in enumerate(conns):
                i = (round_ + c) % len(sizes)
                ids = [k * 7 % 500 + 1 for k in range(round_, round_ + sizes[i])]  # some above 400: no row
                args = get_args(ids, perms[round_ % 3] if round_ < 3 else STATS)
                if sizes[i] == 0:
                    args["entities"] = {}
                raw.request(GET, 100 + round_, args)
                rid, ok, res = raw.read()
                assert (rid, ok) == (100 + round_, True), res
                gets, rows[i] = gets + 1, rows[i] + 1
                for s in res["status"]:
                    statuses[names[s]] = statuses.get(names[s], 0) + 1
        assert statuses.get("NOT_FOUND", 0) > 0 and statuses.get("PRESENT", 0) > 0
        expected = {'fstore_request_seconds_count{op="get"}': gets,
                    'fstore_request_seconds_bucket{le="+Inf",op="get"}': gets,
                    "fstore_entity_rows_count": gets, "fstore_entity_rows_sum": sum(
                        n * k for n, k in zip(sizes, rows)),
                    'fstore_entity_rows_bucket{le="1.0"}': rows[0] + rows[4],
                    'fstore_entity_rows_bucket{le="5.0"}': rows[0] + rows[4] + rows[1],
                    'fstore_entity_rows_bucket{le="10.0"}': gets - rows[3],
                    'fstore_entity_rows_bucket{le="50.0"}': gets - rows[3],
                    'fstore_entity_rows_bucket{le="100.0"}': gets,
                    **{f'fstore_values_total{{status="{s}",view="customer_stats_v1"}}': n
                       for s, n in statuses.items()}}
        deadline = time.monotonic() + 10  # the workers flush every 25 ms; a scrape reads their files
        while True:
            got = _get_metrics(mport)
            if all(got.get(k) == v for k, v in expected.items()):
                break
            assert time.monotonic() < deadline, {k: (got.get(k), v) for k, v in expected.items()}
            time.sleep(0.05)
        assert sum(v for k, v in got.items() if k.startswith("fstore_values_total")) == sum(statuses.values())
        assert got.get('fstore_values_total{status="EXPIRED",view="customer_stats_v1"}') == statuses.get("EXPIRED", 0)
    finally:
        for raw in conns:
            raw.close()
        srv.stop()
