#!/usr/bin/env python
"""The Spark engine's cost per partition: the figures docs/scaling.md models a larger job from.

Runs ingest and a training set with the Spark engine over data bench_historical.py generated
(``--data DIR``, the shape's folder, e.g. /tmp/bench/big-0.1), with Spark's event log on, and
reads every finished task from the log: per stage, the tasks, their run time (median, max,
sum), the rows and bytes they read and shuffled. The wall time of each fstore call is printed
beside the sum of its tasks, so the driver's own share (planning, collecting, the entity
rows' preparation) shows as the difference.

Usage::

    python benchmarks/bench_spark_partitions.py --data /tmp/bench/big-0.1 --out /tmp/parts.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def stages_from_log(log_dir: Path) -> dict[int, dict]:
    """Per stage id: name, task run times (s), input rows/bytes, shuffle read/write bytes."""
    stages: dict[int, dict] = {}
    for path in sorted(p for p in log_dir.rglob("*") if p.is_file() and p.name.startswith("events_")
                       or p.is_file() and p.parent == log_dir):  # Spark 4: a folder of rolled files
        for line in path.read_text().splitlines():
            ev = json.loads(line)
            if ev.get("Event") == "SparkListenerStageCompleted":
                info = ev["Stage Info"]
                stages.setdefault(info["Stage ID"], {}).update(name=info["Stage Name"].split(" at ")[0],
                                                               submitted=info.get("Submission Time"),
                                                               completed=info.get("Completion Time"))
            if ev.get("Event") != "SparkListenerTaskEnd" or "Task Metrics" not in ev:
                continue
            m, st = ev["Task Metrics"], stages.setdefault(ev["Stage ID"], {})
            st.setdefault("run_s", []).append(m["Executor Run Time"] / 1000)
            st["input_rows"] = st.get("input_rows", 0) + m["Input Metrics"]["Records Read"]
            st["input_bytes"] = st.get("input_bytes", 0) + m["Input Metrics"]["Bytes Read"]
            sr, sw = m["Shuffle Read Metrics"], m["Shuffle Write Metrics"]
            st["shuffle_read_bytes"] = st.get("shuffle_read_bytes", 0) + sr["Remote Bytes Read"] + sr["Local Bytes Read"]
            st["shuffle_read_rows"] = st.get("shuffle_read_rows", 0) + sr["Total Records Read"]
            st["shuffle_write_bytes"] = st.get("shuffle_write_bytes", 0) + sw["Shuffle Bytes Written"]
            st["shuffle_write_rows"] = st.get("shuffle_write_rows", 0) + sw["Shuffle Records Written"]
    for st in stages.values():
        runs = st.pop("run_s", [])
        st.update(tasks=len(runs), task_s_median=statistics.median(runs) if runs else 0.0,
                  task_s_max=max(runs, default=0.0), task_s_sum=sum(runs))
        if st.get("submitted") and st.get("completed"):
            st["stage_wall_s"] = (st["completed"] - st["submitted"]) / 1000
    return stages


def driver_transfer(spark, n: int = 1_000_000, rounds: int = 3) -> dict[str, float]:
    """The driver's serial part, alone: seconds to send ``n`` entity-like rows into Spark
    (and count them), and for a round trip of ``n`` result-like rows; the best of ``rounds``."""
    import numpy as np
    import pyarrow as pa

    ent = pa.table({"k": np.arange(n), "__row": np.arange(n), "__t": np.arange(n), "__bucket": np.zeros(n, np.int32)})
    res = pa.table({"__row": np.arange(n), "__hit": np.ones(n, bool), "a": np.random.default_rng(1).random(n),
                    "b": np.arange(n), "c": pa.array(["gold"] * n)})
    send, trip = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        spark.createDataFrame(ent).count()
        send.append(time.perf_counter() - t)
        t = time.perf_counter()
        spark.createDataFrame(res).toArrow()
        trip.append(time.perf_counter() - t)
    return {"send_1m_rows_s": min(send), "round_trip_1m_rows_s": min(trip)}


def print_stages(stages: dict[int, dict]) -> None:
    for sid in sorted(stages):
        st = stages[sid]
        print(f"stage {sid:3d} {st.get('name', '?')[:28]:28s} tasks {st['tasks']:4d}  median {st['task_s_median']:7.2f}s"
              f"  max {st['task_s_max']:7.2f}s  sum {st['task_s_sum']:8.2f}s  wall {st.get('stage_wall_s', 0):7.2f}s"
              f"  in {st.get('input_rows', 0):>11,} rows  shuffle w {st.get('shuffle_write_rows', 0):>11,}"
              f" r {st.get('shuffle_read_rows', 0):>11,} rows")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a shape folder of bench_historical.py (with fstore_spark_repo)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    data = Path(args.data).resolve()
    repo = data / "fstore_spark_repo"
    spec = json.loads((data / "spec.json").read_text())
    logs = Path(tempfile.mkdtemp(prefix="fstore-spark-events-"))
    from fstore import FeatureStore
    from fstore.offline.spark.session import spark_session

    t0 = time.perf_counter()
    spark_session({"master": args.master, "conf": {
        "spark.driver.memory": "8g", "spark.sql.shuffle.partitions": args.partitions,
        "spark.sql.adaptive.enabled": "false", "spark.eventLog.enabled": "true", "spark.eventLog.compress": "false",
        "spark.eventLog.dir": logs.as_uri()}})
    calls = {"session_start_s": time.perf_counter() - t0}
    shutil.rmtree(repo / "data", ignore_errors=True)
    fs = FeatureStore(repo)
    fs.apply()
    marks = []
    for name, call in (("ingest", fs.ingest), ("historical", lambda: fs.get_historical_features(
            str(data / "entity.parquet"), features=[f"{v['name']}:{f['name']}" for v in spec["views"]
                                                   for f in v["features"]], full_feature_names=True))):
        t = time.perf_counter()
        call()
        calls[f"{name}_s"] = time.perf_counter() - t
        marks.append(name)
    calls.update(driver_transfer(fs.engine.spark()))
    print(json.dumps(calls), flush=True)
    from pyspark.sql import SparkSession
    SparkSession.getActiveSession().stop()  # flushes the event log
    stages = stages_from_log(logs)
    shutil.rmtree(logs, ignore_errors=True)
    report = {"data": str(data), "master": args.master, "partitions": args.partitions,
              "entity_rows": spec["entity_rows"], "view_rows": [v["rows"] for v in spec["views"]],
              "calls": calls, "stages": stages}
    print_stages(stages)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
