"""``fstore drift`` end to end: real offline store, real training set file, served-feature
log files in the documented layout, through the CLI (exit codes, JSON, HTML)."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import edit_defs, make_views_repo, utc_ts, write_view_source
from fstore import FeatureStore
from fstore.errors import DefinitionErrors, DriftInputError

UTC = dt.timezone.utc
DAY0 = dt.datetime(2024, 3, 1, tzinfo=UTC)
N = 4000
SERVICES = "feature_services:\n  - name: svc\n    features: [stats]\n  - name: other\n    features: [stats:x]\n"
TYPES = {"x": pa.float64(), "n": pa.int64(), "seg": pa.string(), "flag": pa.bool_()}


def values(rng: np.random.Generator, n: int, shift: float = 0.0, new_seg: bool = False,
           null_n: float = 0.0) -> dict[str, list[Any]]:
    segs = ["a", "b", "c", "d"] if new_seg else ["a", "b", "c"]
    nums = rng.poisson(3, n).tolist()
    return {"x": (rng.normal(shift, 1, n)).tolist(),
            "n": [None if rng.random() < null_n else v for v in nums],
            "seg": [segs[i] for i in rng.integers(0, len(segs), n)],
            "flag": (rng.random(n) < 0.3).tolist()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_views_repo(tmp_path_factory.mktemp("drift") / "repo", {"stats": {
        "keys": [("uid", "int")], "created": False,
        "features": [("x", "float64", None), ("n", "int64", None), ("seg", "string", None), ("flag", "bool", None)]}},
        services=SERVICES)
    rng = np.random.default_rng(11)
    # days 0-9: the reference population; days 10-19: shifted x, a new segment
    old, new = values(rng, N), values(rng, N, shift=1.5, new_seg=True)
    ts = [DAY0 + dt.timedelta(days=int(i % 10), seconds=int(i)) for i in range(N)]
    cols = {k: TYPES[k] for k in old}
    table = pa.table({"uid": pa.array(list(range(N)) * 2, pa.int64()),
                      "ts": utc_ts(ts + [t + dt.timedelta(days=10) for t in ts]),
                      **{k: pa.array(old[k] + new[k], t) for k, t in cols.items()}})
    write_view_source(root, "stats", table)
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        entities = pa.table({"uid": pa.array(range(N), pa.int64()),
                             "event_timestamp": utc_ts([DAY0 + dt.timedelta(days=9, hours=23)] * N)})
        fs.build_dataset(entities, root / "train.parquet", feature_service="svc")
    return root


def write_log(root: Path, service: str, when: dt.datetime, cols: dict[str, list[Any]], seq: int = 0) -> Path:
    """A served-feature log part in the documented layout (docs/monitoring.md)."""
    n = len(next(iter(cols.values())))
    day = root / "data" / "offline" / "logs" / service / f"date={when.date().isoformat()}"
    day.mkdir(parents=True, exist_ok=True)
    data: dict[str, pa.Array] = {
        "request_id": pa.array([f"1-{i}" for i in range(n)]), "caller_request_id": pa.nulls(n, pa.string()),
        "request_time": pa.array([when] * n, pa.timestamp("us", tz="UTC")), "service": pa.array([service] * n),
        "registry_version": pa.array([1] * n, pa.int64()), "path": pa.array(["server"] * n),
        "worker": pa.array([1] * n, pa.int64()), "row": pa.array([0] * n, pa.int32()),
        "uid": pa.array(range(n), pa.int64())}
    for f, v in cols.items():
        data[f] = pa.array(v, TYPES[f])
        data[f + "__status"] = pa.array([0 if x is not None else 1 for x in v], pa.int8())
        data[f + "__event_timestamp"] = pa.array([when] * n, pa.timestamp("us", tz="UTC"))
    meta = {"format": 1, "service": service, "keys": ["uid"],
            "features": [{"column": f, "view": "stats_v1", "feature": f, "dtype": str(TYPES[f])} for f in cols]}
    table = pa.table(data).replace_schema_metadata({"fstore.log": json.dumps(meta)})
    path = day / f"part-{when.strftime('%Y%m%dT%H%M%S')}-1-{seq}.parquet"
    pq.write_table(table, path)
    (day / f".part-{seq}.parquet.tmp").write_bytes(b"half a file")  # a writer's temporary: never read
    return path


def fstore(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("fstore")
    return subprocess.run([str(exe), "-r", str(root), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def by_feature(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["feature"]: f for f in doc["features"]}


def test_offline_windows_find_the_shift(repo: Path) -> None:
    """Reference: the first ten days; current: the next ten, from the offline store."""
    p = fstore(repo, "drift", "--service", "svc", "--reference-window", "2024-03-01", "2024-03-10T23:59:59Z",
               "--current", "offline", "--since", "2024-03-11", "--json")
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["service"] == "svc" and doc["level"] == "alert"
    assert doc["reference"]["rows"] == N and doc["current"]["rows"] == N
    f = by_feature(doc)
    assert list(f) == ["x", "n", "seg", "flag"]
    assert f["x"]["psi"] > 1 and f["x"]["level"] == "alert"
    assert f["x"]["mean_cur"] - f["x"]["mean_ref"] == pytest.approx(1.5, abs=0.15)
    assert f["seg"]["psi"] > 0.25 and f["seg"]["bins"] == 4          # a, b, c and the unseen bin
    assert f["flag"]["level"] == "ok" and f["n"]["level"] == "ok"
    assert "mean_ref" not in f["seg"]


def test_training_set_against_the_served_logs(repo: Path, tmp_path: Path) -> None:
    """Logs like the training set: ok and exit 0; logs of shifted values: alert, exit 1,
    and an HTML page with both histograms and no script."""
    rng = np.random.default_rng(5)
    same = write_log(repo, "svc", dt.datetime(2024, 4, 1, 12, tzinfo=UTC), values(rng, 20000))
    p = fstore(repo, "drift", "--service", "svc", "--reference", str(repo / "train.parquet"), "--json",
               "--since", "2024-04-01", "--until", "2024-04-01T23:59:59Z")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["current"] == {"kind": "logs", "since": "2024-04-01T00:00:00+00:00",
                              "until": "2024-04-01T23:59:59+00:00", "rows": 20000}
    assert all(f["psi"] < 0.1 and f["level"] == "ok" for f in doc["features"]), doc["features"]

    write_log(repo, "svc", dt.datetime(2024, 4, 2, 9, tzinfo=UTC), values(rng, 5000, shift=2, null_n=0.4), seq=1)
    html = tmp_path / "report.html"
    p = fstore(repo, "drift", "--service", "svc", "--reference", str(repo / "train.parquet"),
               "--since", "2024-04-02", "--html", str(html))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "alert" in p.stdout and "report written" in p.stdout
    page = html.read_text()
    assert page.count("<svg") == 4 and "<script" not in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    # every log record by default: both days
    doc = json.loads(fstore(repo, "drift", "--service", "svc", "--reference", str(repo / "train.parquet"),
                            "--json").stdout)
    assert doc["current"]["rows"] == 25000
    assert by_feature(doc)["n"]["null_rate_cur"] == pytest.approx(0.4 * 5000 / 25000, abs=0.01)
    same.unlink()


def test_thresholds_from_the_definitions(repo: Path) -> None:
    """A view's psi thresholds and a feature's max_null_rate set the levels."""
    def loosen(doc: dict[str, Any]) -> None:
        view = doc["feature_views"][0]
        view["monitoring"] = {"psi_warn": 0.5, "psi_alert": 50}
        view["features"][1]["monitoring"] = {"max_null_rate": 0.0}
    edit_defs(repo, loosen)
    with FeatureStore(repo) as fs:
        fs.apply()
        result = fs.drift("svc", reference_window=("2024-03-01", "2024-03-10T23:59:59Z"), current="offline",
                          since="2024-03-11")
    f = by_feature(result.to_json())
    assert f["x"]["level"] == "warn" and f["x"]["thresholds"] == {"psi_warn": 0.5, "psi_alert": 50.0,
                                                                  "max_null_rate": None}
    assert f["n"]["thresholds"]["max_null_rate"] == 0.0 and f["n"]["level"] == "ok"  # no nulls offline
    with FeatureStore(repo) as fs:
        logs = fs.drift("svc", reference=repo / "train.parquet")   # the logs have nulls in n
    assert by_feature(logs.to_json())["n"]["level"] == "alert"


@pytest.mark.parametrize("monitoring, field", [
    ({"psi_warn": 0.3, "psi_alert": 0.2}, "monitoring.psi_warn"),
    ({"psi_alarm": 1}, "monitoring.psi_alarm"),
    ({"max_null_rate": 1.5}, "monitoring.max_null_rate"),
    ({"psi_warn": "high"}, "monitoring.psi_warn"),
    ("strict", "monitoring"),
])
def test_bad_thresholds_are_refused(tmp_path: Path, monitoring: Any, field: str) -> None:
    root = make_views_repo(tmp_path / "repo", {"s": {"keys": [("uid", "int")], "features": [("x", "float64", None)]}})
    write_view_source(root, "s", pa.table({"uid": [1], "ts": utc_ts([DAY0]), "created": utc_ts([DAY0]), "x": [1.0]}))
    edit_defs(root, lambda doc: doc["feature_views"][0]["features"][0].__setitem__("monitoring", monitoring))
    with FeatureStore(root) as fs, pytest.raises(DefinitionErrors) as exc:
        fs.plan()
    assert any(e.field == f"features[x].{field}" for e in exc.value.errors), [str(e) for e in exc.value.errors]


def test_bad_references_name_the_file_and_column(repo: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial.parquet"
    pq.write_table(pa.table({"x": [1.0], "n": [1]}), partial)
    p = fstore(repo, "drift", "--service", "svc", "--reference", str(partial))
    assert p.returncode == 1 and "partial.parquet has no column 'seg', 'flag'" in p.stderr, p.stderr
    # the lineage says which service a training set was built for
    with FeatureStore(repo) as fs, pytest.raises(DriftInputError, match="built for feature service 'svc'"):
        fs.drift("other", reference=repo / "train.parquet")
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": ["high"], "n": [1], "seg": ["a"], "flag": [True]}), bad)
    with FeatureStore(repo) as fs, pytest.raises(DriftInputError, match="column 'x' of type string"):
        fs.drift("svc", reference=bad)
    p = fstore(repo, "drift", "--service", "svc")
    assert p.returncode == 1 and "exactly one of reference" in p.stderr
    # an empty side is an error, not a clean bill of health
    p = fstore(repo, "drift", "--service", "svc", "--reference", str(repo / "train.parquet"), "--since", "2030-01-01")
    assert p.returncode == 1 and "no served-feature log rows of service 'svc'" in p.stderr, p.stderr
    p = fstore(repo, "drift", "--service", "svc", "--reference-window", "2020-01-01", "2020-01-02")
    assert p.returncode == 1 and "reference: no offline rows" in p.stderr, p.stderr
