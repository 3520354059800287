"""The clients when the server fails: deadlines, the pool, and one exception contract.

Every failure path (refused, reset in the middle of a reply, closed, hung, stalled, a TLS
failure) raises an ``Unavailable`` naming host and port from both clients, never a bare
socket error; ``timeout`` bounds a whole call, retries included; a timed-out connection is
closed and ``close()`` closes every connection. Servers here are real ``fstore serve``
processes or plain sockets on 127.0.0.1; every wait is bounded.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable, Iterator

import msgpack
import psutil
import pytest

from fstore.client import AsyncClient, Client
from fstore.errors import ServerUnreachable, Timeout, Unavailable, UnknownObject
from server_util import HOST, STATS, Server, free_port, repo_copy

pytestmark = pytest.mark.timeout(120)
SLACK = 0.5  # seconds of scheduling slack on a shared 2-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(repo_copy(tmp_path_factory, "client_failures"))
    try:
        yield srv
    finally:
        srv.stop()


def open_to(port: int) -> int:
    """Established TCP connections of this process to ``port``."""
    return sum(1 for c in psutil.Process().net_connections("tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


class Hung:
    """A port that accepts connections (the kernel's backlog) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def hung() -> Iterator[Hung]:
    h = Hung()
    try:
        yield h
    finally:
        h.close()


class Scripted:
    """A server thread that greets (HELLO) like fstore and then does ``then(conn)`` on the
    first GET; ``greet=False``: does ``then`` at once on accept."""

    def __init__(self, then: Callable[[socket.socket], None], greet: bool = True) -> None:
        self.then, self.greet = then, greet
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(5)
            try:
                self._serve(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        if not self.greet:
            self.then(conn)
            return
        buf = b""
        for _ in range(10):
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            n = struct.unpack(">I", buf[:4])[0]
            op, rid, _ = msgpack.unpackb(buf[4:4 + n], raw=False)
            buf = buf[4 + n:]
            if op != 1:
                self.then(conn)
                return
            body = msgpack.packb([rid, True, {"version": 1, "server": "scripted", "project": "demo",
                                              "max_frame": 1 << 20, "max_rows": 100}])
            conn.sendall(struct.pack(">I", len(body)) + body)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _reset_mid_reply(conn: socket.socket) -> None:
    conn.sendall(struct.pack(">I", 1000) + b"\x93\x02\xc3")  # a third of a frame, then RST
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _close(conn: socket.socket) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def _not_tls(conn: socket.socket) -> None:
    conn.sendall(b"\x00\x00\x00\x10" + b"\x00" * 16)  # what a plain server says to a TLS ClientHello


def _bounded(call: Callable[[], Any], bound: float) -> BaseException:
    start = time.monotonic()
    with pytest.raises(Unavailable) as info:
        call()
    elapsed = time.monotonic() - start
    assert elapsed < bound, f"{elapsed:.2f} s > {bound:.2f} s"
    return info.value


def _async(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), 60))


# ---- 1. timeout is a deadline --------------------------------------------------------------

@pytest.mark.parametrize("retries", [0, 2])
def test_timeout_bounds_the_whole_call_against_a_hung_server(hung: Hung, retries: int) -> None:
    bound = 0.3 * (1 + retries) + SLACK  # what docs/client.md promises; the call takes ~0.3 s
    with Client(HOST, hung.port, timeout=0.3, retries=retries) as c:
        exc = _bounded(lambda: c.get_online_features(STATS, entity_rows=[{"customer_id": 1}]), 0.3 + SLACK)
    assert isinstance(exc, Timeout) and isinstance(exc, TimeoutError) and isinstance(exc, ConnectionError)
    assert (exc.host, exc.port) == (HOST, hung.port) and f"{HOST}:{hung.port}" in str(exc)

    async def main() -> None:
        async with AsyncClient(HOST, hung.port, timeout=0.3, retries=retries) as ac:
            exc = await asyncio.wait_for(_abounded(ac), bound + 5)
            assert isinstance(exc, Timeout) and (exc.host, exc.port) == (HOST, hung.port)
    _async(main)


async def _abounded(ac: AsyncClient) -> BaseException:
    start = time.monotonic()
    with pytest.raises(Unavailable) as info:
        await ac.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
    assert time.monotonic() - start < 0.3 + SLACK
    return info.value


