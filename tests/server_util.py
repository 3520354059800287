"""Helpers for the feature server's integration tests: a repository with generated data,
the real ``fstore serve`` as a subprocess on free ports, raw-socket protocol helpers, and
what the test_server_* modules share (request builders, error and metrics checks).

Everything talks to 127.0.0.1 only. Every wait is bounded in time and count; every
server started here is killed (its whole process group) when the test is done.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import msgpack
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from conftest import edit_defs, make_demo_repo
from fstore import FeatureStore
from fstore.client import Client, wait_until_ready

UTC = dt.timezone.utc
HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
FSTORE = str(Path(sys.executable).parent / "fstore")

# entity ids: the generated customers, and a range no fixture data touches (for pushes)
CUSTOMERS = list(range(1, 401))
PUSH_BASE = 900_000
DRIVERS = [7, 501, 502, 0]
DEVICES = ["dev-1", "", "ünï", "a\x00b", "7", "x" * 200]

PROFILE_VIEW = {
    "name": "profile", "version": 1, "entities": ["customer"], "source": "profile_src", "ttl": "30d",
    "features": [
        {"name": "age", "dtype": "int32"},
        {"name": "score", "dtype": "float32", "default": -1.0},
        {"name": "vip", "dtype": "bool"},
        {"name": "blob", "dtype": "bytes"},
        {"name": "signup", "dtype": "timestamp", "default": "2000-01-01T00:00:00+00:00"},
        {"name": "nick", "dtype": "string"},
    ],
}
PROFILE_SRC = {"name": "profile_src", "path": "data/profile.parquet", "timestamp_field": "ts"}
DEVICE_VIEW = {"name": "device", "version": 1, "entities": ["device"], "source": "device_src",
               "features": [{"name": "risk", "dtype": "float64"}, {"name": "label", "dtype": "string", "default": "?"}]}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _times(rng: random.Random, now: dt.datetime, n: int) -> list[dt.datetime]:
    """Event times well inside the 7 d / 30 d ttls, well outside them, or a day in the future:
    never within hours of a boundary, so a read a few seconds later gives the same statuses."""
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.7:
            out.append(now - dt.timedelta(hours=rng.uniform(1, 6 * 24)))
        elif kind < 0.95:
            out.append(now - dt.timedelta(days=rng.uniform(40, 60)))
        else:
            out.append(now + dt.timedelta(days=1))
    return out


def build_repo(root: Path, server: dict[str, Any] | None = None, seed: int = 7) -> Path:
    """The demo repository of conftest, with generated data for 400 customers (times
    relative to now), an extra view of every dtype, applied, ingested and materialized."""
    rng = random.Random(seed)
    make_demo_repo(root)
    project: dict[str, Any] = {"project": "demo"}
    if server:
        project["server"] = server
    (root / "fstore.yaml").write_text(yaml.safe_dump(project))
    now = dt.datetime.now(UTC)

    def add_profile(doc: dict[str, Any]) -> None:
        doc["entities"].append({"name": "device", "join_keys": ["device_id"]})
        doc["sources"].append(dict(PROFILE_SRC))
        doc["sources"].append({"name": "device_src", "path": "data/device.parquet", "timestamp_field": "ts"})
        doc["feature_views"].append(dict(PROFILE_VIEW))
        doc["feature_views"].append(dict(DEVICE_VIEW))
        doc["feature_services"].append({"name": "everything", "features": ["customer_stats", "profile",
                                                                           "customer_driver"]})
    edit_defs(root, add_profile)

    ids = [c for c in CUSTOMERS if rng.random() < 0.85]  # some customers have no row at all
    ids = ids + rng.sample(ids, 60)  # and some have two (the newest wins)
    n = len(ids)
    ev = _times(rng, now, n)
    pq.write_table(pa.table({
        "customer_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array(ev, pa.timestamp("us", tz="UTC")),
        "created_timestamp": pa.array([t + dt.timedelta(seconds=rng.randint(0, 100)) for t in ev],
                                      pa.timestamp("us", tz="UTC")),
        "avg_amount_7d": pa.array([None if rng.random() < 0.1 else round(rng.uniform(0, 500), 2) for _ in ids],
                                  pa.float64()),
        "txn_count_7d": pa.array([None if rng.random() < 0.1 else rng.randint(0, 99) for _ in ids], pa.int64()),
        "segment": pa.array([rng.choice(["gold", "silver", "bronze", None, "", "ünï"]) for _ in ids]),
    }), root / "data" / "customer_stats.parquet")

    pids = [c for c in CUSTOMERS if rng.random() < 0.8]
    pev = _times(rng, now, len(pids))
    pq.write_table(pa.table({
        "customer_id": pa.array(pids, pa.int64()),
        "ts": pa.array(pev, pa.timestamp("us", tz="UTC")),
        "age": pa.array([None if rng.random() < 0.1 else rng.randint(-5, 2**31 - 1) for _ in pids], pa.int32()),
        "score": pa.array([rng.choice([None, 0.5, -0.0, 1e30, float("inf")]) for _ in pids], pa.float32()),
        "vip": pa.array([rng.choice([None, True, False]) for _ in pids], pa.bool_()),
        "blob": pa.array([rng.choice([None, b"", b"\x00\xff", bytes(range(40))]) for _ in pids], pa.binary()),
        "signup": pa.array([rng.choice([None, now - dt.timedelta(days=400), dt.datetime(1969, 7, 20, tzinfo=UTC)])
                            for _ in pids], pa.timestamp("us", tz="UTC")),
        "nick": pa.array([rng.choice([None, "", "x" * 300, "🎉"]) for _ in pids]),
    }), root / "data" / "profile.parquet")

    pq.write_table(pa.table({
        "device_id": DEVICES[:-1], "ts": pa.array(_times(rng, now, len(DEVICES) - 1), pa.timestamp("us", tz="UTC")),
        "risk": [0.25, None, -1.5, 3.0, 1e-300], "label": ["a", None, "", "é", "b"]}),
        root / "data" / "device.parquet")

    for f in (root / "data" / "trips").glob("*.csv"):
        f.unlink()
    lines = ["customer_id,driver_id,ts,trips_together"]
    for c in CUSTOMERS[:150]:
        for d in DRIVERS:
            if rng.random() < 0.5:
                t = (now - dt.timedelta(days=rng.uniform(1, 300))).strftime("%Y-%m-%dT%H:%M:%SZ")
                lines.append(f"{c},{d},{t},{rng.randint(0, 40)}")
    (root / "data" / "trips" / "trips.csv").write_text("\n".join(lines) + "\n")

    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        fs.materialize("2000-01-01T00:00:00Z", now + dt.timedelta(days=2), allow_future=True)
    return root


_TEMPLATE: list[Path] = []


def repo_copy(tmp_path_factory: Any, name: str, server: dict[str, Any] | None = None) -> Path:
    """A fresh copy of the built repository (built once per test process), with ``server``
    as the ``server:`` section of its fstore.yaml."""
    if not _TEMPLATE:
        _TEMPLATE.append(build_repo(tmp_path_factory.mktemp("template") / "repo"))
    root = tmp_path_factory.mktemp(name) / "repo"
    shutil.copytree(_TEMPLATE[0], root)
    project: dict[str, Any] = {"project": "demo"}
    if server:
        project["server"] = server
    (root / "fstore.yaml").write_text(yaml.safe_dump(project))
    return root


class Server:
    """``fstore -r REPO serve`` in its own process group; ``stop`` always kills what is left.

    ``port``: a given port (a second server on a port in use); ``extra``: more ``serve``
    arguments; ``client``: the Client arguments (token, ssl) to check that it is ready;
    ``wait=False``: do not wait for that (a server expected to fail, or to take over)."""

    _count = 0

    def __init__(self, repo: Path, *, workers: int | None = None, metrics_port: int | None = None,
                 log_dir: Path | None = None, env: dict[str, str] | None = None, port: int | None = None,
                 extra: list[str] | None = None, client: dict[str, Any] | None = None, wait: bool = True) -> None:
        self.repo, self.port, self.metrics_port = repo, port or free_port(), metrics_port
        cmd = [FSTORE, "-r", str(repo), "serve", "--host", HOST, "--port", str(self.port)]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        if metrics_port is not None:
            cmd += ["--metrics-port", str(metrics_port)]
        cmd += extra or []
        Server._count += 1
        self.log = (log_dir or repo.parent) / f"server-{self.port}-{Server._count}.log"
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=REPO_ROOT, env={**os.environ, **(env or {})})
        try:
            if wait:
                wait_until_ready(HOST, self.port, timeout=30, **(client or {}))
        except BaseException:
            self.stop()
            raise

    def logs(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_log(self, text: str, timeout: float = 30) -> str:
        """The log once it holds ``text``; fails after ``timeout`` or if the server exits first."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log.read_text(errors="replace")):
            assert time.monotonic() < deadline and self.alive(), log[-4000:]
            time.sleep(0.05)
        return log

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM; the exit code (raises subprocess.TimeoutExpired if it does not exit)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:  # workers, if any, share the process group; kill whatever is left of it
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


