"""The gate's data: small, seeded, made once per run in a work folder, shared by the
micro-benchmarks (benchmarks/gate/bench_*.py) and the serving run (serving.py).

* ``online``: the repository of bench_online.py / bench_server.py (one view, 20 features:
  10 float64, 6 int64, 2 string, 2 bool; ~1 % nulls in four of them; one int64 key), bulk
  loaded into fstore's online store, and the floor LMDB beside it holding the same rows as
  msgpack: ``rows`` (an array of the 20 values per entity, what the read floor unpacks) and
  ``served`` (the values feature-major for one row, ``[[v0], ..., [v19]]``: what the raw
  server returns untouched as a GET's ``values``).
* ``history``: bench_historical.py's ``big`` shape at a small scale (three views, one with a
  composite key; ties, ttl edges, unknown and null keys), applied and ingested, for the
  as-of join against DuckDB's ASOF JOIN on the same files.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[1]
if str(BENCH_DIR) not in sys.path:  # bench_online.py and friends import each other as top-level modules
    sys.path.insert(0, str(BENCH_DIR))

ONLINE_ROWS = 20_000      # entities of the online store (one row each)
FEATURES = 20
HISTORY_SCALE = 0.004     # bench_historical's big shape: 3 views x 40k rows, 4k entity rows
FLOOR_DBS = (b"rows", b"served", b"meta")
HEAD_KEY = b"head"        # in the floor's ``meta`` db: the constant part of the raw server's GET reply
DATA_VERSION = 1          # bump when what is generated changes: a kept work folder is then remade


def online_key(entity_id: int) -> bytes:
    """fstore's LMDB key of an int64 (big-endian, sign bit flipped); the floors use the same keys."""
    return ((entity_id ^ (1 << 63)) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")


def open_floor(path: str | Path) -> Any:
    """The floor LMDB, read-only (one handle per process: LMDB refuses a second)."""
    import lmdb

    return lmdb.open(str(path), readonly=True, lock=False, max_dbs=len(FLOOR_DBS), subdir=True)


def reply_head(names: list[str], dtypes: list[str], key: str) -> bytes:
    """The raw server's GET result up to its values: a map of names, dtypes, view_of, keys and
    the ``values`` key, packed once (what fstore's prepared shape also packs once)."""
    import msgpack

    packb = msgpack.packb
    return (b"\x85" + packb("names") + packb(names) + packb("dtypes") + packb(dtypes) + packb("view_of")
            + packb([0] * len(names)) + packb("keys") + packb([key]) + packb("values"))


def _done(folder: Path, spec: dict[str, Any]) -> bool:
    marker = folder / "gate_spec.json"
    return marker.exists() and json.loads(marker.read_text()) == spec


def online(work: Path) -> dict[str, Any]:
    """The online repository and its floor LMDB (made, or reused when ``work`` holds them)."""
    import lmdb
    import msgpack
    from bench_online import KEY_COL, SEED, VIEW, entity_ids, feature_specs, floor_rows
    from bench_server import prepare

    specs = feature_specs(FEATURES)
    repo, info, _ = prepare(work, ONLINE_ROWS, specs)
    floor = work / "floor"
    spec = {"v": DATA_VERSION, "rows": ONLINE_ROWS, "generated_at_us": info["generated_at_us"]}
    if not _done(floor, spec):
        shutil.rmtree(floor, ignore_errors=True)
        keys, values = floor_rows(info["parquet"], specs)
        env = lmdb.open(str(floor), map_size=1 << 30, max_dbs=len(FLOOR_DBS), subdir=True)
        rows_db, served_db, meta_db = (env.open_db(name) for name in FLOOR_DBS)
        served = [msgpack.packb([[v] for v in msgpack.unpackb(raw)]) for raw in values]
        with env.begin(write=True) as txn:
            txn.cursor(rows_db).putmulti(zip(keys, values), append=True)
            txn.cursor(served_db).putmulti(zip(keys, served), append=True)
            head = reply_head([s["name"] for s in specs], [s["dtype"] for s in specs], KEY_COL)
            txn.put(HEAD_KEY, head, db=meta_db)
        env.close()
        (floor / "gate_spec.json").write_text(json.dumps(spec))
    return {"repo": repo, "floor": floor, "parquet": info["parquet"], "specs": specs, "key": KEY_COL,
            "refs": [f"{VIEW}:{s['name']}" for s in specs], "ids": entity_ids(ONLINE_ROWS), "seed": SEED}


def history(work: Path) -> dict[str, Any]:
    """bench_historical's generated sources (big shape, small scale) and its repository, ingested."""
    import bench_historical as bh
    from fstore import FeatureStore

    data = work / "history"
    spec = bh.shape_spec("big", HISTORY_SCALE)
    want = {"v": DATA_VERSION, "generator": bh.GENERATOR_VERSION, "scale": HISTORY_SCALE}
    if not _done(data, want):
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        bh.generate(spec, data)
        fs = FeatureStore(bh.write_repo(spec, data))
        fs.apply()
        fs.ingest()
        (data / "gate_spec.json").write_text(json.dumps(want))
    spec = json.loads((data / "spec.json").read_text())
    return {"data": data, "spec": spec, "repo": data / "fstore_repo", "entity": data / "entity.parquet",
            "refs": bh.feature_refs(spec)}
