"""What the benchmarks record about the machine they ran on (Linux /proc; None elsewhere)."""
from __future__ import annotations

from pathlib import Path


def _proc_field(path: str, prefix: str) -> str | None:
    """The text after ``prefix`` on the first line of /proc/``path`` that starts with it."""
    try:
        for line in Path("/proc", path).read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix):].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    value = _proc_field("cpuinfo", "model name")
    return value.lstrip(":").strip() if value else ""


def ram_bytes() -> int | None:
    value = _proc_field("meminfo", "MemTotal:")
    return int(value.split()[0]) * 1024 if value else None


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []
