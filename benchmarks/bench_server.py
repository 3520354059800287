#!/usr/bin/env python
"""Feature server latency: ``fstore serve`` against Redis, driven by Python asyncio clients (issue 4, section 4).

Data: one feature repository shaped as in bench_online.py (one view of 20 features:
10 float64, 6 int64, 2 string, 2 bool, ~1 % nulls in four of them; one int64 join
key; one row per entity), ``--rows`` entities, bulk-loaded into the online store
(``fs.load``). ``--keep DIR`` keeps and reuses the repository and its online store.

Servers, both on 127.0.0.1 on free ports, pinned to the server core(s) (``--server-cpus``,
default the first allowed CPU):

* ``fstore serve`` (a subprocess, ``--workers`` processes, default 1; metrics off unless
  ``--server-metrics``);
* ``redis-server --save '' --appendonly no`` (installed with ``apt-get install -y
  redis-server`` when it is missing; skipped with a message if that fails, or with
  ``--no-redis``) holding the same rows: key ``b"e:%d" % entity_id``, value
  ``msgpack.packb([the 20 values])``, loaded with a pipeline of MSETs.

Load generator (this process, pinned to the client core(s), ``--client-cpus``, default
the last allowed CPU): a closed loop on a uvloop event loop. ``C`` coroutines (``C`` from
``--connections``, default 1,32) each send a request, await the reply, record its latency
(``time.perf_counter_ns``) and repeat, over ``C`` connections: fstore's own
``AsyncClient(pool_size=C)`` (``get_online_features(features=[all 20],
entity_rows={"entity_id": ids})``, metadata included unless ``--no-metadata``) and
redis-py's ``redis.asyncio.Redis(max_connections=C)`` (hiredis parser when installed; ``GET`` + ``msgpack.unpackb`` for
one entity, ``MGET`` of 100 keys + ``unpackb`` of each for 100). Entity ids are drawn at
random (with replacement) from the stored ids, so every lookup hits; both targets get
the same id sequence. Each run: connect all C connections, ``--warmup`` seconds
discarded, then ``--seconds`` timed (or ``--max-requests``, whichever comes first). The
runs alternate between the targets for each (shape, connections), so a burst of noise
from other processes hits both alike. The client's garbage collector is frozen
(``gc.freeze()``) during a run, as the server does after start-up.

Per (target, entities per request, connections): requests/s, entity rows/s, latency
p50 / p99 / p99.9, the server's CPU time per request (utime + stime from
/proc/PID/stat, the server process and its children, over the timed window, divided by
the requests completed in it) and the client's (from /proc/self/stat). When a process
used >= 90 % of its core(s) it is named as the bound: a Python client at 100 % of its
core means the figures are the load generator's limit, not the server's.
``--client-procs K`` runs K load-generator processes (the C connections split among
them) on the client core(s).

Before timing, a sample of replies of each target (1 and 100 entities) is checked
value for value against an in-process ``FeatureStore(repo).get_online_features`` for
the same entities (every status PRESENT). The fstore server's pages are touched once
by reading every entity through it (``--no-prefault`` skips this), as a long-running
server would have them mapped.

Usage::

    python benchmarks/bench_server.py --keep /data/bench_server --out server.json      # full size (1M)
    python benchmarks/bench_server.py --rows 2000 --seconds 1 --warmup 0.2 \\
        --connections 1,4 --out /tmp/s.json                                          # smoke size

Exit status 0 unless the benchmark itself failed (a missed target is reported, not an
error); 3 when a target's replies disagree with the in-process reads.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from bench_machine import loadavg  # noqa: E402
from bench_online import (KEY_COL, SEED, VIEW, entity_ids, feature_specs, floor_rows,  # noqa: E402
                          fstore_provenance, log, machine_info, prepare_repo, write_config)

HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")
DAY_US = 86_400_000_000
REUSE_MAX_AGE_US = 5 * DAY_US  # the view's ttl is 7 d: regenerate kept data older than this
REDIS_KEY = b"e:%d"
SATURATED = 0.9  # a process using this share of its cores is named as the bound
CONTENDED = 0.1  # a process that waited this share of the window for its core is noted as contended
CHECK_IDS = 300
# the targets, at 32 connections
TARGET_CONNECTIONS = 32
TARGET_RPS_1 = 100_000
TARGET_P99_1_MS = 1.0
TARGET_CPU_1_US = 10.0
TARGET_ROWS_100 = 1_000_000
TARGET_P99_100_MS = 5.0
CURVE_Q = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0]


# ----------------------------------------------------------------------------------------
# Processes: CPU time, pinning, starting and stopping servers
# ----------------------------------------------------------------------------------------

def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # fields from 3 (state) on; comm may hold spaces


def proc_cpu(pid: int | str) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / TICK if f else 0.0


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants (the workers of a multi-worker server)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            f = _stat_fields(entry.name)
            if f:
                children.setdefault(int(f[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid`` and its descendants, and the seconds their main threads waited for a core."""
    pids = tree_pids(pid)
    return sum(map(proc_cpu, pids)), sum(map(run_wait, pids))


def self_cpu() -> float:
    return proc_cpu("self")