# ---- raw protocol ---------------------------------------------------------------------------

_packer = msgpack.Packer(datetime=True, use_bin_type=True)


def frame(obj: Any) -> bytes:
    body = _packer.pack(obj)
    return struct.pack(">I", len(body)) + body


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


class Raw:
    """A raw socket speaking frames; every read is bounded by ``timeout``."""

    def __init__(self, port: int, timeout: float = 5.0, hello: bool = True) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        if hello:
            self.send(frame([1, 1, {"version": 1, "client": "raw-test"}]))
            rid, ok, result = self.read()
            assert (rid, ok) == (1, True) and result["version"] == 1, result

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, op: int, rid: int, args: Any) -> None:
        self.send(frame([op, rid, args]))

    def read(self) -> Any:
        """The next reply; ConnectionError if the server closed first."""
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return msgpack.unpackb(body, raw=False, timestamp=3, strict_map_key=False)
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("closed")
            self.buf += data

    def read_all(self, limit: int = 10_000) -> Iterator[Any]:
        """Replies until the server closes the connection (or the socket times out)."""
        for _ in range(limit):
            try:
                yield self.read()
            except (ConnectionError, OSError):
                return

    def closed_by_server(self) -> bool:
        """True once the server has closed its end (EOF or reset) within the socket timeout."""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
                self.buf += data
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- shared by the test_server_* modules -------------------------------------------------------

