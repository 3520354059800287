"""A server owns its port (issue 9): a second ``fstore serve`` on a port in use exits at
once with one clear line naming the port and the server holding it; ``--takeover`` lets a
server of the same repository take the port over from one that drains, with no failed
request; a server of another repository never joins. The real ``fstore serve`` in
subprocesses, 127.0.0.1 only; every loop is bounded in time and count.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fstore import FeatureStore
from fstore.client import Client
from fstore.serving.ports import record_path
from server_util import CUSTOMERS, FSTORE, HOST, STATS, Server, free_port, repo_copy, worker_pids

pytestmark = pytest.mark.timeout(120)
ENV = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}


def other_project(tmp_path_factory: pytest.TempPathFactory, name: str = "other") -> Path:
    """A copy of the test repository under another project name (applied)."""
    root = repo_copy(tmp_path_factory, name)
    (root / "fstore.yaml").write_text(yaml.safe_dump({"project": name}))
    with FeatureStore(root) as fs:
        fs.apply()
    return root


def serve_once(repo: Path, port: int, *extra: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``fstore serve`` expected to exit by itself (refused)."""
    return subprocess.run([FSTORE, "-r", str(repo), "serve", "--host", HOST, "--port", str(port), *extra],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def refused_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused ``serve`` printed (exit 1, no traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_another_project_cannot_join_the_port(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Before: both servers bound the port (SO_REUSEPORT) and 40 connections split about
    20/20 between the projects. Now the second exits 1 at once naming the holder, and every
    connection reaches the first."""
    a = Server(repo_copy(tmp_path_factory, "holder"), workers=2)
    try:
        b = other_project(tmp_path_factory)
        line = refused_line(serve_once(b, a.port, "--workers", "2"))
        assert f"port {a.port} is in use by the fstore server of project 'demo'" in line, line
        assert f"pid {a.proc.pid}" in line and str(a.repo) in line and "--takeover" not in line, line
        for _ in range(40):
            with Client(HOST, a.port, timeout=10, retries=0, project="demo") as c:
                assert c.info()["project"] == "demo"
        # a takeover by another repository is refused, and changes nothing
        line = refused_line(serve_once(b, a.port, "--takeover"))
        assert "--takeover" in line and "project 'demo'" in line and "another repository never takes over" in line
        assert a.alive() and json.loads(record_path(HOST, a.port).read_text())["pid"] == a.proc.pid
    finally:
        a.stop()
    assert not record_path(HOST, a.port).exists()  # removed with the server


def test_same_repository_needs_takeover_and_other_programs_are_named(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "twice")
    a = Server(root)
    try:
        line = refused_line(serve_once(root, a.port))
        assert f"port {a.port} is in use by the fstore server of project 'demo'" in line
        assert line.endswith("start this server with --takeover"), line
    finally:
        a.stop()
    with socket.socket() as other:  # a port some other program listens on
        other.bind((HOST, 0))
        other.listen(1)
        port = other.getsockname()[1]
        line = refused_line(serve_once(root, port))
        assert f"port {port} on {HOST} is in use by another program" in line, line
        line = refused_line(serve_once(root, port, "--takeover"))  # nothing of ours to take over
        assert "in use by another program" in line, line
        free = free_port()  # a busy metrics port: the same one line, and the server leaves nothing behind
        line = refused_line(serve_once(root, free, "--metrics-port", str(port)))
        assert line == f"error: metrics port {port} on {HOST} is in use", line
        assert not record_path(HOST, free).exists() and not list(record_path(HOST, free).parent.glob(f"port-{free}-*"))


def test_a_stale_record_is_ignored(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A record left by a killed server (its pid gone) neither blocks the port nor is named."""
    root = repo_copy(tmp_path_factory, "stale")
    port = free_port()
    proc = subprocess.Popen(["true"])  # a pid that has exited
    proc.wait()
    record_path(HOST, port).write_text(json.dumps({
        "pid": proc.pid, "project": "ghost", "repo": "/nowhere", "host": HOST, "port": port,
        "started": "2020-01-01T00:00:00+00:00", "control": str(record_path(HOST, port).with_suffix(".sock")),
        "format": 1}))
    srv = Server(root, port=port)
    try:
        assert json.loads(record_path(HOST, port).read_text())["pid"] == srv.proc.pid
    finally:
        srv.stop()


class Traffic:
    """Threads reading GETs through the real Client until stopped (bounded): two open a
    new connection per request (clients that keep reconnecting), one keeps a pool."""

    def __init__(self, port: int, expected: dict[int, Any]) -> None:
        self.port, self.expected = port, expected
        self.stop = threading.Event()
        self.done = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(3)]
        for t in self.threads:
            t.start()

    def _get(self, c: Client, k: int) -> None:
        got = c.get_online_features(STATS, entity_rows=[{"customer_id": k}])
        if tuple(got.values(f.split(":")[1])[0] for f in STATS) != self.expected[k]:
            self.failures.append(f"customer {k}: wrong values")

    def _run(self, tid: int) -> None:
        pooled = Client(HOST, self.port, timeout=10, project="demo")
        deadline = time.monotonic() + 90
        i = tid
        while not self.stop.is_set() and time.monotonic() < deadline and i < 200_000:
            k = CUSTOMERS[i % len(CUSTOMERS)]
            i += 3
            try:
                if tid == 2:
                    self._get(pooled, k)
                else:
                    with Client(HOST, self.port, timeout=10, project="demo") as c:
                        self._get(c, k)
            except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.done += 1
        pooled.close()

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        target = self.done + n
        while self.done < target:
            assert time.monotonic() < deadline and not self.failures, self.failures[:5]
            time.sleep(0.02)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.mark.parametrize("workers", [2, 1], ids=["two_workers", "one_worker"])
def test_takeover_is_a_rolling_restart_with_no_failed_request(tmp_path_factory: pytest.TempPathFactory,
                                                              workers: int) -> None:
    root = repo_copy(tmp_path_factory, f"takeover{workers}")
    with FeatureStore(root) as fs:
        got = fs.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in CUSTOMERS])
        expected = dict(zip(CUSTOMERS, zip(*[got.values(f.split(":")[1]) for f in STATS])))
    old = Server(root, workers=workers)
    new = None
    traffic = Traffic(old.port, expected)
    try:
        traffic.wait_for(200)
        new = Server(root, port=old.port, workers=workers, extra=["--takeover"], wait=False)
        new.wait_log("serving project 'demo'")
        assert old.proc.wait(30) == 0, old.logs()  # drained and exited by itself
        traffic.wait_for(200)  # served by the new one alone
        traffic.finish()
        assert traffic.failures == [], traffic.failures[:10]
        assert new.alive() and json.loads(record_path(HOST, old.port).read_text())["pid"] == new.proc.pid
        if workers > 1:
            assert len(worker_pids(new)) == workers
        log = old.log.read_text()
        assert "handed the listening socket to pid" in log and "drained in" in log and "Traceback" not in log, log
        assert f"took port {old.port} over from pid {old.proc.pid}" in new.logs(), new.logs()
        assert new.terminate(30) == 0, new.logs()
    finally:
        traffic.finish()
        old.stop()
        if new is not None:
            new.stop()
