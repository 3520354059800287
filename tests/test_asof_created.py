"""Views with ``as_of: created_timestamp``: training sets join on the time a value became
available. Checked against a brute-force oracle (the rule of docs/training-sets.md, row by
row), at the kernel level and end to end through apply and ingest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import edit_defs, find
from fstore import FeatureStore
from fstore.errors import DefinitionErrors
from fstore.offline.asof_created import created_asof_indices
from test_historical import make_repo, ts, write_source

NULL = -2**63


def oracle(rows: list[dict], ents: list[dict], ttl: int | None, default, field: str = "v") -> list:
    """Among rows of the entity's key created by T (the event time where created is null),
    with event time <= T and >= T - ttl: the newest by (event, created); else the default."""
    out = []
    for e in ents:
        if e["k"] is None:
            out.append(default)
            continue
        cands = [r for r in rows if r["k"] == e["k"] and r["ts"] <= e["ts"]
                 and (r["ts"] if r["created"] is None else r["created"]) <= e["ts"]
                 and (ttl is None or r["ts"] >= e["ts"] - ttl)]
        if not cands:
            out.append(default)
            continue
        out.append(max(cands, key=lambda r: (r["ts"], NULL if r["created"] is None else r["created"]))[field])
    return out


@st.composite
def scenario(draw):
    ttl = draw(st.sampled_from([None, 1, 4, 15]))
    rows, seen = [], set()
    for _ in range(draw(st.integers(0, 40))):
        t = draw(st.integers(0, 30))
        delay = draw(st.one_of(st.none(), st.integers(-3, 12)))  # late rows, early rows, nulls
        r = {"k": draw(st.integers(-2, 4)), "ts": t, "created": None if delay is None else t + delay,
             "v": draw(st.one_of(st.none(), st.integers(-1000, 1000)))}
        if (r["k"], r["ts"], r["created"]) in seen:  # a full tie has no defined winner
            continue
        seen.add((r["k"], r["ts"], r["created"]))
        rows.append(r)
    ents = [{"k": draw(st.one_of(st.none(), st.integers(-2, 4))), "ts": draw(st.integers(0, 45))}
            for _ in range(draw(st.integers(1, 25)))]
    return ttl, rows, ents


def _kernel(rows: list[dict], ents: list[dict], ttl: int | None, scale: int = 1, shift: int = 0) -> list:
    """The pick of created_asof_indices, on times ``t * scale + shift`` (an order-preserving map)."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["k"], rows[i]["ts"],
                                                    NULL if rows[i]["created"] is None else rows[i]["created"]))
    srt = [rows[i] for i in order]
    vk = np.array([[r["k"]] for r in srt], dtype=np.int64).reshape(-1, 1)
    vt = np.array([r["ts"] * scale + shift for r in srt], dtype=np.int64)
    vc = np.array([NULL if r["created"] is None else r["created"] * scale + shift for r in srt], dtype=np.int64)
    ek = np.array([[0 if e["k"] is None else e["k"]] for e in ents], dtype=np.int64).reshape(-1, 1)
    et = np.array([e["ts"] * scale + shift for e in ents], dtype=np.int64)
    ev = np.array([e["k"] is not None for e in ents], dtype=np.uint8)
    idx = created_asof_indices(vk, vt, vc, ek, et, ev, (ttl or 0) * scale)
    return [None if i < 0 else srt[i]["v"] if srt[i]["v"] is not None else "null" for i in idx]


@settings(max_examples=300, deadline=None)
@given(scenario(), st.sampled_from([(1, 0), (2**57, -2**62)]))
def test_kernel_matches_oracle(case, spread):
    """Also with times spread over most of int64, where group and time share no sort key."""
    ttl, rows, ents = case
    got = _kernel(rows, ents, ttl, *spread)
    tagged = [dict(r, v="null" if r["v"] is None else r["v"]) for r in rows]
    assert got == oracle(tagged, ents, ttl, None)


def test_kernel_refuses_unsorted_rows_like_the_event_time_kernel():
    vk = np.array([[1], [1]], dtype=np.int64)
    with pytest.raises(ValueError, match="not grouped and sorted"):
        created_asof_indices(vk, np.array([5, 1], dtype=np.int64), np.zeros(2, dtype=np.int64),
                             vk[:1], np.array([9], dtype=np.int64), np.ones(1, dtype=np.uint8), 0)


def _created_repo(root: Path, ttl: int | None, buckets: int = 3) -> Path:
    make_repo(root, {"v": {"keys": [("k", "int")], "ttl": f"{ttl / 1e6:.6f}" if ttl else None,
                           "features": [("v", "int64", 42)]}}, buckets=buckets)
    defs = root / "features" / "defs.yaml"
    defs.write_text(defs.read_text().replace("    source: v_src\n",
                                             "    source: v_src\n    as_of: created_timestamp\n"))
    return root


def _source(rows: list[dict]) -> pa.Table:
    return pa.table({"k": pa.array([r["k"] for r in rows], pa.int64()), "ts": ts(*[r["ts"] for r in rows]),
                     "created": ts(*[r["created"] for r in rows]), "v": pa.array([r["v"] for r in rows], pa.int64())})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(scenario(), st.data())
