"""The feature server's life, against the real ``fstore serve`` in a subprocess: SIGTERM
drains the requests in flight, a new registry and new data are picked up without a
restart, and the supervisor replaces a killed worker but not one that dies at start
forever. Only 127.0.0.1; every loop and wait is bounded.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import edit_defs
from fstore import FeatureStore
from fstore.client import Client
from fstore.errors import FstoreError
from server_util import (CUSTOMERS, GET, HOST, PUSH, PUSH_BASE, STATS, UTC, Raw, Server, frame, get_args,
                         repo_copy, stats_rows, worker_pids)


# ---- 7. SIGTERM drains: no request sent before it is lost ----------------------------------------

BIG_GET = {"service": "everything", "entities": {"customer_id": CUSTOMERS, "driver_id": [7] * len(CUSTOMERS)}}


class Pipeliner:
    """One raw connection: a sender pipelining requests (up to ``window`` unanswered), a
    reader matching replies; records when each request's bytes were fully sent.

    ``slow``: big requests, no window, and the reader reads nothing until ``start_reading``
    is set: the server's buffers fill, it stops reading, the sender blocks.
    """

    def __init__(self, port: int, tid: int, stop: threading.Event, pushes: bool = False,
                 slow: threading.Event | None = None) -> None:
        self.raw = Raw(port, timeout=30)
        self.tid, self.stop, self.pushes, self.slow = tid, stop, pushes, slow
        self.sent: dict[int, tuple[str, int, float]] = {}
        self.replies: dict[int, Any] = {}
        self.window = threading.Semaphore(16 if slow is None else 10**6)
        self.last_progress = time.monotonic()
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        ts = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
        for i in range(1, 800 if self.slow else 50_000):
            if self.stop.is_set() or not self.window.acquire(timeout=10):
                return
            if self.slow is not None:
                data, what, k = frame([GET, i, BIG_GET]), "big", 0
            elif self.pushes and i % 4 == 0:
                k = PUSH_BASE + 20_000 + self.tid * 100_000 + i
                data, what = frame([PUSH, i, {"view": "customer_stats", "rows": stats_rows([k], ts)}]), "push"
            else:
                k = CUSTOMERS[(i * 7 + self.tid) % len(CUSTOMERS)]
                data, what = frame([GET, i, get_args([k])]), "get"
            try:
                self.raw.send(data)
            except OSError:
                return
            self.sent[i] = (what, k, time.monotonic())
            self.last_progress = time.monotonic()

    def _read(self) -> None:
        if self.slow is not None:
            self.slow.wait(30)
        while True:
            try:
                reply = self.raw.read()
            except (ConnectionError, OSError):
                return
            self.replies[reply[0]] = reply
            self.window.release()

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)
        self.raw.close()


def unread_by_server(port: int, client: Raw) -> int:
    """Bytes from ``client`` waiting unread in the server's socket (rx_queue in /proc/net/tcp)."""
    peer = client.sock.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == peer:
            return int(fields[4].split(":")[1], 16)
    return 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pushes", [True, False], ids=["with_pushes", "gets_only"])