def test_ten_concurrent_calls_against_a_hung_server_all_fail_within_the_bound(hung: Hung) -> None:
    async def one(ac: AsyncClient) -> tuple[float, BaseException | None]:
        start = time.monotonic()
        try:
            await ac.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
        except Exception as exc:  # noqa: BLE001 - checked below
            return time.monotonic() - start, exc
        return time.monotonic() - start, None

    async def main() -> list[tuple[float, BaseException | None]]:
        async with AsyncClient(HOST, hung.port, timeout=0.2, retries=1, max_connections=4) as ac:
            return await asyncio.gather(*(one(ac) for _ in range(10)))
    for elapsed, exc in _async(main):
        assert isinstance(exc, Timeout) and elapsed < 0.2 * 2 + SLACK, (elapsed, exc)

    out: list[tuple[float, BaseException | None]] = []
    with Client(HOST, hung.port, timeout=0.2, retries=1, max_connections=4) as c:
        def run() -> None:
            start = time.monotonic()
            try:
                c.health()
            except Exception as exc:  # noqa: BLE001 - checked below
                out.append((time.monotonic() - start, exc))
        threads = [threading.Thread(target=run) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(out) == 10
    for elapsed, exc in out:  # six of them wait for one of the 4 connections, within their deadline
        assert isinstance(exc, Timeout) and elapsed < 0.2 * 2 + SLACK, (elapsed, exc)


def test_a_stalled_server_times_out_within_the_deadline(server: Server) -> None:
    """The real server, SIGSTOPped with pooled connections open: each call fails by its
    deadline; once it resumes the same clients work again (on new connections)."""
    rows = [{"customer_id": 1}]
    with Client(HOST, server.port, timeout=0.25, retries=2) as c:
        c.get_online_features(STATS, entity_rows=rows)

        async def stalled(ac: AsyncClient) -> None:
            start = time.monotonic()
            with pytest.raises(Timeout):
                await ac.get_online_features(STATS, entity_rows=rows)
            assert time.monotonic() - start < 0.25 * 3 + SLACK

        async def main() -> None:
            async with AsyncClient(HOST, server.port, timeout=0.25, retries=2) as ac:
                await ac.get_online_features(STATS, entity_rows=rows)
                os.kill(server.proc.pid, signal.SIGSTOP)
                try:
                    await stalled(ac)
                    _bounded(lambda: c.get_online_features(STATS, entity_rows=rows), 0.25 * 3 + SLACK)
                finally:
                    os.kill(server.proc.pid, signal.SIGCONT)
                assert open_to(server.port) <= 1  # the timed-out connections are closed (the pooled one is not)
                ac_ok = await AsyncClient(HOST, server.port, timeout=10).health()
                assert ac_ok["live"]
                assert (await ac.get_online_features(STATS, entity_rows=rows)).feature_names
        _async(main)
        c.timeout = 10
        assert c.get_online_features(STATS, entity_rows=rows).feature_names


def test_connect_timeout_bounds_connecting(hung: Hung) -> None:
    """A port whose accept queue is full drops SYNs: connecting hangs, and ``connect_timeout``
    (shorter than ``timeout``) ends it."""
    full = socket.socket()
    full.bind((HOST, 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the queue; later connects hang in SYN_SENT
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((HOST, port))
            fillers.append(s)
        time.sleep(0.1)
        with Client(HOST, port, timeout=5, connect_timeout=0.2, retries=0) as c:
            exc = _bounded(c.health, 0.2 + SLACK)
        assert isinstance(exc, Timeout) and "cannot connect" in str(exc), exc

        async def main() -> None:
            async with AsyncClient(HOST, port, timeout=5, connect_timeout=0.2, retries=0) as ac:
                start = time.monotonic()
                with pytest.raises(Timeout, match="cannot connect"):
                    await ac.health()
                assert time.monotonic() - start < 0.2 + SLACK
        _async(main)
    finally:
        for s in fillers:
            s.close()
        full.close()


# ---- 2. the pool ----------------------------------------------------------------------------

def test_timed_out_connections_are_closed_and_close_closes_all(hung: Hung) -> None:
    with Client(HOST, hung.port, timeout=0.1, retries=1, max_connections=2) as c:
        for _ in range(3):
            with pytest.raises(Timeout):
                c.health()
        assert open_to(hung.port) == 0  # none left behind (was 6, still 6 after close())

    async def main() -> None:
        ac = AsyncClient(HOST, hung.port, timeout=0.1, retries=1, max_connections=2)
        for _ in range(3):
            with pytest.raises(Timeout):
                await ac.health()
        await asyncio.sleep(0.05)
        assert open_to(hung.port) == 0
        await ac.close()
    _async(main)


def test_max_connections_is_a_limit_and_client_is_thread_safe(server: Server, fs_remote_pairs: Any) -> None:
    """8 threads, many calls each, on Client(max_connections=1): one connection, and every
    reply is the one for its own request."""
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], open_to(server.port))
            time.sleep(0.01)
    watcher = threading.Thread(target=watch)
    watcher.start()
    errors: list[str] = []
    with Client(HOST, server.port, timeout=20, max_connections=1) as c:
        def run(t: int) -> None:
            for i in range(30):
                ids = [(t * 37 + i * 11 + k) % 400 + 1 for k in range(1 + (t + i) % 5)]
                got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in ids]).to_dict()
                if got != fs_remote_pairs(ids):
                    errors.append(f"thread {t} call {i}: {ids}")
        threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stop.set()
        watcher.join(5)
        assert open_to(server.port) == 1
    assert not errors, errors[:3]
    assert peak[0] == 1, peak
    assert open_to(server.port) == 0  # close() closed it

    with Client(HOST, server.port, timeout=20, pool_size=2) as c:  # the older name
        assert c.max_connections == 2


@pytest.fixture(scope="module")
def fs_remote_pairs(server: Server) -> Callable[[list[int]], dict[str, Any]]:
    """The expected to_dict() for a list of customer ids (read once, in process)."""
    from fstore import FeatureStore
    with FeatureStore(server.repo) as fs:
        whole = fs.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in range(1, 401)]).to_dict()

    def expected(ids: list[int]) -> dict[str, Any]:
        return {name: [col[k - 1] for k in ids] for name, col in whole.items()}
    return expected


def test_async_client_close_closes_every_connection_and_limit_holds(server: Server) -> None:
    async def main() -> None:
        ac = AsyncClient(HOST, server.port, timeout=10, max_connections=3)
        await asyncio.gather(*(ac.get_online_features(STATS, entity_rows=[{"customer_id": i}]) for i in range(1, 60)))
        assert open_to(server.port) == 3
        await ac.close()
        assert open_to(server.port) == 0
    _async(main)


def test_async_client_survives_a_second_asyncio_run(server: Server) -> None:
    ac = AsyncClient(HOST, server.port, timeout=10, max_connections=2)

    async def use() -> list[Any]:
        return (await ac.get_online_features(STATS, entity_rows=[{"customer_id": 5}])).values("segment")
    first = asyncio.run(use())
    assert asyncio.run(use()) == first  # was: RuntimeError: Event loop is closed, forever
    assert open_to(server.port) == 1  # the first loop's connection was closed
    asyncio.run(ac.close())
    assert open_to(server.port) == 0


# ---- 3. one exception contract --------------------------------------------------------------

def _both_raise(port: int, cls: type[BaseException], match: str | None = None, **kw: Any) -> None:
    """Client and AsyncClient both raise ``cls`` (an Unavailable naming host:port) for a GET."""
    rows = [{"customer_id": 1}]
    with Client(HOST, port, timeout=2, retries=1, **kw) as c:
        with pytest.raises(cls, match=match) as info:
            c.get_online_features(STATS, entity_rows=rows)
    errs = [info.value]

    async def main() -> None:
        async with AsyncClient(HOST, port, timeout=2, retries=1, **kw) as ac:
            with pytest.raises(cls, match=match) as ainfo:
                await ac.get_online_features(STATS, entity_rows=rows)
            errs.append(ainfo.value)
    _async(main)
    for exc in errs:
        assert isinstance(exc, Unavailable) and isinstance(exc, ConnectionError), repr(exc)
        assert (exc.host, exc.port) == (HOST, port) and f"{HOST}:{port}" in str(exc), repr(exc)
        assert exc.code in ("UNREACHABLE", "TIMEOUT"), exc.code


def test_refused() -> None:
    _both_raise(free_port(), ServerUnreachable, "Connection refused")


@pytest.mark.parametrize("then", [_reset_mid_reply, _close], ids=["reset-mid-reply", "closed"])
def test_reset_or_closed_mid_request(then: Callable[[socket.socket], None]) -> None:
    srv = Scripted(then)
    try:
        _both_raise(srv.port, ServerUnreachable)
    finally:
        srv.close()


def test_hung(hung: Hung) -> None:
    _both_raise(hung.port, Timeout)


def test_tls_failure() -> None:
    srv = Scripted(_not_tls, greet=False)
    try:
        _both_raise(srv.port, ServerUnreachable, "TLS handshake", ssl=ssl.create_default_context())
    finally:
        srv.close()


def test_server_codes_arrive_as_in_process_classes(server: Server) -> None:
    with Client(HOST, server.port, timeout=10) as c:
        with pytest.raises(UnknownObject):
            c.get_online_features(feature_service="fraud_v9", entity_rows=[{"customer_id": 1}])

    async def main() -> None:
        async with AsyncClient(HOST, server.port, timeout=10) as ac:
            with pytest.raises(UnknownObject):
                await ac.get_online_features(feature_service="fraud_v9", entity_rows=[{"customer_id": 1}])
    _async(main)


def test_unavailable_and_timeout_are_one_family() -> None:
    assert issubclass(Timeout, Unavailable) and issubclass(Timeout, TimeoutError)
    assert issubclass(Unavailable, ConnectionError) and issubclass(ServerUnreachable, Unavailable)
    exc = Timeout("x", "h", 1)
    assert (exc.host, exc.port, exc.code) == ("h", 1, "TIMEOUT")