HELLO, GET, PUSH, HEALTH, INFO = 1, 2, 3, 4, 5
STATS = ["customer_stats:avg_amount_7d", "customer_stats:txn_count_7d", "customer_stats:segment"]
MAX_ROWS = 1000  # the ``max_rows`` of the test_server_* modules' repository


def stats_rows(ids: list[int], ts: dt.datetime, n: list[int] | None = None) -> dict[str, list[Any]]:
    return {"customer_id": list(ids), "event_timestamp": [ts] * len(ids), "created_timestamp": [None] * len(ids),
            "avg_amount_7d": [i + 0.5 for i in ids], "txn_count_7d": n if n is not None else [i * 3 + 1 for i in ids],
            "segment": [f"s{i}" for i in ids]}


def assert_error(reply: Any, rid: int, code: str | None = None) -> dict[str, Any]:
    """A structured error reply for ``rid``."""
    assert type(reply) is list and len(reply) == 3, reply
    assert reply[0] == rid and reply[1] is False, reply
    err = reply[2]
    assert set(err) == {"code", "message", "field"}, err
    assert type(err["code"]) is str and type(err["message"]) is str, err
    assert err["field"] is None or type(err["field"]) is str, err
    if code is not None:
        assert err["code"] == code, err
    return err


def get_args(ids: list[Any], features: list[str] = STATS, meta: bool = True) -> dict[str, Any]:
    return {"features": features, "entities": {"customer_id": ids}, "meta": meta}


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def worker_pids(server: Server) -> dict[int, int]:
    """Worker pid -> established connections on the server's port."""
    out = {}
    try:
        children = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:  # the server itself is gone: no workers (callers assert on it)
        return out
    for child in children:
        try:
            conns = child.net_connections("tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port for c in conns):
            out[child.pid] = sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port for c in conns)
    return out


class WriterHeld:
    """Holds the online store's LMDB write lock from this process: the server's PUSHes wait
    for it, so they stay in flight (and queue into one group) until ``release``.

    A PUSH first makes sure the worker has customer_stats' database open: a worker that
    opens one waits for the write lock with the GIL held (py-lmdb's open_db), and would
    freeze whole, its metrics thread included, not just queue its PUSHes."""

    def __init__(self, srv: Server) -> None:
        with Client(HOST, srv.port, timeout=10) as c:
            assert c.push("customer_stats", stats_rows([PUSH_BASE + 39_999], dt.datetime.now(UTC))) == 1
        self.fs = FeatureStore(srv.repo)
        self.txn = self.fs.online.env.begin(write=True)

    def release(self) -> None:
        if self.txn is not None:
            self.txn.abort()
            self.txn = None
            self.fs.close()


def wait_metric(port: int, name: str, ok: Any, timeout: float = 15) -> float | None:
    """The metric's value once ``ok(value)`` holds (None if absent); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = metrics(port).get(name)
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"{name} = {value}"
        time.sleep(0.1)


def push_frame(rid: int, ids: list[int], n: list[Any] | None = None, view: str = "customer_stats",
               rows: dict[str, Any] | None = None, offline: bool = False) -> bytes:
    ts = dt.datetime.now(UTC) - dt.timedelta(minutes=10)
    return frame([PUSH, rid, {"view": view, "rows": rows or stats_rows(ids, ts, n), "offline": offline}])


def device_rows(devices: list[str], ts: dt.datetime) -> dict[str, list[Any]]:
    return {"device_id": devices, "ts": [ts] * len(devices), "risk": [0.5] * len(devices),
            "label": ["pushed"] * len(devices)}