def test_sigterm_drains_requests_in_flight(tmp_path_factory: pytest.TempPathFactory, pushes: bool) -> None:
    """Four clients pipeline GETs and PUSHes as fast as they can, a fifth sends big GETs and
    does not read until SIGTERM (so its requests wait in the socket buffers): every request
    fully sent before SIGTERM gets its correct reply, every acknowledged PUSH is written,
    and the server exits 0."""
    root = repo_copy(tmp_path_factory, "drain")
    with FeatureStore(root) as fs:
        expected = {k: v for k, v in zip(CUSTOMERS, zip(*[fs.get_online_features(STATS, entity_rows=[
            {"customer_id": k} for k in CUSTOMERS]).values(f.split(":")[1]) for f in STATS]))}
        big = fs.get_online_features(feature_service="everything", entity_rows=[
            {"customer_id": k, "driver_id": 7} for k in CUSTOMERS]).values("nick")
    srv = Server(root)
    stop, reading = threading.Event(), threading.Event()
    clients: list[Pipeliner] = []
    try:
        clients = [Pipeliner(srv.port, tid, stop, pushes=pushes and tid == 0) for tid in range(4)]
        clients.append(Pipeliner(srv.port, 4, stop, slow=reading))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (sum(len(c.replies) for c in clients) < 1000
                                               or time.monotonic() - clients[-1].last_progress < 0.3
                                               or not unread_by_server(srv.port, clients[-1].raw)):
            time.sleep(0.05)
        # the server stopped reading the slow client: its requests wait in the socket buffer
        assert unread_by_server(srv.port, clients[-1].raw) > 0
        t_term = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        reading.set()
        try:
            rc = srv.proc.wait(30)
        finally:
            stop.set()
        for c in clients:
            c.join(20)
    finally:
        stop.set()
        reading.set()
        srv.stop()
    assert rc == 0, srv.logs()  # and it exited within 30 s (DRAIN_SECONDS is 10)
    before = 0
    pushed = []
    for c in clients:
        for rid, (what, k, t_sent) in c.sent.items():
            reply = c.replies.get(rid)
            if t_sent < t_term:
                before += 1
                assert reply is not None, f"client {c.tid}: request {rid} ({what} {k}) was sent before SIGTERM and lost"
            elif reply is None:
                continue
            if reply[1] is False:
                assert t_sent >= t_term and reply[2]["code"] == "SHUTTING_DOWN", reply
                continue
            if what == "get":
                values = dict(zip(reply[2]["names"], reply[2]["values"]))
                assert tuple(values[f.split(":")[1]][0] for f in STATS) == expected[k], (k, reply)
            elif what == "big":
                assert dict(zip(reply[2]["names"], reply[2]["values"]))["nick"] == big
            else:
                assert reply[2]["written"] == 1
                pushed.append(k)
    assert before > 0 and bool(pushed) == pushes
    with FeatureStore(root) as fs:  # every acknowledged push was written
        got = fs.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in pushed])
        assert got.values("txn_count_7d") == [k * 3 + 1 for k in pushed]
    assert "Traceback" not in srv.logs(), srv.logs()


# ---- 8. a new registry and new data without a restart -------------------------------------------

@pytest.mark.timeout(90)
def test_new_registry_and_new_data_are_picked_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "reload")
    srv = Server(root)
    try:
        with Client(HOST, srv.port, timeout=10) as c, FeatureStore(root) as fs:
            with pytest.raises(FstoreError) as info:
                c.get_online_features(feature_service="late", entity_rows=[{"customer_id": 1}])
            assert info.value.code == "UNKNOWN_OBJECT"
            before = c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
            # a new view, a new version of an existing one and a new service, applied by another process
            now = dt.datetime.now(UTC)
            pq.write_table(pa.table({"customer_id": pa.array([1, 2], pa.int64()),
                                     "ts": pa.array([now - dt.timedelta(hours=1)] * 2, pa.timestamp("us", tz="UTC")),
                                     "bonus": pa.array([10, 20], pa.int64())}), root / "data" / "extra.parquet")

            def change(doc: dict[str, Any]) -> None:
                doc["sources"].append({"name": "extra_src", "path": "data/extra.parquet", "timestamp_field": "ts"})
                doc["feature_views"].append({"name": "extra", "version": 1, "entities": ["customer"],
                                             "source": "extra_src", "features": [{"name": "bonus", "dtype": "int64"}]})
                doc["feature_services"].append({"name": "late", "features": ["extra:bonus", "customer_stats:segment"]})
            edit_defs(root, change)
            _, version = fs.apply()
            assert version == 2
            fs.ingest(["extra"])
            fs.materialize("2000-01-01T00:00:00Z", now, views=["extra"])
            expected = fs.get_online_features(feature_service="late",
                                              entity_rows=[{"customer_id": k} for k in (1, 2, 3)])
            deadline = time.monotonic() + 15
            while True:
                try:
                    got = c.get_online_features(feature_service="late",
                                                entity_rows=[{"customer_id": k} for k in (1, 2, 3)])
                    break
                except FstoreError as exc:
                    assert exc.code == "UNKNOWN_OBJECT" and time.monotonic() < deadline
                    time.sleep(0.1)
            assert got.to_dict(include_metadata=True) == expected.to_dict(include_metadata=True)
            assert got.values("bonus") == [10, 20, None]
            assert c.info()["registry_version"] == 2 and c.health()["registry_version"] == 2
            # the old shapes still answer the same
            assert c.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).to_dict(include_metadata=True) == \
                before.to_dict(include_metadata=True)
            # newly materialized rows of an existing view are served at once (no restart, no reload)
            path = root / "data" / "customer_stats.parquet"
            table = pq.read_table(path)
            row = pa.table({"customer_id": pa.array([1], pa.int64()),
                            "event_timestamp": pa.array([now - dt.timedelta(minutes=1)], pa.timestamp("us", tz="UTC")),
                            "created_timestamp": pa.array([now], pa.timestamp("us", tz="UTC")),
                            "avg_amount_7d": [1.25], "txn_count_7d": pa.array([999], pa.int64()), "segment": ["fresh"]})
            pq.write_table(pa.concat_tables([table, row.cast(table.schema)]), path)
            fs.ingest(["customer_stats"])
            fs.materialize("2000-01-01T00:00:00Z", now, views=["customer_stats"])
            got = c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
            assert got.values("segment") == ["fresh"] and got.values("txn_count_7d") == [999]
    finally:
        srv.stop()


