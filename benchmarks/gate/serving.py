"""The serving part of the gate: ``fstore serve`` against the raw uvloop server (raw_server.py)
on the same rows, 1 entity x 20 features per GET, driven alike (load.py).

Both servers run one process pinned to the first allowed CPU; the load generator runs in
this process pinned to the last. Rounds alternate which server goes first; each round gives
two ratios, higher is better for both:

* ``serve_1_cpu``: the raw server's CPU per request / fstore's (server CPU from /proc);
* ``serve_1_rps``: fstore's requests/s / the raw server's.

Before timing, 20 replies of each server are checked equal to each other value for value.
"""
from __future__ import annotations

import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
PAIRS = ("serve_1_cpu", "serve_1_rps")


def _wait_port(port: int, proc: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.logs()}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on {port} within {timeout} s:\n{proc.logs()}")


def _same_replies(ports: list[int], refs: list[str], key: str, ids: list[int]) -> None:
    from fstore.client import Client

    answers = []
    for port in ports:
        with Client(HOST, port, timeout=10.0, retries=0) as c:
            answers.append([c.get_online_features(refs, entity_rows=[{key: i}], include_metadata=False).to_dict()
                            for i in ids])
    if answers[0] != answers[1]:
        raise RuntimeError("fstore serve and the raw server disagree on the values of the same entities")


def run(data: dict[str, Any], work: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The per-round figures of both servers and the median ratios (``settings``: gate.toml's
    [gate.serving]: generator, rounds, seconds, warmup, connections)."""
    import numpy as np
    from bench_server import Proc, free_port, make_batches

    from .load import drive

    allowed = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = [allowed[0]], [allowed[-1]]
    os.sched_setaffinity(0, set(client_cpus))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    fport, rport = free_port(), free_port()
    servers = {
        "fstore": Proc("fstore", [sys.executable, "-m", "fstore.cli", "-r", str(data["repo"]), "serve", "--host", HOST,
                                  "--port", str(fport), "--workers", "1"], server_cpus, work / "fstore-serve.log",
                       cwd=ROOT, env=env),
        "raw": Proc("raw", [sys.executable, "-m", "benchmarks.gate.raw_server", str(data["floor"]), str(rport)],
                    server_cpus, work / "raw-server.log", cwd=ROOT, env=env),
    }
    ports = {"fstore": fport, "raw": rport}
    try:
        for name, proc in servers.items():
            _wait_port(ports[name], proc)
        rng = np.random.default_rng(data["seed"] + 99)
        sample = data["ids"][rng.integers(0, len(data["ids"]), 20)].tolist()
        _same_replies([fport, rport], data["refs"], data["key"], sample)
        batches = make_batches(data["ids"], 1, 50_000, data["seed"] + 42)
        per_round: list[dict[str, Any]] = []
        for r in range(settings["rounds"]):
            got = {}
            for name in (("fstore", "raw") if r % 2 == 0 else ("raw", "fstore")):
                got[name] = drive(settings["generator"], HOST, ports[name], servers[name].pid, data, batches,
                                  settings["connections"], settings["seconds"], settings["warmup"], work)
                if servers[name].proc.poll() is not None:
                    raise RuntimeError(f"{name} server exited:\n{servers[name].logs()}")
            per_round.append({"fstore": got["fstore"], "raw": got["raw"],
                              "serve_1_cpu": got["raw"]["server_cpu_us"] / got["fstore"]["server_cpu_us"],
                              "serve_1_rps": got["fstore"]["rps"] / got["raw"]["rps"]})
    finally:
        for proc in servers.values():
            proc.stop()
        os.sched_setaffinity(0, set(allowed))
    return {"settings": settings, "per_round": per_round, "generator_used": per_round[0]["fstore"]["generator"],
            "ratios": {p: statistics.median(r[p] for r in per_round) for p in PAIRS},
            "values": {p: [r[p] for r in per_round] for p in PAIRS}}
