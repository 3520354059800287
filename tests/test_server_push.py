"""PUSH on the feature server (the real ``fstore serve`` in a subprocess, 127.0.0.1 only):
PUSHes arriving during a write are committed as one group and fail alone, the offline
append comes first (a failed one writes nothing online), and pushes that grow the LMDB
map while GETs run lose nothing and crash nothing. Every loop and wait is bounded.
"""
from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
import yaml

from fstore import FeatureStore
from fstore.client import Client
from server_util import (CUSTOMERS, HOST, MAX_ROWS, PUSH_BASE, STATS, UTC, Raw, Server, WriterHeld, assert_error,
                         device_rows, metrics, push_frame, repo_copy, stats_rows, wait_metric)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "server", {"max_rows": MAX_ROWS, "max_frame_bytes": 1 << 20})


# ---- 10. PUSH groups, the offline append first ----------------------------------------------

@pytest.mark.timeout(90)
def test_pushes_arriving_during_a_write_share_one_commit_and_fail_alone(metered: Server) -> None:
    """100 PUSHes from 4 connections arrive while the writer is busy: they are committed
    together (at most 2 transactions), each gets its own reply and count, and the bad one
    in the middle of the burst gets its own error while the others are written. Then 4
    threads push concurrently as fast as the replies come: every push lands."""
    port = metered.metrics_port
    base = PUSH_BASE + 41_000
    bad_rid = 2 * 1000 + 12
    sent: dict[tuple[int, int], int] = {}
    held = WriterHeld(metered)
    conns = [Raw(metered.port, timeout=30) for _ in range(4)]
    try:
        for c, raw in enumerate(conns):
            stream = []
            for i in range(25):
                rid, k = (c + 1) * 1000 + i, base + c * 100 + i
                if rid == bad_rid:
                    stream.append(push_frame(rid, [k], n=["many"]))
                else:
                    stream.append(push_frame(rid, [k]))
                    sent[(c, rid)] = k
            raw.send(b"".join(stream))
        wait_metric(port, "fstore_inflight_requests", lambda v: v == 100)  # all read, none written
        commits = metrics(port).get("fstore_push_commits_total", 0.0)
        held.release()
        replies = {(c, r[0]): r for c, raw in enumerate(conns) for r in (raw.read() for _ in range(25))}
    finally:
        held.release()
        for raw in conns:
            raw.close()
    assert len(replies) == 100
    assert assert_error(replies.pop((1, bad_rid)), bad_rid, "BAD_REQUEST")["field"] == "rows.txn_count_7d"
    assert all(r[1:] == [True, {"written": 1, "offline": False}] for r in replies.values()), replies
    assert 1 <= metrics(port)["fstore_push_commits_total"] - commits <= 2
    with Client(HOST, metered.port, timeout=10) as c:
        got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in sent.values()])
        assert got.values("txn_count_7d") == [k * 3 + 1 for k in sent.values()]
        assert c.get_online_features(STATS, entity_rows=[{"customer_id": base + 112}]).statuses(
            "txn_count_7d")[0].name == "NOT_FOUND"  # the bad push wrote nothing

    def pusher(t: int, out: list[int]) -> None:
        with Client(HOST, metered.port, timeout=20) as c:
            for i in range(40):
                k = base + 1000 + t * 100 + i
                assert c.push("customer_stats", stats_rows([k], dt.datetime.now(UTC) - dt.timedelta(minutes=5))) == 1
                out.append(k)

    done: list[list[int]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=pusher, args=(t, done[t])) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    keys = [k for out in done for k in out]
    assert len(keys) == 160
    with Client(HOST, metered.port, timeout=10) as c:
        got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in keys])
        assert got.values("txn_count_7d") == [k * 3 + 1 for k in keys]


@pytest.mark.timeout(60)
def test_failed_offline_append_writes_nothing_online(server: Server, repo: Path, fs: FeatureStore) -> None:
    """offline=True appends offline first: when that fails, the row is not served either
    (training would never see it), the error says so, and a PUSH of the same group fails
    alone."""
    vdir = fs.offline.view_dir(fs.get_feature_view("device"))
    aside = vdir.with_name(vdir.name + ".aside")
    ts = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    vdir.rename(aside)
    vdir.write_text("not a folder")  # the offline append cannot make the view's folder
    try:
        with Raw(server.port, timeout=20) as raw:
            raw.send(push_frame(1, [], view="device", rows=device_rows(["off-1"], ts), offline=True)
                     + push_frame(2, [], view="device", rows=device_rows(["on-1"], ts)))
            replies = {r[0]: r for r in (raw.read(), raw.read())}
    finally:
        vdir.unlink()
        aside.rename(vdir)
    err = assert_error(replies[1], 1, "OFFLINE_STORE_ERROR")
    assert "nothing was written online" in err["message"], err
    assert replies[2] == [2, True, {"written": 1, "offline": False}]
    with Client(HOST, server.port, timeout=10) as c:
        got = c.get_online_features(["device:risk", "device:label"],
                                    entity_rows=[{"device_id": "off-1"}, {"device_id": "on-1"}])
        assert [s.name for s in got.statuses("risk")] == ["NOT_FOUND", "PRESENT"]
        # and with the folder back, the same push is appended offline and served
        assert c.push("device", device_rows(["off-1"], ts), offline=True) == 1
        assert c.get_online_features(["device:label"], entity_rows=[{"device_id": "off-1"}]).values(
            "label") == ["pushed"]


# ---- 12. the map grown by pushes while GETs run --------------------------------------------------

def test_pushes_that_grow_the_map_while_gets_run_lose_nothing_and_crash_nothing(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The map is grown by the pusher thread's writes while the event loop keeps reading:
    the remap runs on the loop between callbacks (LMDB must not remap under a reader)."""
    root = repo_copy(tmp_path_factory, "growing")
    doc = yaml.safe_load((root / "fstore.yaml").read_text())
    doc["online_store"] = {"map_size": 65536}  # LMDB starts at the file's size: the first pushes fill it
    (root / "fstore.yaml").write_text(yaml.safe_dump(doc))
    srv = Server(root)
    try:
        before = (root / "data" / "online" / "data.mdb").stat().st_size
        stop = threading.Event()
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                with Client(HOST, srv.port, timeout=30) as c:
                    while not stop.is_set():
                        c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in CUSTOMERS[:50]])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        ts = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
        base, per_push, pushes = PUSH_BASE + 500_000, 2000, 12
        with Client(HOST, srv.port, timeout=60) as c:
            for i in range(pushes):
                ids = list(range(base + i * per_push, base + (i + 1) * per_push))
                assert c.push("customer_stats", stats_rows(ids, ts)) == per_push
            stop.set()
            for t in threads:
                t.join(timeout=60)
            assert not errors, errors
            assert srv.alive()
            probe = [base, base + per_push * pushes // 2, base + per_push * pushes - 1]
            got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in probe]).to_dict()
            assert got["txn_count_7d"] == [k * 3 + 1 for k in probe]
        assert (root / "data" / "online" / "data.mdb").stat().st_size > before  # it did grow
    finally:
        srv.stop()
