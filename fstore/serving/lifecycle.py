"""One server's hold on its port: the listening socket, its runtime record, its control socket.

A server binds its port once (fstore.serving.ports), or, started with ``--takeover``,
receives the listening socket of the running server of the same repository
(fstore.serving.takeover) and takes over its record only once every worker of its own
accepts connections: until then the old server keeps serving. ``fstore.serving.supervisor``
holds a ``Lifecycle`` for as long as the server runs.
"""
from __future__ import annotations

import errno
import socket
from typing import Callable

from ..config import RepoConfig
from ..errors import PortInUse, TakeoverRefused
from .log import log
from .ports import bind, cannot_bind, control_path, find_holder, in_use, remove_record, write_record
from .takeover import ControlServer, Handover


class Lifecycle:
    """One server's hold on its port: the listening socket (bound here, or handed over by the
    server it takes over from), its runtime record and its control socket."""

    def __init__(self, config: RepoConfig, host: str, port: int, takeover: bool) -> None:
        self.host, self.port, self.project, self.repo = host, port, config.project, str(config.root)
        self.handover: Handover | None = None
        self.on_ready: Callable[[], None] | None = None
        self.announced = False
        self.sock = self._claim(takeover)
        try:
            self.control = ControlServer(control_path(host, port), self.sock, self.repo, self.project)
            if self.handover is None:  # the old server's record stands until we are ready
                write_record(host, port, self.project, self.repo, self.control.path)
        except BaseException:
            self.close()
            raise

    def _claim(self, takeover: bool) -> socket.socket:
        try:
            return bind(self.host, self.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise cannot_bind(self.host, self.port, exc) from None
        holder = find_holder(self.host, self.port)
        same = holder is not None and holder.repo == self.repo and holder.project == self.project
        if holder is None or not takeover:
            hint = "; to replace it without downtime, start this server with --takeover" if same else ""
            raise PortInUse(f"{in_use(self.host, self.port, holder)}{hint}")
        if not same:
            raise TakeoverRefused(f"--takeover: port {self.port} is held by {holder.describe()}, not by a server of "
                                  f"this repository (project {self.project!r}, {self.repo}); a server of another "
                                  f"repository never takes over") from None
        if holder.host != self.host:
            raise TakeoverRefused(f"--takeover: {holder.describe()} listens on {holder.host}:{self.port}, "
                                  f"not {self.host}:{self.port}") from None
        self.handover = Handover.request(holder, self.repo, self.project)
        log.info("takeover: received the listening socket of pid %s on %s:%s", holder.pid, self.host, self.port)
        return self.handover.listening

    def ready(self) -> None:
        """Every worker accepts connections: take over the record and drain the old server, if any."""
        if self.announced:
            return
        self.announced = True
        if self.handover is not None:
            write_record(self.host, self.port, self.project, self.repo, self.control.path)
            self.handover.drain()
        if self.on_ready is not None:
            self.on_ready()

    def stop_listening(self) -> None:
        """Stopping: this process's copy of the listening socket goes (the workers close theirs),
        so connections are refused once no other server holds the port."""
        self.sock.close()

    def close(self) -> None:
        if self.handover is not None and not self.announced:
            self.handover.abort()  # not ready: the old server keeps serving
        control = getattr(self, "control", None)
        if control is not None:
            control.close()
        remove_record(self.host, self.port)
        self.sock.close()

