"""Running the compiled generator: one Worker per thread (the connections split among them),
started together, each holding no GIL while it runs; the CPU of the server and of this
process sampled at the start and the end of the measured window; the threads' figures merged.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._ext._loadgen import Worker
from . import procs

START_DELAY_S = 0.005  # every thread is running before the first request is due


@dataclass
class Plan:
    """How to drive: ``rate`` 0 is a closed loop; ``timeout`` bounds each request's wait."""

    duration: float
    warmup: float
    rate: float = 0.0
    max_inflight: int = 256      # open loop: requests pipelined on one connection at most
    timeout: float = 10.0


@dataclass
class Raw:
    """The merged figures of a run, before they are read as a report (fstore.bench.result)."""

    hist: np.ndarray
    timeline_counts: np.ndarray
    timeline_hist: np.ndarray
    statuses: list[int]
    errors: dict[str, int]
    sent: int
    ok: int
    failed: int
    max_ns: int
    lost_connections: int
    measured_s: float
    server_cpu_s: float | None
    generator_cpu_s: float
    server_pids: list[int] = field(default_factory=list)


def drive(socks: list[socket.socket], pools: list[tuple[bytes, list[int]]], protocol: str, plan: Plan,
          id_offset: int = -1, weights: list[int] | None = None, cpu_of: tuple[str, int] | None = None) -> Raw:
    """Drive ``socks`` (greeted, non-blocking) with one thread per pool; ``cpu_of`` (host, port)
    names the server whose CPU to measure when it runs here."""
    threads = min(len(pools), len(socks))
    parts = [socks[t::threads] for t in range(threads)]
    workers = [Worker([s.fileno() for s in part], pools[t][0], pools[t][1], protocol, id_offset, weights,
                      plan.max_inflight if plan.rate > 0 else 1, plan.duration)
               for t, part in enumerate(parts)]
    pids = procs.server_pids(*cpu_of) if cpu_of else []
    start = time.monotonic_ns() + int(START_DELAY_S * 1e9)
    warm = start + int(plan.warmup * 1e9)
    end = warm + int(plan.duration * 1e9)
    ended: list[int] = [0] * threads
    failures: list[BaseException] = []
    cpus = sorted(os.sched_getaffinity(0))
    pin = threads > 1 and len(cpus) >= threads  # one thread per core given (taskset -c 2,3 fstore bench --threads 2)

    def body(t: int) -> None:
        try:
            if pin:
                os.sched_setaffinity(0, {cpus[t]})  # this thread only
            workers[t].run(start, warm, end, plan.rate * len(parts[t]) / len(socks), int(plan.timeout * 1e9))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            ended[t] = time.monotonic_ns()

    runners = [threading.Thread(target=body, args=(t,), name=f"fstore-bench-{t}", daemon=True)
               for t in range(threads)]
    for r in runners:
        r.start()
    try:
        _sleep_until(warm, runners)
        cpu0 = procs.cpu_seconds(pids) if pids else None
        gen0 = time.process_time()
        for r in runners:
            while r.is_alive():
                r.join(0.1)
        gen1 = time.process_time()
        cpu1 = procs.cpu_seconds(pids) if pids else None
    except BaseException:  # Ctrl-C: stop the loops (within 10 ms) before the sockets close
        for w in workers:
            w.stop()
        for r in runners:
            r.join(5)
        raise
    if failures:
        raise failures[0]
    results = [w.result() for w in workers]
    errors: dict[str, int] = {}
    for r in results:
        for code, n in r["errors"].items():
            errors[code] = errors.get(code, 0) + n
    stop = min(end, max(ended))
    return Raw(hist=sum(r["hist"] for r in results), timeline_counts=sum(r["timeline_counts"] for r in results),
               timeline_hist=sum(r["timeline_hist"] for r in results),
               statuses=[sum(r["statuses"][i] for r in results) for i in range(8)], errors=errors,
               sent=sum(r["sent"] for r in results), ok=sum(r["ok"] for r in results),
               failed=sum(r["failed"] for r in results), max_ns=max(r["max_ns"] for r in results),
               lost_connections=sum(r["lost_connections"] for r in results),
               measured_s=max(stop - warm, 0) / 1e9,
               server_cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
               generator_cpu_s=gen1 - gen0, server_pids=pids)


def _sleep_until(deadline_ns: int, runners: list[threading.Thread]) -> None:
    """Sleep until ``deadline_ns`` (monotonic), or until every runner has ended."""
    while time.monotonic_ns() < deadline_ns and any(r.is_alive() for r in runners):
        time.sleep(min(0.05, max(deadline_ns - time.monotonic_ns(), 0) / 1e9))
