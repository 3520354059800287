"""A rolling restart: ``fstore serve --takeover`` takes the port over from a running server
of the same repository, which then drains and exits (docs/protocol.md, "Rolling restart").

Every server listens on a control socket (a Unix socket in the private runtime folder,
named in its runtime record, fstore.serving.ports). The conversation, one JSON line each:

1. new -> old: ``{"op": "takeover", "repo", "project", "pid"}``. The old server refuses a
   server of another repository or project, or a second takeover; else it answers
   ``{"ok": true, "pid"}`` with its listening socket attached (SCM_RIGHTS).
2. The new server starts its workers on that very socket. Both accept from it meanwhile:
   no connection is refused and none waits.
3. new -> old, once every new worker is ready: ``{"op": "drain"}``. The old one answers
   ``{"ok": true}`` and drains as on SIGTERM: stops accepting, answers every request it
   has received, exits 0. If the new server goes away before step 3 (its workers failed
   to start), the old one keeps serving.

Only a process of the same user can connect (the folder is 0700, and the peer's uid is
checked with SO_PEERCRED).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import TakeoverRefused
from .log import log
from .ports import Holder

ANSWER_SECONDS = 10.0   # for the old server to answer a step
READY_SECONDS = 300.0   # for the new server's workers to start before the old one stops waiting
_LINE = 1 << 16


def _send(conn: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(msg).encode() + b"\n"
    if fds:
        socket.send_fds(conn, [data], fds)
    else:
        conn.sendall(data)


def _receive(conn: socket.socket, want_fds: bool = False) -> tuple[dict[str, Any] | None, list[int]]:
    """One JSON line (None at end of stream), and the descriptors that came with it."""
    buf, fds = b"", []
    while b"\n" not in buf and len(buf) < _LINE:
        if want_fds:
            data, got, _flags, _addr = socket.recv_fds(conn, _LINE, 4)
            fds += got
        else:
            data = conn.recv(_LINE)
        if not data:
            return None, fds
        buf += data
    try:
        msg = json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        return None, fds
    return (msg if isinstance(msg, dict) else None), fds


class ControlServer:
    """The control socket of a running server, answered by a daemon thread.

    ``listening`` is the socket handed over; ``drain`` is called (from the thread) once a
    server taking over is ready. Conversations are served one at a time.
    """

    def __init__(self, path: str, listening: socket.socket, repo: str, project: str,
                 drain: Callable[[], None] | None = None) -> None:
        self.path, self.listening, self.repo, self.project = path, listening, repo, project
        self.drain = drain or _sigterm_self
        self.handed_over = False
        Path(path).unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, name="fstore-control", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: the server is exiting
                return
            with conn:
                try:
                    self._converse(conn)
                except OSError as exc:
                    log.warning("control socket: a conversation failed: %s", exc)

    def _converse(self, conn: socket.socket) -> None:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid != os.getuid():
            _send(conn, {"ok": False, "error": "the takeover comes from another user"})
            return
        conn.settimeout(ANSWER_SECONDS)
        msg, _ = _receive(conn)
        if msg is None or msg.get("op") != "takeover":
            _send(conn, {"ok": False, "error": "expected a takeover request"})
            return
        refusal = self._refusal(msg)
        if refusal:
            _send(conn, {"ok": False, "error": refusal})
            return
        taker = msg.get("pid", "?")
        _send(conn, {"ok": True, "pid": os.getpid()}, [self.listening.fileno()])
        log.info("takeover: handed the listening socket to pid %s; serving until its workers are ready", taker)
        conn.settimeout(READY_SECONDS)
        try:
            msg, _ = _receive(conn)
        except OSError:
            msg = None
        if msg is None or msg.get("op") != "drain":
            log.warning("takeover by pid %s abandoned (it went away before its workers were ready); "
                        "still serving", taker)
            return
        self.handed_over = True
        _send(conn, {"ok": True})
        log.info("takeover: pid %s serves the port now; draining", taker)
        self.drain()

    def _refusal(self, msg: dict[str, Any]) -> str | None:
        if self.handed_over:
            return f"pid {os.getpid()} has already handed its port over and is draining"
        if self.listening.fileno() < 0:
            return f"pid {os.getpid()} is stopping"
        if msg.get("repo") != self.repo or msg.get("project") != self.project:
            return (f"pid {os.getpid()} serves project {self.project!r} of {self.repo}, not project "
                    f"{msg.get('project')!r} of {msg.get('repo')}: a server of another repository never takes over")
        return None

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            Path(self.path).unlink(missing_ok=True)


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the drain every server already does on SIGTERM


class Handover:
    """The listening socket received from a running server, and the conversation with it."""

    def __init__(self, conn: socket.socket, listening: socket.socket, holder: Holder) -> None:
        self.conn, self.listening, self.holder = conn, listening, holder

    @classmethod
    def request(cls, holder: Holder, repo: str, project: str) -> "Handover":
        """Ask ``holder`` for its listening socket; TakeoverRefused says why not."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(ANSWER_SECONDS)
        try:
            conn.connect(holder.control)
            _send(conn, {"op": "takeover", "repo": repo, "project": project, "pid": os.getpid()})
            reply, fds = _receive(conn, want_fds=True)
        except OSError as exc:
            conn.close()
            raise TakeoverRefused(f"--takeover: {holder.describe()} does not answer on its control socket "
                                  f"{holder.control}: {exc.strerror or exc}") from None
        if reply is None or not reply.get("ok") or not fds:
            conn.close()
            for fd in fds:
                os.close(fd)
            why = reply.get("error") if reply else "no answer"
            raise TakeoverRefused(f"--takeover refused by {holder.describe()}: {why}")
        for extra in fds[1:]:
            os.close(extra)
        return cls(conn, socket.socket(fileno=fds[0]), holder)

    def drain(self) -> None:
        """Our workers are ready: tell the old server to drain and exit."""
        try:
            _send(self.conn, {"op": "drain", "pid": os.getpid()})
            reply, _ = _receive(self.conn)
        except OSError as exc:
            reply = {"error": str(exc)}
        finally:
            self.conn.close()
        if not reply or not reply.get("ok"):
            log.warning("takeover: pid %s did not confirm its drain (%s); both serve the port until it exits",
                        self.holder.pid, (reply or {}).get("error", "no answer"))
            return
        log.info("took port %s over from pid %s (project %r), which is draining", self.holder.port,
                 self.holder.pid, self.holder.project)

    def abort(self) -> None:
        self.conn.close()
