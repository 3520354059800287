"""What a client reached, said in words (issue 9): connection errors name host:port; a
client that reaches an HTTP server or the metrics port gets "not an fstore server at
host:port" (not a FrameError about 1213486160 bytes, nor a timeout); HELLO names the
project and ``project=`` refuses another one; the server logs its start and its drain.
The real ``fstore serve`` in a subprocess, 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from fstore import errors as E
from fstore.client import AsyncClient, Client
from fstore.serving.tls import client_context
from server_util import FSTORE, HELLO, HOST, STATS, Raw, Server, free_port, repo_copy
from tls_util import make_certs

pytestmark = pytest.mark.timeout(120)
ENV = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(repo_copy(tmp_path_factory, "handshake"), workers=2, metrics_port=free_port())
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer((HOST, 0), Hello)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def fstore_get(port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FSTORE, "get", "--port", str(port), "--features", STATS[0], *extra, "customer_id=1"],
                          capture_output=True, text=True, timeout=60, env=ENV)


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def both_clients(port: int, **kwargs: Any) -> list[BaseException]:
    """The errors a Client and an AsyncClient raise asking ``port`` for HEALTH (timeout 10 s)."""
    out: list[BaseException] = []
    with Client(HOST, port, timeout=10, **kwargs) as c:
        try:
            c.health()
        except Exception as exc:  # noqa: BLE001 - returned for the caller to check
            out.append(exc)

    async def main() -> None:
        async with AsyncClient(HOST, port, timeout=10, **kwargs) as ac:
            try:
                await ac.health()
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
    asyncio.run(asyncio.wait_for(main(), 60))
    return out


def test_a_client_that_reaches_something_else_says_so(plain: Server, http_port: int) -> None:
    for port in (http_port, plain.metrics_port):
        errors = both_clients(port)  # type: ignore[arg-type]
        assert len(errors) == 2, errors
        for exc in errors:
            assert type(exc) is E.NotAnFstoreServer and isinstance(exc, ConnectionError), repr(exc)
            assert str(exc).startswith(f"not an fstore server at {HOST}:{port}: it answers in HTTP"), exc
        line = one_error(fstore_get(port))  # type: ignore[arg-type]
        assert f"not an fstore server at {HOST}:{port}" in line, line
    with Client(HOST, http_port, timeout=10, token="never-sent-to-the-wrong-server-in-clear?") as c:
        with pytest.raises(E.NotAnFstoreServer):
            c.health()
    with Raw(plain.port) as raw:  # the fstore server itself is unharmed by clients of the wrong port
        raw.request(4, 2, {})
        assert raw.read()[1] is True


def test_connection_errors_name_host_and_port(plain: Server, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    for exc in both_clients(port):
        assert type(exc) is E.ServerUnreachable and isinstance(exc, ConnectionError), repr(exc)
        assert str(exc) == f"cannot connect to fstore server at {HOST}:{port}: Connection refused"
    assert one_error(fstore_get(port)) == f"error: cannot connect to fstore server at {HOST}:{port}: Connection refused"
    certs = make_certs(tmp_path / "certs")
    for exc in both_clients(plain.port, ssl=client_context(str(certs.ca))):  # TLS against a plain server
        assert type(exc) is E.ServerUnreachable and f"{HOST}:{plain.port}" in str(exc), repr(exc)


def test_hello_names_the_project_and_clients_refuse_another(plain: Server) -> None:
    with Raw(plain.port, hello=False) as raw:
        raw.request(HELLO, 1, {"version": 1, "client": "raw"})
        rid, ok, result = raw.read()
        assert ok and result["project"] == "demo" and result["version"] == 1
    with Client(HOST, plain.port, timeout=10, project="demo") as c:
        assert c.health()["live"]
    for exc in both_clients(plain.port, project="fraud"):
        assert type(exc) is E.WrongProject, repr(exc)
        assert str(exc) == f"the fstore server at {HOST}:{plain.port} serves project 'demo', not 'fraud'"
    line = one_error(fstore_get(plain.port, "--project", "fraud"))
    assert line == f"error: the fstore server at {HOST}:{plain.port} serves project 'demo', not 'fraud'"
    ok = subprocess.run([FSTORE, "get", "--port", str(plain.port), "--project", "demo", "--features", STATS[0],
                         "customer_id=1"], capture_output=True, text=True, timeout=60, env=ENV)
    assert ok.returncode == 0, ok.stderr


def test_the_server_logs_its_start_and_its_drain(plain: Server) -> None:
    """Last in the module: it stops the module's server."""
    log = plain.logs()
    start = re.search(r"INFO serving project 'demo' \(registry version \d+\) on 127\.0\.0\.1:(\d+): 2 worker\(s\), "
                      r"no TLS, no auth, metrics on port (\d+)", log)
    assert start and int(start[1]) == plain.port and int(start[2]) == plain.metrics_port, log
    with Client(HOST, plain.port, timeout=10) as c:
        c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
    assert plain.terminate(30) == 0
    log = plain.log.read_text()
    assert len(re.findall(r"INFO drained in \d+\.\d\d s: \d+ requests read after the stop signal answered", log)) == 2
    assert re.search(r"INFO all workers drained in \d+\.\d\d s", log) and "INFO stopped (project 'demo'" in log, log
    assert "Traceback" not in log
