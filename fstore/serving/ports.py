"""Who holds a server's port: the one bind, and the runtime record that names the holder.

The supervisor binds the listening socket once, without SO_REUSEPORT, and hands that
socket to its workers, so no other process can join the port (with SO_REUSEPORT a
second server of another project did, and the kernel split the connections between
them). While it runs, a server keeps a record of itself in the user's runtime folder
(``$XDG_RUNTIME_DIR/fstore`` or ``/tmp/fstore-<uid>``, mode 0700): ``port-<P>-<host>.json``
with its pid, project, repository, address and control socket. A second ``fstore serve``
on the port reads it to say who holds the port, and ``--takeover`` to reach the holder
(fstore.serving.takeover). A record whose pid is dead is stale and ignored (and removed).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InvalidArgument, PortInUse
from ..files import write_atomic

RECORD_FORMAT = 1
_MAX_DIR_CHARS = 60  # control socket paths must stay under the 107 bytes of sun_path


@dataclass
class Holder:
    """The runtime record of a running server."""

    pid: int
    project: str
    repo: str
    host: str
    port: int
    started: str
    control: str           # its control socket (fstore.serving.takeover)
    format: int = RECORD_FORMAT

    def describe(self) -> str:
        return f"the fstore server of project {self.project!r} (repository {self.repo}, pid {self.pid})"


def runtime_dir() -> Path:
    """The user's folder for records and control sockets, made private (0700) if new:
    ``$XDG_RUNTIME_DIR/fstore`` when that is usable and short, else ``/tmp/fstore-<uid>``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(tempfile.gettempdir()) / f"fstore-{os.getuid()}"
    if base and len(base) < _MAX_DIR_CHARS:
        try:
            (Path(base) / "fstore").mkdir(mode=0o700, exist_ok=True)
            folder = Path(base) / "fstore"
        except OSError:
            pass
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
    except OSError as exc:
        raise InvalidArgument(f"cannot use {folder} for fstore's server records: {exc.strerror or exc}") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise InvalidArgument(f"{folder} belongs to another user or is open to others (mode "
                              f"{st.st_mode & 0o777:o}); fstore keeps its server records there")
    return folder


def record_path(host: str, port: int) -> Path:
    return runtime_dir() / f"port-{port}-{host}.json"


def control_path(host: str, port: int) -> str:
    """The control socket of this process's server on ``host:port`` (one per pid: the server
    taking over and the one draining each have their own)."""
    return str(runtime_dir() / f"port-{port}-{host}-{os.getpid()}.sock")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> Holder | None:
    """The live holder recorded at ``path``; a stale or unreadable record is removed."""
    try:
        holder = Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if holder.format == RECORD_FORMAT and alive(holder.pid) and Path(holder.control).exists():
        return holder
    path.unlink(missing_ok=True)
    Path(holder.control).unlink(missing_ok=True)
    return None


def find_holder(host: str, port: int) -> Holder | None:
    """The live fstore server recorded on ``port``: on ``host`` first, else on any address
    (a server on 0.0.0.0 holds the port for 127.0.0.1 too)."""
    exact = _read(record_path(host, port))
    if exact is not None:
        return exact
    for path in sorted(runtime_dir().glob(f"port-{port}-*.json")):
        found = _read(path)
        if found is not None:
            return found
    return None


def write_record(host: str, port: int, project: str, repo: str, control: str) -> Holder:
    holder = Holder(os.getpid(), project, repo, host, port,
                    dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), control)
    write_atomic(record_path(host, port), json.dumps(asdict(holder)).encode())
    return holder


def remove_record(host: str, port: int) -> None:
    """Remove this process's record of ``host:port`` (not one a server taking over wrote since)."""
    path = record_path(host, port)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
    except (OSError, ValueError):
        pass


def bind(host: str, port: int) -> socket.socket:
    """The listening socket: SO_REUSEADDR (a restart need not wait out TIME_WAIT), never
    SO_REUSEPORT. Raises OSError (EADDRINUSE when something listens on the port)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def in_use(host: str, port: int, holder: Holder | None) -> PortInUse:
    """The error for a port something else listens on, naming the holder when it is known."""
    if holder is None:
        return PortInUse(f"port {port} on {host} is in use by another program (no fstore server of this "
                         f"user is recorded on it)")
    return PortInUse(f"port {port} is in use by {holder.describe()}")


def cannot_bind(host: str, port: int, exc: OSError) -> InvalidArgument:
    """The error for a bind that failed for another reason than a port in use."""
    return InvalidArgument(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
