#!/usr/bin/env python
"""The cost of served-feature logging (issue 11): logging off against 100 % sampling, same run.

Data: the repository of bench_server.py / bench_online.py (one view of 20 features, one
int64 join key, ``--rows`` entities bulk-loaded online), plus a feature service ``bench``
of the 20 features. Logging is switched by fstore.yaml alone: off (no ``monitoring``
section, the service has no ``logging``) or on (``monitoring.logging.sample_rate: 1.0``).

Two measurements, each ``--rounds`` times, alternating off and on so that noise from other
processes hits both alike; the ratio reported is on / off of the medians:

* server: ``fstore serve`` (1 worker, pinned to the first allowed CPU; the load generator
  on the last) driven by ``--connections`` (32) coroutines of one AsyncClient in a closed
  loop, 1 entity x 20 features by ``feature_service``; requests/s over ``--seconds`` after
  ``--warmup``. After an "on" run the server is stopped with SIGTERM and the rows in the
  log are counted against the requests sent (dropped = sent - logged).
* in process: ``FeatureStore.get_online_features(feature_service="bench", ...)`` for
  ``--reads`` reads of 1 entity; reads/s. The log's rows are counted after ``close()``.

Where the time goes, per run: the CPU of the server worker's main thread and of its other
threads (the log's writer) per request; in process, the reading thread's CPU per read, the
log writer thread's CPU per read and the final ``flush()`` (inside the timed window).

Targets: server >= 0.85x, in process >= 0.8x.

Usage::

    python benchmarks/bench_logging.py --out /tmp/logging.json            # default size
    python benchmarks/bench_logging.py --rows 2000 --seconds 1 --warmup 0.2 --reads 2000 --rounds 1   # smoke
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from bench_online import KEY_COL, VIEW, entity_ids, feature_specs, log, machine_info  # noqa: E402
from bench_server import HOST, TICK, Proc, free_port, parse_cpus, prepare, tree_cpu, tree_pids  # noqa: E402

SERVICE = "bench"
TARGET_SERVER, TARGET_IN_PROCESS = 0.85, 0.8
FSTORE = str(Path(sys.executable).parent / "fstore")


def configure(repo: Path, logging_on: bool) -> None:
    """fstore.yaml with logging on (every read of every service) or off."""
    text = "project: bench_online\n"
    if logging_on:
        text += "monitoring: {logging: {sample_rate: 1.0}}\n"
    (repo / "fstore.yaml").write_text(text)
    shutil.rmtree(repo / "data" / "offline" / "logs", ignore_errors=True)


def add_service(repo: Path) -> None:
    """A feature service of the view's 20 features (once), applied."""
    from fstore import FeatureStore

    defs = repo / "features" / "defs.yaml"
    if "feature_services:" not in defs.read_text():
        defs.write_text(defs.read_text() + f"feature_services:\n  - name: {SERVICE}\n    features: [{VIEW}]\n")
    with FeatureStore(repo) as fs:
        fs.apply()


def thread_cpu(pids: list[int]) -> tuple[float, float]:
    """CPU seconds of the main threads of ``pids`` and of all their other threads."""
    main = other = 0.0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                f = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(f[11]) + int(f[12])) / TICK
            if int(tid) == pid:
                main += cpu
            else:
                other += cpu
    return main, other


def logged_rows(repo: Path) -> int:
    from fstore.monitoring.logs import read_logs

    table = read_logs(repo, SERVICE)
    return table.num_rows


async def _drive(port: int, ids: list[int], conns: int, warmup: float, seconds: float) -> dict:
    from fstore.client import AsyncClient

    client = AsyncClient(HOST, port, pool_size=conns, timeout=10, retries=0)
    get, n = client.get_online_features, len(ids)
    sent = 0
    timed = 0
    clock = time.perf_counter
    await asyncio.gather(*(get(feature_service=SERVICE, entity_rows={KEY_COL: [ids[i]]}) for i in range(conns)))
    sent += conns
    start = clock() + warmup
    end = start + seconds

    async def user(k: int) -> None:
        nonlocal sent, timed
        i = k
        while True:
            t0 = clock()
            if t0 >= end:
                return
            await get(feature_service=SERVICE, entity_rows={KEY_COL: [ids[i % n]]})
            sent += 1
            if t0 >= start:
                timed += 1
            i += conns

    gc.collect()
    gc.freeze()
    try:
        await asyncio.gather(*(user(k) for k in range(conns)))
    finally:
        gc.unfreeze()
        await client.close()
    return {"requests_per_s": timed / seconds, "sent": sent}


def server_run(repo: Path, ids: list[int], args: Any, logging_on: bool, cpus: tuple[list[int], list[int]],
               work: Path) -> dict:
    import uvloop

    from fstore.client import wait_until_ready

    configure(repo, logging_on)
    port = free_port()
    proc = Proc("fstore", [FSTORE, "-r", str(repo), "serve", "--host", HOST, "--port", str(port)], cpus[0],
                work / f"server-{port}.log")
    try:
        wait_until_ready(HOST, port, timeout=30)
        os.sched_setaffinity(0, set(cpus[1]))
        cpu0 = sum(tree_cpu(proc.pid)[:1])
        pids = tree_pids(proc.pid)
        threads0 = thread_cpu(pids)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            out = runner.run(_drive(port, ids, args.connections, args.warmup, args.seconds))
        out["server_cpu_us_per_request"] = (sum(tree_cpu(proc.pid)[:1]) - cpu0) / out["sent"] * 1e6
        threads = thread_cpu(pids)
        out["server_main_thread_us_per_request"] = (threads[0] - threads0[0]) / out["sent"] * 1e6
        out["server_other_threads_us_per_request"] = (threads[1] - threads0[1]) / out["sent"] * 1e6
        proc.proc.send_signal(15)
        proc.proc.wait(60)
    finally:
        proc.stop()
        os.sched_setaffinity(0, set(cpus[0]) | set(cpus[1]))
    if logging_on:
        out["logged_rows"] = logged_rows(repo)
        out["dropped"] = out["sent"] - out["logged_rows"]
    return out