# ---- 11. worker supervision ---------------------------------------------------------------------

def wait_workers(srv: Server, n: int, timeout: float = 30) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(srv)) != n:
        assert time.monotonic() < deadline, (pids, srv.logs())
        time.sleep(0.1)
    return pids


@pytest.mark.timeout(120)
def test_a_killed_worker_is_replaced(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "restart")
    with FeatureStore(root) as fs:
        expected = fs.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).values("segment")
    srv = Server(root, workers=2)
    try:
        victim, survivor = sorted(wait_workers(srv, 2))
        os.kill(victim, signal.SIGKILL)
        try:  # until it is gone: a connection made while it dies may land in its backlog and be reset
            psutil.Process(victim).wait(10)
        except psutil.NoSuchProcess:
            pass
        deadline = time.monotonic() + 30
        while True:  # the port keeps serving while the replacement starts, on fresh connections
            with Client(HOST, srv.port, timeout=10, retries=1) as c:
                assert c.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).values("segment") == expected
            pids = worker_pids(srv)
            if len(pids) == 2 and victim not in pids:
                break
            assert time.monotonic() < deadline, (pids, srv.logs())
            time.sleep(0.1)
        assert survivor in pids
        assert re.search(rf"worker {victim} exited \(killed by SIGKILL\); started worker \d+", srv.logs()), srv.logs()
        for _ in range(20):  # both answer (the kernel spreads connections)
            with Client(HOST, srv.port, timeout=10, retries=0) as c:
                assert c.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).values("segment") == expected
        assert srv.terminate(30) == 0, srv.logs()
    finally:
        srv.stop()


@pytest.mark.timeout(120)
def test_a_worker_that_dies_at_start_is_not_restarted_forever(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With fstore.yaml gone, a new worker dies at start: after RESTARTS_PER_MINUTE restarts
    the parent stops, the other worker keeps serving, and when it dies too the server exits 1."""
    from fstore.serving.supervisor import RESTARTS_PER_MINUTE

    root = repo_copy(tmp_path_factory, "crashloop")
    srv = Server(root, workers=2)
    try:
        victim, survivor = sorted(wait_workers(srv, 2))
        # a worker holds the listening socket from its start (the supervisor hands it over): wait
        # for the line the supervisor logs once every worker accepts, before breaking the config
        deadline = time.monotonic() + 30
        while "serving project" not in srv.logs():
            assert time.monotonic() < deadline and srv.alive(), srv.logs()
            time.sleep(0.1)
        (root / "fstore.yaml").rename(root / "fstore.yaml.aside")
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while "not restarted" not in srv.logs():
            assert time.monotonic() < deadline and srv.alive(), srv.logs()
            time.sleep(0.2)
        log = srv.log.read_text(errors="replace")  # whole: each dead worker's traceback is long
        assert len(re.findall(r"started worker \d+ in its place", log)) == RESTARTS_PER_MINUTE, log
        # the last worker that died at start held the inherited listening socket until it was
        # gone: wait (bounded) for it to leave the process table
        deadline = time.monotonic() + 15
        while set(pids := worker_pids(srv)) != {survivor} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(pids) == {survivor}, (pids, srv.logs())
        with Client(HOST, srv.port, timeout=10) as c:
            assert c.health()["ready"]
        os.kill(survivor, signal.SIGKILL)
        assert srv.proc.wait(30) == 1, srv.logs()
    finally:
        srv.stop()