def run_wait(pid: int | str) -> float:
    """Seconds the process's main thread waited on a run queue (ready but another task on its core):
    CPU contention from other processes."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def parse_cpus(arg: str | None, default: int) -> list[int]:
    if arg in (None, "", "auto"):
        return [default]
    return sorted({int(x) for x in arg.split(",") if x.strip()})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Proc:
    """A server subprocess in its own process group, pinned to ``cpus``; ``stop`` kills what is left."""

    def __init__(self, name: str, cmd: list[str], cpus: list[int] | None, log_path: Path, cwd: Path = REPO_ROOT,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.log_path = name, log_path
        if cpus and shutil.which("taskset"):
            cmd = ["taskset", "-c", ",".join(map(str, cpus))] + cmd  # pinned before its first instruction
        self.cmd = cmd
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=cwd, env=env)
        self.pid = self.proc.pid
        if cpus and not shutil.which("taskset"):
            os.sched_setaffinity(self.pid, set(cpus))  # threads started later inherit it

    def affinity(self) -> list[int] | None:
        try:
            return sorted(os.sched_getaffinity(self.pid))
        except OSError:
            return None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # workers share the process group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def ensure_redis(no_redis: bool) -> tuple[str | None, str]:
    """The redis-server binary (installed with apt-get when missing), or None and why not."""
    if no_redis:
        return None, "skipped (--no-redis)"
    found = shutil.which("redis-server")
    if found:
        return found, "found"
    if not shutil.which("apt-get"):
        return None, "skipped: redis-server is not installed and there is no apt-get"
    if os.geteuid() != 0:
        return None, "skipped: redis-server is not installed and installing it needs root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]
    why = "redis-server not found after the install"
    for attempt, cmds in enumerate(([install], [["apt-get", "update"], install])):
        log(f"redis-server not found; {'apt-get update + ' if attempt else ''}apt-get install -y redis-server")
        ok = True
        for cmd in cmds:
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
            except (OSError, subprocess.SubprocessError) as exc:
                ok, why = False, str(exc)
                break
            if r.returncode != 0:
                lines = (r.stderr or r.stdout).strip().splitlines()
                ok, why = False, f"{' '.join(cmd)}: {lines[-1] if lines else f'exit {r.returncode}'}"
                break
        found = shutil.which("redis-server") or (Path("/usr/bin/redis-server").exists() and "/usr/bin/redis-server")
        if ok and found:
            return str(found), "installed with apt-get"
    return None, f"skipped: apt-get install redis-server failed ({why})"


def start_redis(binary: str, cpus: list[int], work: Path) -> tuple[Proc, int]:
    port = free_port()
    cmd = [binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--daemonize", "no",
           "--protected-mode", "no", "--dir", str(work)]
    proc = Proc("redis", cmd, cpus, work / f"redis-{port}.log")
    import redis

    r = redis.Redis(host=HOST, port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            r.ping()
            break
        except redis.exceptions.ConnectionError:
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                proc.stop()
                raise RuntimeError(f"redis-server did not start:\n{proc.logs()}") from None
            time.sleep(0.05)
    r.close()
    return proc, port


def load_redis(port: int, ids: list[int], values: list[bytes], chunk: int = 1000, depth: int = 20) -> dict:
    """The rows as msgpack blobs, with a pipeline of MSETs of ``chunk`` keys, ``depth`` commands per round trip."""
    import redis

    r = redis.Redis(host=HOST, port=port)
    r.flushall()
    t0 = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for lo in range(0, len(ids), chunk):
        pipe.mset({REDIS_KEY % i: v for i, v in zip(ids[lo:lo + chunk], values[lo:lo + chunk])})
        if len(pipe) >= depth:
            pipe.execute()
    pipe.execute()
    seconds = time.perf_counter() - t0
    keys = r.dbsize()
    mem = r.info("memory")["used_memory"]
    r.close()
    if keys != len(ids):
        raise RuntimeError(f"redis holds {keys} keys after loading {len(ids)}")
    return {"keys": keys, "seconds": seconds, "rows_per_s": keys / seconds, "used_memory": mem}


def redis_version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------

def prepare(work: Path, rows: int, specs: list[dict]) -> tuple[Path, dict, dict]:
    """The repository (generated or reused) and its online store (bulk-loaded or reused)."""
    from fstore import FeatureStore

    repo = work / "repo"
    marker = repo / "bench_spec.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if time.time_ns() // 1000 - old.get("generated_at_us", 0) > REUSE_MAX_AGE_US:
            log(f"{repo}: kept data is older than 5 days (the view's ttl is 7 d): regenerating")
            shutil.rmtree(repo)
    info = prepare_repo(repo, rows, specs, SEED)
    online_marker = repo / "online_loaded.json"
    want = {"generated_at_us": info["generated_at_us"], "rows": rows}
    if (online_marker.exists() and json.loads(online_marker.read_text()).get("spec") == want
            and (repo / "data" / "online" / "data.mdb").exists()):
        log(f"reusing the online store of {repo}")
        return repo, info, json.loads(online_marker.read_text())
    shutil.rmtree(repo / "data" / "online", ignore_errors=True)
    write_config(repo, None)
    log(f"bulk-loading {rows:,} rows into the online store")
    fs = FeatureStore(repo)
    t0 = time.perf_counter()
    res = fs.load(VIEW, [info["parquet"]])
    loaded = {"spec": want, "rows_written": res.rows_written, "seconds": time.perf_counter() - t0,
              "size_on_disk": fs.online.size_on_disk()}
    fs.online.close()
    if res.rows_written != rows:
        raise RuntimeError(f"the bulk load wrote {res.rows_written} rows, expected {rows}")
    online_marker.write_text(json.dumps(loaded))
    return repo, info, loaded


def make_batches(ids: Any, per_request: int, total_ids: int, seed: int) -> list[list[int]]:
    """Random stored ids (with replacement), in batches of ``per_request``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_batches = max(1, total_ids // per_request)
    picks = ids[rng.integers(0, len(ids), size=n_batches * per_request)].tolist()
    return [picks[i:i + per_request] for i in range(0, len(picks), per_request)]


# ----------------------------------------------------------------------------------------
# Correctness check (before timing)
# ----------------------------------------------------------------------------------------

def check_targets(repo: Path, refs: list[str], sample: list[int], fstore_port: int | None, redis_port: int | None,
                  metadata: bool) -> dict:
    """Both targets' replies for ``sample`` (one by one for the first 20, then in 100s) equal the
    in-process reads; every in-process status PRESENT."""
    import msgpack

    from fstore import FeatureStore

    fs = FeatureStore(repo)
    groups = [[k] for k in sample[:20]] + [sample[i:i + 100] for i in range(20, len(sample), 100)]
    expected = []
    problems: list[str] = []
    for g in groups:
        resp = fs.get_online_features(features=refs, entity_rows=[{KEY_COL: k} for k in g])
        for name in resp.feature_names:
            bad = [s.name for s in resp.statuses(name) if s.name != "PRESENT"]
            if bad:
                problems.append(f"in process: {name} has {len(bad)} values not PRESENT ({bad[0]}); "
                                f"is the data older than the ttl?")
                break
        expected.append(resp)
    fs.online.close()
    names = expected[0].feature_names
    out: dict[str, Any] = {"entities": len(sample), "requests_1": 20, "requests_100": len(groups) - 20}

    async def fstore_side() -> list[str]:
        from fstore.client import AsyncClient

        bad: list[str] = []
        async with AsyncClient(HOST, fstore_port, timeout=30) as client:  # type: ignore[arg-type]
            for g, want in zip(groups, expected):
                got = await client.get_online_features(features=refs, entity_rows={KEY_COL: g},
                                                       include_metadata=metadata)
                if got.to_dict() != want.to_dict():
                    bad.append(f"fstore server, entities {g[:3]}...: values differ from in-process reads")
                if metadata and any(got.statuses(n) != want.statuses(n) for n in names):
                    bad.append(f"fstore server, entities {g[:3]}...: statuses differ from in-process reads")
                if len(bad) > 5:
                    break
        return bad

    async def redis_side() -> list[str]:
        import redis.asyncio as aredis

        bad: list[str] = []
        r = aredis.Redis(host=HOST, port=redis_port)
        try:
            for g, want in zip(groups, expected):
                d = want.to_dict()
                blobs = [await r.get(REDIS_KEY % g[0])] if len(g) == 1 else await r.mget([REDIS_KEY % k for k in g])
                for j, (k, blob) in enumerate(zip(g, blobs)):
                    row = msgpack.unpackb(blob) if blob is not None else None
                    if row is None or list(row) != [d[n][j] for n in names]:
                        bad.append(f"redis, entity {k}: {row!r} != in process {[d[n][j] for n in names]!r}")
                        if len(bad) > 5:
                            return bad
        finally:
            await r.aclose()
        return bad

    if fstore_port is not None:
        bad = asyncio.run(fstore_side())
        out["fstore"] = {"ok": not bad and not problems, "problems": bad}
        problems += bad
    if redis_port is not None:
        bad = asyncio.run(redis_side())
        out["redis"] = {"ok": not bad and not problems, "problems": bad}
        problems += bad
    out["ok"] = not problems
    out["problems"] = problems
    return out


def prefault_server(port: int, all_ids: list[int], refs: list[str], batch: int = 1000, conns: int = 4) -> dict:
    """Read every entity once through the server: its LMDB pages mapped, as in a long-running server."""
    from fstore.client import AsyncClient

    async def go() -> int:
        async with AsyncClient(HOST, port, pool_size=conns, timeout=60) as client:
            chunks = [all_ids[i:i + batch] for i in range(0, len(all_ids), batch)]
            done = 0

            async def worker(k: int) -> None:
                nonlocal done
                for c in chunks[k::conns]:
                    resp = await client.get_online_features(features=refs, entity_rows={KEY_COL: c},
                                                            include_metadata=False)
                    done += len(resp)
            await asyncio.gather(*(worker(k) for k in range(conns)))
            return done

    t0 = time.perf_counter()
    n = asyncio.run(go())
    return {"entities": n, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------
# Load generator
# ----------------------------------------------------------------------------------------

async def _drive(cfg: dict, barrier: Any = None) -> dict:
    """One closed-loop run in this process: ``cfg['connections']`` coroutines on as many connections."""
    import msgpack
    import numpy as np

    per_req, conns, batches = cfg["per_request"], cfg["connections"], cfg["batches"]
    nb = len(batches)
    if cfg["target"] == "fstore":
        from fstore.client import AsyncClient

        secure: dict[str, Any] = {}  # only when asked: --fstore-src may name a tree whose clients take neither
        if cfg.get("token"):
            secure["token"] = cfg["token"]
        if cfg.get("tls_ca"):  # --auth-compare (bench_auth.py): built here, a context does not cross processes
            from fstore.serving.tls import client_context
            secure["ssl"] = client_context(cfg["tls_ca"])
        client = AsyncClient(cfg["host"], cfg["port"], pool_size=conns, timeout=cfg["timeout"], retries=0, **secure)
        get, refs, meta, key = client.get_online_features, cfg["refs"], cfg["metadata"], KEY_COL

        async def call(batch: list) -> int:
            return len(await get(refs, entity_rows={key: batch}, include_metadata=meta))
        close = client.close
    else:
        import redis.asyncio as aredis

        r = aredis.Redis(host=cfg["host"], port=cfg["port"], max_connections=conns,
                         socket_timeout=cfg["timeout"])
        unpackb = msgpack.unpackb  # unpackb(None) raises: a missing key fails the run
        if per_req == 1:
            rget = r.get

            async def call(batch: list) -> int:
                unpackb(await rget(batch[0]))
                return 1
        else:
            mget = r.mget

            async def call(batch: list) -> int:
                return len([unpackb(v) for v in await mget(batch)])
        close = r.aclose

    # every connection open (and greeted) before the clock
    await asyncio.gather(*(call(batches[i % nb]) for i in range(conns)))
    if barrier is not None:
        barrier.wait(timeout=120)  # all load-generator processes start together

    clock = time.perf_counter_ns
    warm_end = clock() + int(cfg["warmup"] * 1e9)
    deadline = warm_end + int(cfg["seconds"] * 1e9)
    max_requests = cfg["max_requests"]
    server_pid = cfg["server_pid"]
    gate = 1 << 62  # requests started at or after this are timed
    count = 0
    stop = False
    marks: dict[str, float] = {}
    recs: list[list[int]] = []

    async def sampler() -> None:
        nonlocal gate
        delay = (warm_end - clock()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        marks["server_cpu_start"], marks["server_wait_start"] = tree_cpu(server_pid)
        marks["client_cpu_start"] = self_cpu()
        marks["client_wait_start"] = run_wait("thread-self")
        marks["t_start"] = time.monotonic_ns()
        gate = clock()

    async def user(k: int) -> None:
        nonlocal count, stop
        rec: list[int] = []
        recs.append(rec)
        i = k
        while not stop:
            batch = batches[i % nb]
            i += conns
            t0 = clock()
            await call(batch)
            t1 = clock()
            if t0 >= gate:
                rec.append(t1 - t0)
                count += 1
                if count >= max_requests:
                    stop = True
            if t1 >= deadline:
                break

    gc.collect()
    gc.freeze()
    try:
        await asyncio.gather(sampler(), *(user(k) for k in range(conns)))
        t_end = time.monotonic_ns()
        marks["server_cpu_end"], marks["server_wait_end"] = tree_cpu(server_pid)
        marks["client_cpu_end"] = self_cpu()
        marks["client_wait_end"] = run_wait("thread-self")
    finally:
        gc.unfreeze()
        await close()
    lat = np.fromiter((x for rec in recs for x in rec), dtype=np.int64, count=sum(map(len, recs)))
    return {**marks, "t_end": t_end, "lat_ns": lat, "stopped_by_count": stop}


def _run_loop(cfg: dict, barrier: Any = None) -> dict:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_drive(cfg, barrier))


def _proc_main(cfg: dict, barrier: Any, queue: Any) -> None:
    """Entry point of one load-generator process (--client-procs > 1)."""
    try:
        queue.put(("ok", _run_loop(cfg, barrier)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        try:
            barrier.abort()
        except Exception:  # noqa: BLE001
            pass
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_load(cfg: dict, procs: int) -> list[dict]:
    """The run in this process (procs = 1) or split over ``procs`` processes (connections divided)."""
    conns = cfg["connections"]
    procs = max(1, min(procs, conns))
    if procs == 1:
        return [_run_loop(cfg)]
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    share = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    workers = []
    for i, c in enumerate(share):
        sub = dict(cfg, connections=c, max_requests=max(1, cfg["max_requests"] // procs),
                   batches=cfg["batches"][i::procs] or cfg["batches"])
        p = ctx.Process(target=_proc_main, args=(sub, barrier, queue), daemon=True)
        p.start()
        workers.append(p)
    parts, errors = [], []
    try:
        for _ in workers:
            status, value = queue.get(timeout=cfg["warmup"] + cfg["seconds"] + 180)
            (parts if status == "ok" else errors).append(value)
    finally:
        for p in workers:
            p.join(10)
            if p.is_alive():
                p.kill()
    if errors:
        raise RuntimeError("load generator process failed: " + "; ".join(errors))
    return parts


def summarize(target: str, per_req: int, conns: int, parts: list[dict], server_cores: float,
              client_cores: float) -> dict:
    import numpy as np

    lat = np.concatenate([p["lat_ns"] for p in parts])
    first = min(parts, key=lambda p: p["t_start"])
    last = max(parts, key=lambda p: p["t_end"])
    window = (last["t_end"] - first["t_start"]) / 1e9
    n = int(lat.size)
    if n == 0 or window <= 0:
        raise RuntimeError(f"{target} {per_req} entities x {conns} connections: no request completed in the window")
    server_cpu = last["server_cpu_end"] - first["server_cpu_start"]
    client_cpu = sum(p["client_cpu_end"] - p["client_cpu_start"] for p in parts)
    q = np.quantile(lat, CURVE_Q, method="inverted_cdf") / 1e6
    curve = dict(zip(map(str, CURVE_Q), q.tolist()))
    server_util, client_util = server_cpu / window, client_cpu / window
    server_wait = (last["server_wait_end"] - first["server_wait_start"]) / window
    client_wait = sum(p["client_wait_end"] - p["client_wait_start"] for p in parts) / window
    bound = [name for name, util, cores in (("client", client_util, client_cores), ("server", server_util, server_cores))
             if util >= SATURATED * cores]
    return {"target": target, "entities_per_request": per_req, "connections": conns, "requests": n,
            "window_s": window, "requests_per_s": n / window, "entity_rows_per_s": n * per_req / window,
            "p50_ms": curve["0.5"], "p99_ms": curve["0.99"], "p999_ms": curve["0.999"], "max_ms": curve["1.0"],
            "mean_ms": float(lat.mean()) / 1e6, "quantiles_ms": curve,
            "server_cpu_s": server_cpu, "server_cpu_us_per_request": server_cpu / n * 1e6,
            "server_cpu_share": server_util, "client_cpu_s": client_cpu,
            "client_cpu_us_per_request": client_cpu / n * 1e6, "client_cpu_share": client_util,
            "server_runqueue_wait_share": server_wait, "client_runqueue_wait_share": client_wait,
            "bound": "+".join(bound) or "neither", "client_processes": len(parts),
            "stopped_by_request_count": any(p["stopped_by_count"] for p in parts)}


# ----------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------

def find(results: list[dict], target: str, per_req: int, conns: int) -> dict | None:
    for r in results:
        if (r["target"], r["entities_per_request"], r["connections"]) == (target, per_req, conns):
            return r
    return None


def verdicts(results: list[dict]) -> list[dict]:
    specs = [(1, "requests_per_s", ">=", TARGET_RPS_1, "1 entity: requests/s"),
             (1, "p99_ms", "<", TARGET_P99_1_MS, "1 entity: p99 ms"),
             (1, "server_cpu_us_per_request", "<=", TARGET_CPU_1_US, "1 entity: server CPU us/request"),
             (100, "entity_rows_per_s", ">=", TARGET_ROWS_100, "100 entities: entity rows/s"),
             (100, "p99_ms", "<", TARGET_P99_100_MS, "100 entities: p99 ms")]
    out = []
    for per_req, key, op, limit, name in specs:
        r = find(results, "fstore", per_req, TARGET_CONNECTIONS)
        entry: dict[str, Any] = {"name": f"{name} ({TARGET_CONNECTIONS} connections)", "metric": key, "op": op,
                                 "limit": limit, "measured": r is not None}
        if r is not None:
            v = r[key]
            entry["value"] = v
            entry["met"] = v >= limit if op == ">=" else v < limit if op == "<" else v <= limit
            entry["bound"] = r["bound"]
        else:
            entry["met"] = None
        out.append(entry)
    return out


def comparisons(results: list[dict]) -> list[dict]:
    out = []
    for f in results:
        if f["target"] != "fstore":
            continue
        r = find(results, "redis", f["entities_per_request"], f["connections"])
        if r is None:
            continue
        out.append({"entities_per_request": f["entities_per_request"], "connections": f["connections"],
                    "throughput_ratio": f["requests_per_s"] / r["requests_per_s"],
                    "p99_ratio": f["p99_ms"] / r["p99_ms"],
                    "server_cpu_ratio": f["server_cpu_us_per_request"] / max(r["server_cpu_us_per_request"], 1e-9)})
    return out


def notes_for(results: list[dict], client_cores: int) -> list[str]:
    notes = []
    for r in results:
        if "client" in r["bound"]:
            notes.append(f"{r['target']}, {r['entities_per_request']} entit{'y' if r['entities_per_request'] == 1 else 'ies'}"
                         f" x {r['connections']} connections: the load generator ({r['client_processes']} Python "
                         f"process{'es' if r['client_processes'] > 1 else ''}) used {r['client_cpu_share']:.0%} of its "
                         f"core(s) against the server's {r['server_cpu_share']:.0%}: the client is the bottleneck, "
                         f"these figures are the client's limit, not the server's")
        for who in ("server", "client"):
            if who == "client" and r["client_processes"] > client_cores:
                continue  # load-generator processes sharing a core wait for each other: not contention
            if r[f"{who}_runqueue_wait_share"] >= CONTENDED:
                notes.append(f"{r['target']} {r['entities_per_request']} x {r['connections']}: the {who} waited "
                             f"{r[f'{who}_runqueue_wait_share']:.0%} of the window for its core (other processes "
                             f"ran on it): figures depressed by contention")
        if r["stopped_by_request_count"]:
            notes.append(f"{r['target']} {r['entities_per_request']} x {r['connections']}: stopped by --max-requests "
                         f"before --seconds")
    return notes


def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    m = result["meta"]
    console.print(f"[bold]fstore feature server benchmark[/bold]  {m['machine']['cpu_model']}, nproc "
                  f"{m['machine']['nproc']}; server on CPU {m['pinning']['server_cpus']}, client on CPU "
                  f"{m['pinning']['client_cpus']}; load avg start {m['loadavg_start']} end {m['loadavg_end']}; "
                  f"fstore git {m['fstore'].get('git')} (dirty {m['fstore'].get('dirty_files')})")
    d = result["data"]
    console.print(f"{d['rows']:,} entities x {d['features']} features; redis: {result['redis']['status']}"
                  f"{' (' + result['redis']['version'] + ')' if result['redis'].get('version') else ''}; "
                  f"metadata in fstore replies: {result['args']['metadata']}")
    t = Table(title=f"Closed loop, {result['args']['seconds']} s timed per row (after {result['args']['warmup']} s "
                    f"warm-up); CPU us per request and CPU share over the timed window; runq wait: share of the "
                    f"window the server / client waited for its core (other processes on it)")
    for col in ("target", "entities/req", "conns", "requests", "req/s", "entity rows/s", "p50 ms", "p99 ms",
                "p99.9 ms", "server CPU us/req", "server CPU", "client CPU us/req", "client CPU", "bound",
                "runq wait s/c"):
        t.add_column(col, justify="left" if col in ("target", "bound") else "right")
    for r in result["results"]:
        t.add_row(r["target"], str(r["entities_per_request"]), str(r["connections"]), f"{r['requests']:,}",
                  f"{r['requests_per_s']:,.0f}", f"{r['entity_rows_per_s']:,.0f}", f"{r['p50_ms']:.3f}",
                  f"{r['p99_ms']:.3f}", f"{r['p999_ms']:.3f}", f"{r['server_cpu_us_per_request']:.1f}",
                  f"{r['server_cpu_share']:.0%}", f"{r['client_cpu_us_per_request']:.1f}",
                  f"{r['client_cpu_share']:.0%}", r["bound"],
                  f"{r['server_runqueue_wait_share']:.0%}/{r['client_runqueue_wait_share']:.0%}")
    console.print(t)
    if result["comparison"]:
        t = Table(title="fstore / Redis (same shape, same connections)")
        for col in ("entities/req", "conns", "req/s ratio", "p99 ratio", "server CPU/req ratio"):
            t.add_column(col, justify="right")
        for c in result["comparison"]:
            t.add_row(str(c["entities_per_request"]), str(c["connections"]), f"{c['throughput_ratio']:.2f}x",
                      f"{c['p99_ratio']:.2f}x", f"{c['server_cpu_ratio']:.2f}x")
        console.print(t)
    t = Table(title="Targets (issue 4), fstore")
    for col in ("target", "measured", "limit", "met", "bound"):
        t.add_column(col)
    for v in result["targets"]:
        if not v["measured"]:
            t.add_row(v["name"], "-", f"{v['op']} {v['limit']:,}", "[yellow]not measured[/yellow]", "")
            continue
        t.add_row(v["name"], f"{v['value']:,.3f}" if v["value"] < 100 else f"{v['value']:,.0f}",
                  f"{v['op']} {v['limit']:,}", "[green]met[/green]" if v["met"] else "[red]missed[/red]", v["bound"])
    console.print(t)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")


def plot(result: dict, path: Path) -> bool:
    """Latency by percentile, one panel per (entities, connections); only if matplotlib is installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = sorted({(r["entities_per_request"], r["connections"]) for r in result["results"]})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    qs = [q for q in CURVE_Q if q < 1.0]
    for ax, (per_req, conns) in zip(axes[0], panels):
        for r in result["results"]:
            if (r["entities_per_request"], r["connections"]) == (per_req, conns):
                ax.plot([1 / (1 - q) for q in qs], [r["quantiles_ms"][str(q)] for q in qs], marker="o",
                        label=f"{r['target']} ({r['requests_per_s']:,.0f} req/s)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([1 / (1 - q) for q in (0.5, 0.9, 0.99, 0.999, 0.9999)], ["p50", "p90", "p99", "p99.9", "p99.99"])
        ax.set_title(f"{per_req} entit{'y' if per_req == 1 else 'ies'}, {conns} connection{'' if conns == 1 else 's'}")
        ax.set_ylabel("latency ms")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="entities (one row each) in the store")
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--connections", default="1,32", help="comma-separated connection counts")
    p.add_argument("--entities", default="1,100", help="comma-separated entities per request")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per (target, shape, connections)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the timed window (discarded)")
    p.add_argument("--max-requests", type=int, default=10_000_000, help="at most this many timed requests per run")
    p.add_argument("--client-procs", type=int, default=1,
                   help="load-generator processes sharing the client core(s), the connections split among them")
    p.add_argument("--server-cpus", default="auto", help="CPUs of the servers (default: the first allowed)")
    p.add_argument("--client-cpus", default="auto", help="CPUs of the load generator (default: the last allowed)")
    p.add_argument("--workers", type=int, default=1, help="fstore serve --workers")
    p.add_argument("--server-metrics", action="store_true", help="run fstore serve with a metrics port (off by default)")
    p.add_argument("--no-metadata", dest="metadata", action="store_false",
                   help="fstore GETs without statuses and timestamps (the smallest reply)")
    p.add_argument("--no-redis", action="store_true", help="do not install, start or measure Redis")
    p.add_argument("--no-prefault", action="store_true", help="do not read every entity through the server first")
    p.add_argument("--timeout", type=float, default=30.0, help="client request timeout, seconds")
    p.add_argument("--keep", type=Path, help="work in (and keep, and reuse generated data from) this folder")
    p.add_argument("--fstore-src", type=Path, metavar="DIR",
                   help="run the server and the clients from this fstore source tree (extension built in place) "
                        "instead of the repository holding this script, e.g. a frozen snapshot")
    p.add_argument("--out", type=Path, help="write the results as JSON here (and a PNG plot if matplotlib is installed)")
    p.add_argument("--auth-compare", action="store_true",
                   help="instead: GET throughput with an auth token and with TLS against plain, in one run "
                        "(benchmarks/bench_auth.py; no Redis)")
    p.add_argument("--rounds", type=int, default=3, help="--auth-compare: rounds over the four cases")
    args = p.parse_args(argv)
    conn_list = [int(x) for x in args.connections.split(",") if x.strip()]
    shapes = [int(x) for x in args.entities.split(",") if x.strip()]
    if args.rows < 1 or not conn_list or min(conn_list) < 1 or not shapes or min(shapes) < 1:
        raise SystemExit("--rows, --connections and --entities must be positive")
    if args.seconds <= 0 or args.warmup < 0:
        raise SystemExit("--seconds must be positive and --warmup not negative")

    allowed = sorted(os.sched_getaffinity(0))
    server_cpus = parse_cpus(args.server_cpus, allowed[0])
    client_cpus = parse_cpus(args.client_cpus, allowed[-1])
    os.sched_setaffinity(0, set(client_cpus))  # before pyarrow starts its thread pools
    pinning = {"allowed": allowed, "server_cpus": server_cpus, "client_cpus": client_cpus,
               "shared_core": bool(set(server_cpus) & set(client_cpus)), "method": "taskset" if shutil.which(
                   "taskset") else "sched_setaffinity", "client_affinity": sorted(os.sched_getaffinity(0))}
    src = (args.fstore_src or REPO_ROOT).resolve()
    sys.path.insert(0, str(src))
    import numpy as np

    started = time.time()
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "argv": sys.argv,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "pinning": pinning,
            "loadavg_start": loadavg(), "machine": machine_info(), "fstore": fstore_provenance()}
    try:
        import redis
        import uvloop
        from redis.asyncio.connection import DefaultParser
        meta["clients"] = {"redis_py": redis.__version__, "redis_parser": DefaultParser.__name__,
                           "uvloop": uvloop.__version__}
    except ImportError as exc:
        if not args.no_redis and not args.auth_compare and "redis" in str(exc):
            raise SystemExit("redis-py is missing: pip install 'redis>=5' (or the 'bench' extra), or pass --no-redis")
        raise
    log(f"pinning: servers on {server_cpus}, load generator on {client_cpus}; load avg {meta['loadavg_start']}")
    if pinning["shared_core"]:
        log("warning: the servers and the load generator share a core")

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_server_"))
    work.mkdir(parents=True, exist_ok=True)
    specs = feature_specs(args.features)
    refs = [f"{VIEW}:{s['name']}" for s in specs]
    result: dict[str, Any] = {"meta": meta,
                              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "work_dir": str(work)}
    servers: list[Proc] = []
    try:
        repo, info, loaded = prepare(work, args.rows, specs)
        result["data"] = {"rows": args.rows, "features": len(specs), "kinds": {s["name"]: s["dtype"] for s in specs},
                          "nulls_in": [s["name"] for s in specs if s["nulls"]], "repo": info, "online": loaded}
        ids = entity_ids(args.rows)
        if args.auth_compare:
            return _auth_compare(args, repo, refs, ids, server_cpus, client_cpus, work, result)

        # servers
        port = free_port()
        cmd = [sys.executable, "-m", "fstore.cli", "-r", str(repo), "serve", "--host", HOST, "--port", str(port),
               "--workers", str(args.workers)]
        if args.server_metrics:
            cmd += ["--metrics-port", str(free_port())]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])))
        fserver = Proc("fstore", cmd, server_cpus, work / f"fstore-serve-{port}.log", cwd=src, env=env)
        servers.append(fserver)
        from fstore.client import wait_until_ready

        try:
            wait_until_ready(HOST, port, timeout=60)
        except TimeoutError:
            raise RuntimeError(f"fstore serve did not become ready:\n{fserver.logs()}") from None
        pinning["fstore_server"] = {"pid": fserver.pid, "affinity": fserver.affinity(), "cmd": fserver.cmd}
        log(f"fstore serve ready on port {port} (pid {fserver.pid}, CPUs {fserver.affinity()})")

        binary, why = ensure_redis(args.no_redis)
        result["redis"] = {"status": why}
        rserver, rport = None, None
        if binary:
            rserver, rport = start_redis(binary, server_cpus, work)
            servers.append(rserver)
            result["redis"]["version"] = redis_version(binary)
            pinning["redis_server"] = {"pid": rserver.pid, "affinity": rserver.affinity(), "cmd": rserver.cmd}
            log(f"redis-server ready on port {rport} (pid {rserver.pid}); loading {args.rows:,} msgpack blobs")
            keys, values = floor_rows(info["parquet"], specs)  # sorted by key = ascending entity id
            if len(values) != args.rows:
                raise RuntimeError(f"{len(values)} rows in the source, expected {args.rows}")
            del keys
            result["redis"]["load"] = load_redis(rport, ids.tolist(), values)
            result["redis"]["value_bytes_mean"] = sum(map(len, values[:100_000])) / min(len(values), 100_000)
            del values
            gc.collect()
            log(f"redis loaded: {result['redis']['load']['keys']:,} keys in {result['redis']['load']['seconds']:.1f} s")
        else:
            log(f"redis {why}")

        rng = np.random.default_rng(SEED + 31)
        sample = ids[rng.integers(0, args.rows, size=min(args.rows, CHECK_IDS))].tolist()
        log("checking replies against in-process reads")
        result["check"] = check_targets(repo, refs, sample, port, rport, args.metadata)
        if not result["check"]["ok"]:
            for line in result["check"]["problems"]:
                log("MISMATCH " + line)
            meta["loadavg_end"] = loadavg()
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=1))
            return 3
        if not args.no_prefault:
            log("prefault: reading every entity once through the server")
            result["prefault"] = prefault_server(port, ids.tolist(), refs)

        targets = [("fstore", port, fserver.pid)] + ([("redis", rport, rserver.pid)] if rserver else [])
        server_cores = {"fstore": min(args.workers, len(server_cpus)), "redis": 1}
        client_cores = min(args.client_procs, len(client_cpus))
        results: list[dict] = []
        batch_ids = {per_req: make_batches(ids, per_req, 100_000 if per_req == 1 else 200_000, SEED + 41 + per_req)
                     for per_req in shapes}
        redis_batches = {per_req: [[REDIS_KEY % k for k in b] for b in bs] for per_req, bs in batch_ids.items()} \
            if rserver else {}
        for per_req in shapes:
            for conns in conn_list:
                for target, tport, tpid in targets:
                    cfg = {"target": target, "host": HOST, "port": tport, "server_pid": tpid, "per_request": per_req,
                           "connections": conns, "warmup": args.warmup, "seconds": args.seconds,
                           "max_requests": args.max_requests, "timeout": args.timeout, "refs": refs,
                           "metadata": args.metadata,
                           "batches": batch_ids[per_req] if target == "fstore" else redis_batches[per_req]}
                    parts = run_load(cfg, args.client_procs)
                    r = summarize(target, per_req, conns, parts, server_cores[target], client_cores)
                    results.append(r)
                    log(f"{target:6s} {per_req:3d} entities x {conns:3d} conns: {r['requests_per_s']:>9,.0f} req/s "
                        f"p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} p99.9 {r['p999_ms']:.3f} ms, server "
                        f"{r['server_cpu_us_per_request']:.1f} us/req ({r['server_cpu_share']:.0%}), client "
                        f"{r['client_cpu_us_per_request']:.1f} us/req ({r['client_cpu_share']:.0%})")
                    for s in servers:
                        if s.proc.poll() is not None:
                            raise RuntimeError(f"{s.name} server exited ({s.proc.returncode}):\n{s.logs()}")
        result["results"] = results
        result["comparison"] = comparisons(results)
        result["targets"] = verdicts(results)
        result["notes"] = notes_for(results, len(client_cpus))
        if not rserver:
            result["notes"].append(f"Redis not measured: {why}")
        meta["loadavg_end"] = loadavg()
        meta["seconds"] = time.time() - started
        print_tables(result)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            png = args.out.with_suffix(".png")
            if plot(result, png):
                result["plot"] = str(png)
                log(f"wrote {png}")
            args.out.write_text(json.dumps(result, indent=1))
            log(f"wrote {args.out}")
        return 0
    finally:
        for s in servers:
            s.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _auth_compare(args: Any, repo: Path, refs: list[str], ids: Any, server_cpus: list[int], client_cpus: list[int],
                  work: Path, result: dict) -> int:
    import bench_auth

    code = bench_auth.run_auth_compare(sys.modules[__name__], args, repo, refs, ids, server_cpus, client_cpus, work,
                                       result)
    result["meta"]["loadavg_end"] = loadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
        log(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
