#!/usr/bin/env python
"""Online store: write throughput and read latency of fstore against plain LMDB (issue 3).

Builds two feature repositories programmatically (fstore.yaml, features/defs.yaml,
a Parquet source; apply; ingest): a large one of ``--rows`` entities and a small
one of ``--entities-small`` entities. One view, one int64 join key, one row per
entity, ``--features`` features (about half float64, 30 % int64, 10 % string,
10 % bool, ~1 % nulls in four of them), event times within the last day. Source
rows are in event-time order, so the keys arrive in random order.

Writes (large repository, each repeated ``--repeat`` times, a fresh online
folder every time):

* ``materialize``  ``fs.materialize(start, end)`` of every row;
* ``load``         ``fs.load(view, [parquet])``, the bulk load;
* ``*_presized``   the same with ``online_store.map_size`` set large enough up
                   front (fstore's default map starts at 1 GiB and doubles on
                   MapFull, replaying the batch that hit the limit);
* ``floor_putmulti`` plain py-lmdb ``putmulti(append=True)`` of the same rows
                   pre-encoded as msgpack arrays of the feature values, sorted by
                   key, in one transaction: the cost of LMDB writing alone.

Reads (both sizes, in process): random existing keys, 1 and 100 entities per
call, ``fs.get_online_features(features=[all], entity_rows=...)`` (the call
computes statuses and timestamps), then ``.to_dict()`` on the result, timed
separately (and ``to_dict(include_metadata=True)`` for information). Floor:
``with env.begin() as txn: txn.get(key, db=db)`` + ``msgpack.unpackb`` of the
same keys (already encoded as bytes) in an LMDB holding the same rows as msgpack
arrays; for 100 keys one transaction and a loop. fstore and the floor alternate
in short chunks over the same keys (``--repeat`` rounds, the two stores in
alternating order), so noise from other processes hits both alike; "paired
ratio" is the median over chunks of fstore's median / the floor's median.
Before timing, every page of each store is touched once with a cursor scan (a
long-running server has its pages mapped; ``--no-prefault`` skips this). A
sample of fstore's answers is checked value for value against the floor database.

The process pins itself to one CPU (``--cpu``; the last allowed one by default).

Usage::

    python benchmarks/bench_online.py --keep /data/bench_online --out online.json   # full size (10M)
    python benchmarks/bench_online.py --keep /data/bench_online --skip-writes ...    # reads again, same stores
    python benchmarks/bench_online.py --rows 20000 --entities-small 2000 \\
        --calls-1 500 --calls-100 50 --repeat 1 --out /tmp/o.json                   # smoke size

``--keep DIR`` keeps the generated repositories, stores and floor databases and
reuses the generated data on the next run; ``--fstore-src DIR`` measures another
fstore source tree (e.g. a snapshot taken with ``git archive`` and built in place).

Exit status 0 unless the benchmark itself failed (a missed target is reported,
not an error); 3 when fstore's answers disagree with the floor database.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_machine import cpu_model, loadavg, ram_bytes

HERE = Path(__file__).resolve()
REPO_ROOT = HERE.parent.parent
GENERATOR_VERSION = 1
SEED = 20240303
DAY_US = 86_400_000_000
KEY_STRIDE = 3           # entity ids: i * KEY_STRIDE + KEY_BASE (sparse, not 0..N-1)
KEY_BASE = 1_000_003
VIEW = "events"
VIEW_DB = f"{VIEW}_v1"
KEY_COL = "entity_id"
TARGET_ROWS_PER_S = 1_000_000
TARGET_READ_RATIO = 1.5
TARGET_SCALE_RATIO = 1.2
FLOOR_CHUNK = 250_000
CHUNK_CALLS = {1: 200, 100: 20}  # reads: fstore and the floor alternate every this many calls

S0_VOCAB = ["bronze", "silver", "gold", "platinum", "", "vip-\u00e9t\u00e9", "churned", "trial"]


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------

def pin(cpu_arg: str) -> dict:
    """Pin this process (and threads started later) to one CPU."""
    if cpu_arg == "none" or not hasattr(os, "sched_setaffinity"):
        return {"pinned": False, "cpu": None,
                "reason": "--cpu none" if cpu_arg == "none" else "os.sched_setaffinity unavailable"}
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if cpu_arg == "auto" else int(cpu_arg)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        return {"pinned": False, "cpu": cpu, "reason": str(exc)}
    return {"pinned": True, "cpu": cpu, "allowed_before": allowed}


def machine_info() -> dict:
    model = cpu_model() or platform.processor() or ""
    mem = ram_bytes()
    import lmdb
    import msgpack
    import numpy
    import pyarrow
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_bytes": mem, "platform": platform.platform(),
            "python": platform.python_version(), "lmdb_py": lmdb.__version__,
            "lmdb_c": ".".join(map(str, lmdb.version())), "msgpack": ".".join(map(str, msgpack.version)),
            "numpy": numpy.__version__, "pyarrow": pyarrow.__version__}


def fstore_provenance() -> dict:
    """Which fstore was measured: its folder, git state (commit, dirty files under fstore/), snapshot note."""
    import fstore

    src = Path(fstore.__file__).resolve().parent.parent
    out: dict = {"path": str(src), "git": None}
    try:
        r = subprocess.run(["git", "-C", str(src), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        if r.returncode == 0 and (src / ".git").exists():
            dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "fstore"],
                                   capture_output=True, text=True, timeout=10).stdout.split("\n")
            out["git"] = r.stdout.strip()
            out["dirty_files"] = [line[3:] for line in dirty if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    snap = src / "SNAPSHOT"
    if snap.exists():
        out["snapshot"] = snap.read_text().strip()
    return out


# ----------------------------------------------------------------------------------------
# Data and repositories
# ----------------------------------------------------------------------------------------

def feature_specs(n: int) -> list[dict]:
    """~50 % float64, 30 % int64, 10 % string, 10 % bool (20 -> 10/6/2/2)."""
    if n < 4:
        raise SystemExit("--features must be at least 4 (one of each kind)")
    n_str = max(1, round(n * 0.1))
    n_bool = max(1, round(n * 0.1))
    n_int = max(1, round(n * 0.3))
    n_float = n - n_str - n_bool - n_int
    specs = [{"name": f"x{i}", "dtype": "float64"} for i in range(n_float)]
    specs += [{"name": f"n{i}", "dtype": "int64"} for i in range(n_int)]
    specs += [{"name": f"s{i}", "dtype": "string"} for i in range(n_str)]
    specs += [{"name": f"b{i}", "dtype": "bool"} for i in range(n_bool)]
    for s in specs:  # the first feature of each kind has ~1 % nulls
        s["nulls"] = s["name"] in ("x0", "n0", "s0", "b0")
    specs[1]["default"] = 0.0 if specs[1]["dtype"] == "float64" else None
    return specs


def entity_ids(n: int):
    import numpy as np
    return np.arange(n, dtype=np.int64) * KEY_STRIDE + KEY_BASE


def generate_table(n: int, specs: list[dict], now_us: int, seed: int):
    """n rows, one per entity, in event-time order (so keys in random order)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    ts = np.sort(now_us - DAY_US + rng.integers(60_000_000, DAY_US - 60_000_000, size=n))
    ids = entity_ids(n)[rng.permutation(n)]
    cols = {KEY_COL: pa.array(ids), "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC"))}
    s1_vocab = pa.array([f"cohort-{i:04d}/{'abcdefgh'[i % 8] * (i % 13)}" for i in range(1000)])
    s0_vocab = pa.array(S0_VOCAB)
    for k, s in enumerate(specs):
        mask = (rng.random(n) < 0.01) if s["nulls"] else None
        if s["dtype"] == "float64":
            arr = pa.array(rng.normal(100.0 * (k + 1), 30.0, size=n), mask=mask)
        elif s["dtype"] == "int64":
            arr = pa.array(rng.integers(-1_000, 10 ** (2 + k % 8), size=n, dtype=np.int64), mask=mask)
        elif s["dtype"] == "bool":
            arr = pa.array(rng.random(n) < 0.3, mask=mask)
        else:
            vocab = s0_vocab if k % 2 == 0 else s1_vocab
            idx = pa.array(rng.integers(0, len(vocab), size=n), mask=mask)
            arr = pc.take(vocab, idx)
        cols[s["name"]] = arr
    return pa.table(cols)


