"""The server's CPU, when it runs on this machine: the processes holding the socket that
listens on the target's port (an fstore server's supervisor and its workers all hold it;
a Redis server too), found through /proc/net/tcp's socket inodes and each process's fds,
with their descendants; their utime + stime before and after the measured window.

Only processes this user may look into are found; none found means the figure is unknown
(``server_cpu_us_per_request`` null), never a guess.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
_LISTEN = "0A"


def _addr(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def _target_ips(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return {ipaddress.ip_address(info[4][0].split("%")[0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, ValueError):
        return set()


def listening_inodes(host: str, port: int) -> set[str]:
    """Inodes of this machine's sockets listening on ``port`` at an address ``host`` reaches
    (the same address, a wildcard one, or loopback for a loopback host)."""
    targets = _target_ips(host)
    out: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10 or f[3] != _LISTEN:
                continue
            addr, _, port_hex = f[1].partition(":")
            if int(port_hex, 16) != port:
                continue
            ip = _addr(addr)
            if ip.is_unspecified or ip in targets or (ip.is_loopback and any(t.is_loopback for t in targets)):
                out.add(f[9])
    return out


def server_pids(host: str, port: int) -> list[int]:
    """The processes holding the listening socket of host:port, and their descendants."""
    inodes = {f"socket:[{i}]" for i in listening_inodes(host, port)}
    if not inodes:
        return []
    found: set[int] = set()
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        f = _stat(pid)
        if f:
            parents.setdefault(int(f[1]), []).append(pid)
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    found.add(pid)
                    break
            except OSError:
                continue
    todo, out = list(found), set(found)
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return sorted(out)


def _stat(pid: int | str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # fields from 3 (state) on: comm may hold spaces


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (every thread), in seconds; a process gone counts 0."""
    total = 0
    for pid in pids:
        f = _stat(pid)
        if f:
            total += int(f[11]) + int(f[12])
    return total / TICK