def _task_cpu(tid: int | None) -> float:
    """CPU seconds of one thread of this process (0 for None)."""
    if tid is None:
        return 0.0
    f = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def in_process_run(repo: Path, ids: list[int], reads: int, logging_on: bool) -> dict:
    from fstore import FeatureStore

    configure(repo, logging_on)
    rows = [[{KEY_COL: ids[i % len(ids)]}] for i in range(reads)]
    with FeatureStore(repo) as fs:
        get = fs.get_online_features
        warm = rows[:1000]
        for r in warm:  # warm: plans built, pages mapped
            get(feature_service=SERVICE, entity_rows=r)
        writer = fs._feature_log._thread.native_id if fs._feature_log is not None else None
        gc.collect()
        gc.freeze()
        t0, c0, m0, w0 = time.perf_counter(), time.process_time(), time.thread_time(), _task_cpu(writer)
        for r in rows:
            get(feature_service=SERVICE, entity_rows=r)
        t1 = time.perf_counter()
        if fs._feature_log is not None:
            fs._feature_log.flush()  # what the reads made, converted and written, inside the timed window
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        main, flushed, wcpu = time.thread_time() - m0, time.perf_counter() - t1, _task_cpu(writer) - w0
        gc.unfreeze()
        counted = fs._feature_log.stats().get(SERVICE, {}) if fs._feature_log is not None else {}
    out: dict[str, Any] = {"reads_per_s": reads / seconds, "reads": reads + len(warm), "cpu_us_per_read": cpu / reads * 1e6,
                           "main_thread_us_per_read": main / reads * 1e6, "writer_thread_us_per_read": wcpu / reads * 1e6,
                           "final_flush_ms": flushed * 1e3}
    if logging_on:
        out["logged_rows"] = logged_rows(repo)
        out["dropped"] = out["reads"] - out["logged_rows"]
        out["dropped_counted"] = counted.get("dropped", 0)  # the log's own count: must equal the above
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="entities in the online store")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per server run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--reads", type=int, default=100_000, help="in-process reads per run")
    p.add_argument("--rounds", type=int, default=3, help="off/on pairs of each measurement")
    p.add_argument("--keep", help="a folder to keep (and reuse) the repository in")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_logging_"))
    work.mkdir(parents=True, exist_ok=True)
    allowed = sorted(os.sched_getaffinity(0))
    cpus = (parse_cpus("auto", allowed[0]), parse_cpus("auto", allowed[-1]))
    try:
        repo, _, _ = prepare(work, args.rows, feature_specs(20))
        add_service(repo)
        ids = [int(x) for x in entity_ids(args.rows)[:: max(1, args.rows // 50_000)]]
        results: dict[str, list[dict]] = {"server_off": [], "server_on": [], "in_process_off": [], "in_process_on": []}
        for r in range(args.rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                key = "on" if on else "off"
                results[f"in_process_{key}"].append(in_process_run(repo, ids, args.reads, on))
                results[f"server_{key}"].append(server_run(repo, ids, args, on, cpus, work))
                ip, sv = results[f"in_process_{key}"][-1], results[f"server_{key}"][-1]
                log(f"round {r + 1} logging {key}: in process {ip['reads_per_s']:,.0f} reads/s "
                    f"({ip['cpu_us_per_read']:.2f} us CPU/read: reader {ip['main_thread_us_per_read']:.2f}, "
                    f"log writer {ip['writer_thread_us_per_read']:.2f}; final flush {ip['final_flush_ms']:.1f} ms), "
                    f"server {sv['requests_per_s']:,.0f} requests/s ({sv['server_cpu_us_per_request']:.1f} us server "
                    f"CPU/request: main thread {sv['server_main_thread_us_per_request']:.1f}, "
                    f"others {sv['server_other_threads_us_per_request']:.1f})")
        med = {k: statistics.median(x["reads_per_s" if k.startswith("in_") else "requests_per_s"] for x in v)
               for k, v in results.items()}
        cost = {k: statistics.median(x["cpu_us_per_read" if k.startswith("in_") else "server_cpu_us_per_request"]
                                     for x in v) for k, v in results.items()}
        summary = {
            "server_ratio": med["server_on"] / med["server_off"],
            "in_process_ratio": med["in_process_on"] / med["in_process_off"],
            "medians": med, "cpu_us_per_read_medians": cost, "targets": {"server": TARGET_SERVER, "in_process": TARGET_IN_PROCESS},
            "where_medians": {k: {f: statistics.median(x[f] for x in v) for f in v[0] if f.endswith(("_ms", "_us_per_read",
                                                                                            "_us_per_request"))}
                              for k, v in results.items()},
            "dropped_server": [x["dropped"] for x in results["server_on"]],
            "dropped_in_process": [x["dropped"] for x in results["in_process_on"]],
        }
        summary["met"] = {"server": summary["server_ratio"] >= TARGET_SERVER,
                          "in_process": summary["in_process_ratio"] >= TARGET_IN_PROCESS}
        doc = {"args": vars(args), "machine": machine_info(), "summary": summary, "runs": results}
        print(json.dumps(summary, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(doc, indent=2, default=str))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