def test_training_set_matches_oracle(tmp_path_factory, case, data):
    ttl, rows, ents = case
    root = _created_repo(tmp_path_factory.mktemp("repo"), ttl)
    split = data.draw(st.integers(0, len(rows)))
    write_source(root, "v", _source(rows[:split]), 0)
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    if split < len(rows):  # a second run: buckets hold two parts the join must merge
        write_source(root, "v", _source(rows[split:]), 1)
        fs.ingest()
    ent = pa.table({"k": pa.array([e["k"] for e in ents], pa.int64()), "event_timestamp": ts(*[e["ts"] for e in ents])})
    got = fs.get_historical_features(ent, ["v:v"])
    assert got.column("v").to_pylist() == oracle(rows, ents, ttl, 42)


def _explicit(tmp_path: Path, as_of: bool) -> FeatureStore:
    root = make_repo(tmp_path / "repo", {"v": {"keys": [("k", "int")], "ttl": "10s", "features": [("v", "int64", -1)]}})
    if as_of:
        defs = root / "features" / "defs.yaml"
        defs.write_text(defs.read_text().replace("    source: v_src\n", "    source: v_src\n    as_of: created_timestamp\n"))
    s = 1_000_000
    # k=1: an on-time row at 0s, a row for 5s that arrived at 30s (late), a null-created row at 8s
    # k=2: a row for 0s created at 12s: after the ttl window of a 11s entity row has passed its event
    write_source(root, "v", _source([
        {"k": 1, "ts": 0, "created": 0, "v": 10}, {"k": 1, "ts": 5 * s, "created": 30 * s, "v": 11},
        {"k": 1, "ts": 8 * s, "created": None, "v": 12}, {"k": 2, "ts": 0, "created": 12 * s, "v": 20}]))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    return fs


def test_late_row_is_used_only_once_created(tmp_path):
    s = 1_000_000
    ents = pa.table({"k": [1, 1, 1, 2, 2], "event_timestamp": ts(6 * s, 9 * s, 15 * s, 9 * s, 12 * s)})
    event = _explicit(tmp_path / "a", as_of=False).get_historical_features(ents, ["v:v"]).column("v").to_pylist()
    created = _explicit(tmp_path / "b", as_of=True).get_historical_features(ents, ["v:v"]).column("v").to_pylist()
    # by event time the late row leaks into 6s; by created time 6s sees the 0s row
    assert event == [11, 12, 12, 20, -1]
    # a null created time means available at the event time (the 8s row from 9s on);
    # k=2: created at 12s, so absent at 9s; at 12s its event (0s) is outside the 10s ttl
    assert created == [10, 12, 12, -1, -1]


def test_created_timestamp_needs_a_created_field(tmp_path):
    root = make_repo(tmp_path / "repo", {"v": {"keys": [("k", "int")], "created": False,
                                              "features": [("v", "int64", None)]}})
    defs = root / "features" / "defs.yaml"
    defs.write_text(defs.read_text().replace("    source: v_src\n", "    source: v_src\n    as_of: created_timestamp\n"))
    write_source(root, "v", pa.table({"k": [1], "ts": ts(0), "v": [1]}))
    with pytest.raises(DefinitionErrors) as info:
        FeatureStore(root).plan()
    text = str(info.value)
    assert "as_of" in text and "created_timestamp_field" in text and "v_src" in text


def test_bad_as_of_and_max_delay_are_refused(demo_repo: Path):
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(as_of="processing_time"))
    with pytest.raises(DefinitionErrors, match="as_of must be event_timestamp or created_timestamp"):
        FeatureStore(demo_repo).plan()
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(as_of=None, max_delay="soon"))
    with pytest.raises(DefinitionErrors, match="max_delay"):
        FeatureStore(demo_repo).plan()


def test_registry_stores_both_and_as_of_changes_in_place(demo_repo: Path):
    fs = FeatureStore(demo_repo)
    fs.apply()
    before = fs.registry.load()["feature_views"]["customer_stats_v1"]
    assert "as_of" not in before and "max_delay_us" not in before  # defaults: registries read unchanged
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(
        as_of="created_timestamp", max_delay="2h"))
    fs = FeatureStore(demo_repo)
    plan = fs.plan()
    [change] = [c for c in plan.changes if c.name == "customer_stats_v1"]
    assert change.action == "change"
    assert any("as_of: event_timestamp -> created_timestamp" in d for d in change.details)
    assert any("max_delay: none -> 2h" in d for d in change.details)
    fs.apply()
    rec = fs.registry.load()["feature_views"]["customer_stats_v1"]
    assert rec["as_of"] == "created_timestamp" and rec["max_delay_us"] == 2 * 3_600_000_000


def test_describe_and_plan_show_as_of_and_max_delay(demo_repo: Path):
    import json
    from test_cli import run
    run("-r", str(demo_repo), "apply")
    assert json.loads(run("-r", str(demo_repo), "describe", "customer_stats", "--json").stdout)["as_of"] == \
        "event_timestamp"
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(
        as_of="created_timestamp", max_delay="90m"))
    plan = run("-r", str(demo_repo), "plan").stdout
    assert "as_of: event_timestamp -> created_timestamp" in plan and "max_delay: none -> 90m" in plan
    run("-r", str(demo_repo), "apply")
    doc = json.loads(run("-r", str(demo_repo), "describe", "customer_stats", "--json").stdout)
    assert (doc["as_of"], doc["max_delay"]) == ("created_timestamp", "90m")