def defs_yaml(specs: list[dict]) -> str:
    lines = ["entities:", "  - name: entity", f"    join_keys: [{KEY_COL}]",
             "sources:", "  - name: events_src", "    path: data/source", "    timestamp_field: event_timestamp",
             "feature_views:", f"  - name: {VIEW}", "    version: 1", "    entities: [entity]",
             "    source: events_src", "    ttl: 7d", "    features:"]
    for s in specs:
        d = "" if s.get("default") is None else f", default: {s['default']!r}"
        lines.append(f"      - {{name: {s['name']}, dtype: {s['dtype']}{d}}}")
    return "\n".join(lines) + "\n"


def write_config(repo: Path, map_size: int | None) -> None:
    text = "project: bench_online\n"
    if map_size:
        text += f"online_store: {{map_size: {map_size}}}\n"
    tmp = repo / ".fstore.yaml.tmp"
    tmp.write_text(text)
    os.replace(tmp, repo / "fstore.yaml")


def prepare_repo(repo: Path, n: int, specs: list[dict], seed: int) -> dict:
    """Generate (or reuse, with --keep) the source and the ingested offline store of one repository."""
    import pyarrow.parquet as pq

    from fstore import FeatureStore

    spec = {"generator": GENERATOR_VERSION, "rows": n, "features": [[s["name"], s["dtype"], s["nulls"]] for s in specs],
            "seed": seed}
    marker = repo / "bench_spec.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if old.get("spec") == spec:
            log(f"reusing {repo} ({n:,} rows)")
            return old
        shutil.rmtree(repo)
    elif repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    (repo / "features").mkdir()
    (repo / "data" / "source").mkdir(parents=True)
    write_config(repo, None)
    (repo / "features" / "defs.yaml").write_text(defs_yaml(specs))
    now_us = time.time_ns() // 1000
    log(f"generating {n:,} rows x {len(specs)} features in {repo}")
    t0 = time.perf_counter()
    table = generate_table(n, specs, now_us, seed)
    parquet = repo / "data" / "source" / "part-0.parquet"
    pq.write_table(table, parquet, row_group_size=1 << 20, compression="snappy")
    gen_s = time.perf_counter() - t0
    del table
    log(f"apply + ingest {repo.name}")
    t0 = time.perf_counter()
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    ingest_s = time.perf_counter() - t0
    info = {"spec": spec, "rows": n, "generated_at_us": now_us, "start_us": now_us - DAY_US, "parquet": str(parquet),
            "parquet_bytes": parquet.stat().st_size, "generate_seconds": gen_s, "apply_ingest_seconds": ingest_s}
    marker.write_text(json.dumps(info))
    return info


# ----------------------------------------------------------------------------------------
# Writes
# ----------------------------------------------------------------------------------------

def fresh_online(repo: Path, map_size: int | None):
    from fstore import FeatureStore

    write_config(repo, map_size)
    shutil.rmtree(repo / "data" / "online", ignore_errors=True)
    return FeatureStore(repo)


def store_facts(fs) -> dict:
    online = fs.online
    st = online.stats(VIEW_DB)
    return {"size_on_disk": online.size_on_disk(), "db_page_bytes": st["bytes"], "entries": st["entries"],
            "map_size_final": online.env.info()["map_size"]}


def time_materialize(repo: Path, info: dict, map_size: int | None) -> dict:
    fs = fresh_online(repo, map_size)
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    start = info["start_us"]
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    results = fs.materialize(start, end)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    res = results[0]
    out = {"seconds": seconds, "cpu_seconds": cpu, "rows": res.rows_read, "rows_written": res.rows_written,
           "rows_per_s": res.rows_read / seconds, "map_size_initial": fs.online.initial_map_size, **store_facts(fs)}
    fs.online.close()
    return out


def time_load(repo: Path, info: dict, map_size: int | None) -> dict:
    fs = fresh_online(repo, map_size)
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    res = fs.load(VIEW, [info["parquet"]])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"seconds": seconds, "cpu_seconds": cpu, "rows": res.rows_read, "rows_written": res.rows_written,
           "rows_per_s": res.rows_read / seconds, "map_size_initial": fs.online.initial_map_size, **store_facts(fs)}
    fs.online.close()
    return out


def online_key(i: int) -> bytes:
    """fstore's key of one int64: big-endian with the sign bit flipped (numeric order = byte order)."""
    return ((i ^ (1 << 63)) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def floor_rows(parquet: str, specs: list[dict]) -> tuple[list[bytes], list[bytes]]:
    """Keys and msgpack-encoded values (an array of the feature values), sorted by key."""
    import msgpack
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(parquet, columns=[KEY_COL] + [s["name"] for s in specs])
    table = table.take(pc.sort_indices(table, sort_keys=[(KEY_COL, "ascending")]))
    ids = table.column(KEY_COL).to_numpy()
    raw = (ids.view(np.uint64) ^ np.uint64(1 << 63)).astype(">u8").tobytes()
    keys = [raw[i:i + 8] for i in range(0, len(raw), 8)]
    fills = {"float64": 0.0, "int64": 0, "string": "", "bool": False}
    packb = msgpack.packb
    values: list[bytes] = []
    for lo in range(0, table.num_rows, FLOOR_CHUNK):
        part = table.slice(lo, FLOOR_CHUNK)
        cols = []
        for s in specs:
            arr = part.column(s["name"]).combine_chunks()
            lst = pc.fill_null(arr, pa.scalar(fills[s["dtype"]], arr.type)).to_numpy(zero_copy_only=False).tolist() \
                if arr.null_count else arr.to_numpy(zero_copy_only=False).tolist()
            if arr.null_count:
                for i in np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)).tolist():
                    lst[i] = None
            cols.append(lst)
        values.extend(map(packb, zip(*cols)))
    return keys, values


def time_floor_write(path: Path, keys: list[bytes], values: list[bytes], map_size: int) -> dict:
    import lmdb

    shutil.rmtree(path, ignore_errors=True)
    env = lmdb.open(str(path), map_size=map_size, max_dbs=4, readahead=False, subdir=True)
    db = env.open_db(b"floor")
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    with env.begin(write=True) as txn:
        consumed, added = txn.cursor(db).putmulti(zip(keys, values), dupdata=False, overwrite=True, append=True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with env.begin() as txn:
        st = txn.stat(db)
    env.close()
    data = path / "data.mdb"
    return {"seconds": seconds, "cpu_seconds": cpu, "rows": added, "rows_written": added,
            "rows_per_s": added / seconds, "size_on_disk": data.stat().st_blocks * 512,
            "db_page_bytes": (st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]) * st["psize"],
            "entries": st["entries"], "value_bytes_mean": sum(map(len, values[:100_000])) / min(len(values), 100_000)}


def summarize_runs(runs: list[dict]) -> dict:
    secs = [r["seconds"] for r in runs]
    med = statistics.median(secs)
    rows = runs[0]["rows"]
    return {"runs": runs, "rows": rows, "median_seconds": med, "min_seconds": min(secs),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            "rows_per_s": rows / med, "best_rows_per_s": rows / min(secs),
            "size_on_disk": runs[-1]["size_on_disk"], "bytes_per_row": runs[-1]["size_on_disk"] / max(rows, 1)}


def presize(rows: int) -> int:
    need = max(1 << 30, rows * 800)
    return 1 << (need - 1).bit_length()


# ----------------------------------------------------------------------------------------
# Reads
# ----------------------------------------------------------------------------------------

def prefault_env(env, db) -> int:
    """Touch every leaf page once (a cursor scan), so timed reads do not pay first-touch page faults."""
    n = 0
    with env.begin() as txn:
        for _ in txn.cursor(db).iternext(keys=True, values=False):
            n += 1
    return n


def pct(samples_ns: list[int], q: float) -> float:
    s = sorted(samples_ns)
    if not s:
        return 0.0
    idx = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[idx] / 1000.0


def describe(samples_ns: list[int]) -> dict:
    return {"calls": len(samples_ns), "median_us": pct(samples_ns, 0.5), "p99_us": pct(samples_ns, 0.99),
            "p90_us": pct(samples_ns, 0.9), "mean_us": (sum(samples_ns) / len(samples_ns) / 1000.0) if samples_ns else 0.0,
            "min_us": min(samples_ns) / 1000.0 if samples_ns else 0.0}


class Reader:
    """One store size: an fstore FeatureStore and the floor LMDB with the same rows."""

    def __init__(self, label: str, repo: Path, floor_path: Path, n_entities: int, refs: list[str]) -> None:
        import lmdb
        from fstore import FeatureStore

        self.label, self.n = label, n_entities
        self.fs = FeatureStore(repo)
        self.refs = refs
        self.env = lmdb.open(str(floor_path), readonly=True, lock=True, max_dbs=4, readahead=False, subdir=True)
        self.db = self.env.open_db(b"floor", create=False)
        self.samples: dict[str, list[int]] = {}
        self.paired: dict[int, list[float]] = {}  # per chunk: fstore median / floor median

    def prefault(self) -> dict:
        t0 = time.perf_counter()
        a = prefault_env(self.fs.online.env, self.fs.online.db(VIEW_DB))
        t1 = time.perf_counter()
        b = prefault_env(self.env, self.db)
        return {"fstore_entries": a, "fstore_seconds": t1 - t0, "floor_entries": b,
                "floor_seconds": time.perf_counter() - t1}

    def add(self, name: str, samples: list[int]) -> None:
        self.samples.setdefault(name, []).extend(samples)

    def fstore_block(self, ids: list[int], per_call: int) -> None:
        get = self.fs.get_online_features
        refs = self.refs
        batches = [[{KEY_COL: k} for k in ids[i:i + per_call]] for i in range(0, len(ids), per_call)]
        call, to_dict, meta = [], [], []
        clock = time.perf_counter_ns
        for rows in batches:
            t0 = clock()
            resp = get(features=refs, entity_rows=rows)
            t1 = clock()
            resp.to_dict()
            t2 = clock()
            call.append(t1 - t0)
            to_dict.append(t2 - t1)
        for rows in batches[: max(1, len(batches) // 4)]:  # to_dict(include_metadata=True), for information
            resp = get(features=refs, entity_rows=rows)
            t0 = clock()
            resp.to_dict(include_metadata=True)
            meta.append(clock() - t0)
        self.add(f"{per_call}:fstore", call)
        self.add(f"{per_call}:to_dict", to_dict)
        self.add(f"{per_call}:fstore+to_dict", [a + b for a, b in zip(call, to_dict)])
        self.add(f"{per_call}:to_dict_metadata", meta)

    def floor_block(self, ids: list[int], per_call: int) -> None:
        import msgpack

        unpackb = msgpack.unpackb
        env, db = self.env, self.db
        keys = [online_key(k) for k in ids]
        clock = time.perf_counter_ns
        out = []
        if per_call == 1:
            got = 0
            for key in keys:
                t0 = clock()
                with env.begin() as txn:
                    row = unpackb(txn.get(key, db=db))
                out.append(clock() - t0)
                got += row is not None
            assert got == len(keys)
        else:
            batches = [keys[i:i + per_call] for i in range(0, len(keys), per_call)]
            got = 0
            for batch in batches:
                t0 = clock()
                with env.begin() as txn:
                    rows = [unpackb(txn.get(k, db=db)) for k in batch]
                out.append(clock() - t0)
                got += len(rows)
            assert got == len(keys)
        self.add(f"{per_call}:floor", out)

    def check(self, ids: list[int]) -> list[str]:
        """fstore's answer equals the floor row for ``ids``, every status PRESENT."""
        import msgpack

        resp = self.fs.get_online_features(features=self.refs, entity_rows=[{KEY_COL: k} for k in ids])
        d = resp.to_dict()
        names = resp.feature_names
        problems = []
        with self.env.begin() as txn:
            for j, k in enumerate(ids):
                raw = txn.get(online_key(k), db=self.db)
                want = msgpack.unpackb(raw) if raw is not None else None
                got = [d[name][j] for name in names]
                if want is None or list(want) != got:
                    problems.append(f"{self.label} entity {k}: fstore {got!r} != floor {want!r}")
                    if len(problems) > 5:
                        return problems
        for name in names:
            bad = [s for s in resp.statuses(name) if s.name != "PRESENT"]
            if bad:
                problems.append(f"{self.label} feature {name}: {len(bad)} values not PRESENT ({bad[0].name})")
        return problems

    def close(self) -> None:
        self.env.close()
        self.fs.online.close()


def run_reads(readers: list[Reader], calls_1: int, calls_100: int, rounds: int, seed: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    # warm-up: plan cache, code paths
    for r in readers:
        ids = (entity_ids(r.n)[rng.integers(0, r.n, size=200)]).tolist()
        r.fstore_block(ids, 1)
        r.floor_block(ids, 1)
        r.fstore_block(ids, 100)
        r.floor_block(ids, 100)
        r.samples.clear()
        r.paired.clear()
    for rnd in range(rounds):
        order = readers if rnd % 2 == 0 else readers[::-1]
        for r in order:
            for per_call, calls in ((1, calls_1), (100, calls_100)):
                n_calls = max(1, calls // rounds)
                ids = entity_ids(r.n)[rng.integers(0, r.n, size=n_calls * per_call)].tolist()
                # fstore and the floor alternate in short chunks over the same keys, so a burst of
                # noise from other processes hits both alike; each chunk also gives a paired ratio
                step = CHUNK_CALLS[per_call] * per_call
                gc.collect()  # once per group: a collection between chunks would also flush the CPU caches
                for c, lo in enumerate(range(0, len(ids), step)):
                    chunk = ids[lo:lo + step]
                    n_f = len(r.samples.get(f"{per_call}:fstore", []))
                    n_b = len(r.samples.get(f"{per_call}:floor", []))
                    if (rnd + c) % 2 == 0:
                        r.fstore_block(chunk, per_call)
                        r.floor_block(chunk, per_call)
                    else:
                        r.floor_block(chunk, per_call)
                        r.fstore_block(chunk, per_call)
                    f_med = statistics.median(r.samples[f"{per_call}:fstore"][n_f:])
                    b_med = statistics.median(r.samples[f"{per_call}:floor"][n_b:])
                    r.paired.setdefault(per_call, []).append(f_med / b_med)
        log(f"read round {rnd + 1}/{rounds} done")
    out = {}
    for r in readers:
        entry = {"entities": r.n}
        for per_call in (1, 100):
            entry[str(per_call)] = {m: describe(r.samples[f"{per_call}:{m}"])
                                    for m in ("fstore", "to_dict", "fstore+to_dict", "to_dict_metadata", "floor")}
            chunks = r.paired.get(per_call, [])
            entry[str(per_call)]["paired_ratio"] = {"chunks": len(chunks),
                                                    "median": statistics.median(chunks) if chunks else 0.0}
        out[r.label] = entry
    return out


# ----------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------

def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1024
    return str(n)


def verdicts(result: dict) -> list[dict]:
    w, r = result.get("writes"), result["reads"]
    out = []
    for op in ("materialize", "load") if w else ():
        floor_rps = w["floor_putmulti"]["rows_per_s"]
        v = w[op]["rows_per_s"]
        out.append({"name": f"{op} rows/s >= 1M", "value": v, "target": TARGET_ROWS_PER_S,
                    "met": v >= TARGET_ROWS_PER_S, "vs_floor": floor_rps / v})
    for per_call in ("1", "100"):
        for m in ("fstore", "fstore+to_dict"):
            ratio = r["large"][per_call][m]["median_us"] / r["large"][per_call]["floor"]["median_us"]
            out.append({"name": f"read {per_call}/call {m} / floor (median, large)", "value": ratio,
                        "target": TARGET_READ_RATIO, "met": ratio <= TARGET_READ_RATIO})
        ratio = r["large"][per_call]["fstore"]["median_us"] / r["small"][per_call]["fstore"]["median_us"]
        floor_ratio = r["large"][per_call]["floor"]["median_us"] / r["small"][per_call]["floor"]["median_us"]
        out.append({"name": f"read {per_call}/call fstore large / small (median)", "value": ratio,
                    "target": TARGET_SCALE_RATIO, "met": ratio <= TARGET_SCALE_RATIO, "floor_value": floor_ratio})
    return out


def print_writes(console, result: dict, w: dict) -> None:
    from rich.table import Table

    floor = w["floor_putmulti"]
    t = Table(title=f"Writes: {w['materialize']['rows']:,} entities x {result['data']['features']} features "
                    f"(median of {result['args']['repeat']})")
    for col in ("operation", "seconds", "cpu s", "rows/s", "vs 1M/s target", "floor / op", "data.mdb", "bytes/row",
                "live pages/row", "map doublings"):
        t.add_column(col, justify="right" if col != "operation" else "left")
    for op in ("materialize", "load", "materialize_presized", "load_presized", "floor_putmulti",
               "materialize_small"):
        if op not in w:
            continue
        e = w[op]
        run = e["runs"][-1]
        doublings = ""
        if "map_size_final" in run and "map_size_initial" in run:
            doublings = str(max(0, (run["map_size_final"] // run["map_size_initial"]).bit_length() - 1))
        t.add_row(op, f"{e['median_seconds']:.2f}", f"{e['median_cpu_seconds']:.2f}", f"{e['rows_per_s']:,.0f}",
                  f"{e['rows_per_s'] / TARGET_ROWS_PER_S:.2f}x", f"{floor['rows_per_s'] / e['rows_per_s']:.2f}x",
                  human_bytes(e["size_on_disk"]), f"{e['bytes_per_row']:.0f}",
                  f"{run['db_page_bytes'] / max(run['rows'], 1):.0f}", doublings)
    console.print(t)


def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, width=160)
    m = result["meta"]
    console.print(f"[bold]fstore online benchmark[/bold]  {m['machine']['cpu_model']}, nproc {m['machine']['nproc']}, "
                  f"RAM {human_bytes(m['machine']['ram_bytes'] or 0)}, pinned: {m['affinity']}, "
                  f"load avg start {m['loadavg_start']} end {m['loadavg_end']}")
    f = m["fstore"]
    console.print(f"fstore from {f['path']} (git {f.get('git')}, dirty {f.get('dirty_files')}, "
                  f"snapshot {f.get('snapshot')})")
    w = result.get("writes")
    if w:
        print_writes(console, result, w)
    r = result["reads"]
    t = Table(title="Reads in process (per call, microseconds; ratio = median / floor median)")
    for col in ("store", "entities/call", "fstore med", "fstore p99", "to_dict med", "call+to_dict med",
                "call+to_dict p99", "floor med", "floor p99", "ratio call", "paired ratio", "ratio call+to_dict",
                "to_dict(meta) med"):
        t.add_column(col, justify="right" if col != "store" else "left")
    for label in ("large", "small"):
        for per_call in ("1", "100"):
            e = r[label][per_call]
            fl = e["floor"]["median_us"]
            t.add_row(f"{label} ({r[label]['entities']:,})", per_call, f"{e['fstore']['median_us']:.1f}",
                      f"{e['fstore']['p99_us']:.1f}", f"{e['to_dict']['median_us']:.1f}",
                      f"{e['fstore+to_dict']['median_us']:.1f}", f"{e['fstore+to_dict']['p99_us']:.1f}",
                      f"{fl:.1f}", f"{e['floor']['p99_us']:.1f}", f"{e['fstore']['median_us'] / fl:.2f}x",
                      f"{e['paired_ratio']['median']:.2f}x", f"{e['fstore+to_dict']['median_us'] / fl:.2f}x",
                      f"{e['to_dict_metadata']['median_us']:.1f}")
    console.print(t)
    t = Table(title="Targets")
    for col in ("target", "measured", "limit", "met"):
        t.add_column(col)
    for v in result["targets"]:
        value = f"{v['value']:,.0f} rows/s (floor is {v['vs_floor']:.2f}x faster)" if "vs_floor" in v \
            else f"{v['value']:.2f}x" + (f" (floor: {v['floor_value']:.2f}x)" if "floor_value" in v else "")
        limit = f">= {v['target']:,}" if "vs_floor" in v else f"<= {v['target']}x"
        t.add_row(v["name"], value, limit, "[green]yes[/green]" if v["met"] else "[red]NO[/red]")
    console.print(t)


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="entities (= rows) of the large store")
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--entities-small", type=int, default=100_000, help="entities of the small store")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--repeat", type=int, default=3,
                   help="write measurements are repeated this many times; reads run in this many interleaved rounds")
    p.add_argument("--keep", type=Path, help="work in (and keep, and reuse generated data from) this folder")
    p.add_argument("--calls-1", type=int, default=20_000, help="timed 1-entity calls per store and method")
    p.add_argument("--calls-100", type=int, default=2_000, help="timed 100-entity calls per store and method")
    p.add_argument("--cpu", default="auto", help="CPU to pin to: auto (the last allowed), a number, or none")
    p.add_argument("--no-prefault", action="store_true", help="do not touch every page before timing reads")
    p.add_argument("--no-presized", action="store_true", help="skip the presized-map write variants")
    p.add_argument("--skip-writes", action="store_true",
                   help="time reads only, on the stores an earlier run left in --keep (to re-measure reads alone)")
    p.add_argument("--prepare-only", action="store_true",
                   help="generate and ingest the repositories (kept with --keep) and stop; nothing is timed")
    p.add_argument("--fstore-src", type=Path, metavar="DIR",
                   help="import fstore from this source tree (extension built in place) instead of the repository "
                        "holding this script, e.g. a frozen snapshot while the working tree changes")
    args = p.parse_args(argv)
    if args.skip_writes and not args.keep:
        raise SystemExit("--skip-writes needs --keep DIR with the stores of an earlier run")
    if args.rows < 1 or args.entities_small < 1 or args.repeat < 1:
        raise SystemExit("--rows, --entities-small and --repeat must be positive")

    affinity = pin(args.cpu)  # before pyarrow starts its thread pools
    sys.path.insert(0, str((args.fstore_src or REPO_ROOT).resolve()))
    import numpy as np  # noqa: F401  (imported after pinning)

    started = time.time()
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "argv": sys.argv,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "affinity": affinity, "loadavg_start": loadavg(), "machine": machine_info(),
            "fstore": fstore_provenance()}
    log(f"pinning: {affinity}; load avg {meta['loadavg_start']}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_online_"))
    work.mkdir(parents=True, exist_ok=True)
    specs = feature_specs(args.features)
    refs = [f"{VIEW}:{s['name']}" for s in specs]
    result: dict = {"meta": meta, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "work_dir": str(work)}
    try:
        large = prepare_repo(work / "large", args.rows, specs, SEED)
        small = prepare_repo(work / "small", args.entities_small, specs, SEED + 1)
        result["data"] = {"features": len(specs), "kinds": {s["name"]: s["dtype"] for s in specs},
                          "nulls_in": [s["name"] for s in specs if s["nulls"]], "large": large, "small": small,
                          "key_order_in_source": "random (rows in event-time order)", "ttl": "7d"}
        if args.prepare_only:
            log("prepared; --prepare-only: stopping")
            return 0

        if args.skip_writes:
            for d in (work / "large" / "data" / "online", work / "floor-large", work / "small" / "data" / "online",
                      work / "floor-small"):
                if not (d / "data.mdb").exists():
                    raise SystemExit(f"--skip-writes needs the stores of an earlier run in --keep; {d} has none")
            log("--skip-writes: reading the stores of an earlier run")
        else:
            log("encoding floor rows (msgpack) for the large store")
            t0 = time.perf_counter()
            fkeys, fvalues = floor_rows(large["parquet"], specs)
            result["data"]["floor_encode_seconds"] = time.perf_counter() - t0
            big_map = presize(args.rows)
            runs: dict[str, list[dict]] = {k: [] for k in ("floor_putmulti", "load", "materialize",
                                                          "load_presized", "materialize_presized")}
            for rep in range(args.repeat):
                log(f"writes, repeat {rep + 1}/{args.repeat}: floor putmulti")
                runs["floor_putmulti"].append(time_floor_write(work / "floor-large", fkeys, fvalues, big_map))
                log(f"  floor {runs['floor_putmulti'][-1]['rows_per_s']:,.0f} rows/s; load")
                runs["load"].append(time_load(work / "large", large, None))
                log(f"  load {runs['load'][-1]['rows_per_s']:,.0f} rows/s; materialize")
                if not args.no_presized:
                    runs["load_presized"].append(time_load(work / "large", large, big_map))
                    log(f"  load presized {runs['load_presized'][-1]['rows_per_s']:,.0f} rows/s")
                    runs["materialize_presized"].append(time_materialize(work / "large", large, big_map))
                    log(f"  materialize presized {runs['materialize_presized'][-1]['rows_per_s']:,.0f} rows/s")
                runs["materialize"].append(time_materialize(work / "large", large, None))  # last: the store read below
                log(f"  materialize {runs['materialize'][-1]['rows_per_s']:,.0f} rows/s")
            del fkeys, fvalues
            gc.collect()
            write_config(work / "large", None)
            writes = {k: summarize_runs(v) for k, v in runs.items() if v}
            log("small store: materialize + floor")
            writes["materialize_small"] = summarize_runs([time_materialize(work / "small", small, None)])
            skeys, svalues = floor_rows(small["parquet"], specs)
            writes["floor_putmulti_small"] = summarize_runs([time_floor_write(work / "floor-small", skeys, svalues,
                                                                               presize(args.entities_small))])
            del skeys, svalues
            result["writes"] = writes

        readers = [Reader("large", work / "large", work / "floor-large", args.rows, refs),
                   Reader("small", work / "small", work / "floor-small", args.entities_small, refs)]
        problems = []
        rng = np.random.default_rng(SEED + 7)
        for r in readers:
            problems += r.check(entity_ids(r.n)[rng.integers(0, r.n, size=min(r.n, 300))].tolist())
        if problems:
            for line in problems:
                log("MISMATCH " + line)
            result["check"] = {"ok": False, "problems": problems}
        else:
            result["check"] = {"ok": True, "sampled_entities_per_store": 300}
        if not args.no_prefault:
            log("prefaulting stores (cursor scan)")
            result["prefault"] = {r.label: r.prefault() for r in readers}
        log("reads")
        gc.collect()
        result["reads"] = run_reads(readers, args.calls_1, args.calls_100, args.repeat, SEED + 11)
        for r in readers:
            r.close()
        result["targets"] = verdicts(result)
        meta["loadavg_end"] = loadavg()
        meta["seconds"] = time.time() - started
        print_tables(result)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1))
            log(f"wrote {args.out}")
        return 3 if problems else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
