"""What the clients accept and add: NumPy and pandas entity rows, GETs split by the
server's ``max_rows``, ``fallback="defaults"`` learned from INFO, ``request_id``,
``client_name`` and the ``on_request`` hook. Against the real ``fstore serve`` on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from fstore import FeatureStore
from fstore._ext._constants import Status
from fstore.client import AsyncClient, Client
from fstore.errors import Unavailable, UnknownObject
from server_util import HOST, STATS, Server, repo_copy

pytestmark = pytest.mark.timeout(120)
MAX_ROWS = 40
MANY = ["customer_stats:avg_amount_7d", "profile:signup", "customer_stats:segment", "profile:score",
        "device:label"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "client_features", {"max_rows": MAX_ROWS})


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    srv = Server(repo)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def fs(repo: Path) -> Iterator[FeatureStore]:
    with FeatureStore(repo) as store:
        yield store


def both(server: Server, method: str, *args: Any, client: dict[str, Any] | None = None, **kw: Any) -> list[Any]:
    """The result of one call from Client and from AsyncClient."""
    with Client(HOST, server.port, timeout=10, **(client or {})) as c:
        out = [getattr(c, method)(*args, **kw)]

    async def main() -> Any:
        async with AsyncClient(HOST, server.port, timeout=10, **(client or {})) as ac:
            return await getattr(ac, method)(*args, **kw)
    out.append(asyncio.run(asyncio.wait_for(main(), 60)))
    return out


# ---- 4. inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["numpy-scalars", "numpy-arrays", "dataframe"])
def test_numpy_and_pandas_entity_rows_as_in_process(server: Server, fs: FeatureStore, kind: str) -> None:
    ids = [3, 1, 399, 0, 17]
    rows = {"numpy-scalars": [{"customer_id": np.int64(i)} for i in ids],
            "numpy-arrays": {"customer_id": np.array(ids, dtype=np.int64)},
            "dataframe": pd.DataFrame({"customer_id": ids})}[kind]
    local = fs.get_online_features(STATS, entity_rows=rows).to_dict(include_metadata=True)
    for remote in both(server, "get_online_features", STATS, entity_rows=rows):
        assert remote.to_dict(include_metadata=True) == local


def test_a_get_larger_than_max_rows_is_split_and_joined_in_order(server: Server, fs: FeatureStore) -> None:
    """3.5 x max_rows rows over two entities and four views: values, statuses and event
    timestamps equal one in-process read (was: TOO_MANY_ROWS)."""
    n = MAX_ROWS * 3 + MAX_ROWS // 2
    rows = [{"customer_id": (i * 7) % 420, "device_id": ["dev-1", "zz", "7"][i % 3], "driver_id": [7, 501][i % 2]}
            for i in range(n)]
    local = fs.get_online_features(MANY, entity_rows=rows)
    for remote in both(server, "get_online_features", MANY, entity_rows=rows):
        assert len(remote) == n
        assert remote.to_dict(include_metadata=True) == local.to_dict(include_metadata=True)
    local = fs.get_online_features(feature_service="everything", entity_rows=rows, full_feature_names=True)
    for remote in both(server, "get_online_features", feature_service="everything", entity_rows=rows,
                       full_feature_names=True, include_metadata=False):
        assert remote.to_dict() == local.to_dict()


# ---- fallback="defaults" ----------------------------------------------------------------------

def _check_fallback(resp: Any, fs: FeatureStore, feats: list[str], rows: list[dict[str, Any]]) -> None:
    """Every value is the declared default (None without one), every status UNAVAILABLE."""
    declared = {f"{v['name']}:{f['name']}": f.get("default") for v in fs.registry.snapshot().views.values()
                for f in v["features"]}
    assert resp.feature_names == [f.split(":")[1] for f in feats]
    for ref, name in zip(feats, resp.feature_names):
        want = declared[ref]
        got = resp.values(name)
        if isinstance(want, str) and ref == "profile:signup":
            assert [g.isoformat() for g in got] == [want] * len(rows)
        else:
            assert got == [want] * len(rows), (ref, got)
        assert resp.statuses(name) == [Status.UNAVAILABLE] * len(rows)
        assert resp.event_timestamps(name) == [None] * len(rows)
    assert resp.to_dict()["customer_id"] == [r["customer_id"] for r in rows]


def test_fallback_returns_declared_defaults_once_the_server_is_gone(repo: Path, fs: FeatureStore) -> None:
    feats = ["customer_stats:segment", "profile:score", "profile:signup", "profile:age"]
    rows = [{"customer_id": 1}, {"customer_id": 2}]
    srv = Server(repo)
    c = Client(HOST, srv.port, timeout=0.5, fallback="defaults")
    strict = Client(HOST, srv.port, timeout=0.5)
    ac = AsyncClient(HOST, srv.port, timeout=0.5, fallback="defaults")
    loop = asyncio.new_event_loop()
    try:
        assert c.get_online_features(feats, entity_rows=rows).statuses("score")[0] != Status.UNAVAILABLE
        strict.health()
        loop.run_until_complete(ac.get_online_features(feats, entity_rows=rows))  # learns the defaults (INFO)
    finally:
        srv.stop()
    try:
        _check_fallback(c.get_online_features(feats, entity_rows=rows), fs, feats, rows)
        _check_fallback(loop.run_until_complete(ac.get_online_features(feats, entity_rows=rows)), fs, feats, rows)
        svc = c.get_online_features(feature_service="everything", entity_rows=rows)
        assert set(svc.statuses("segment")) == {Status.UNAVAILABLE}
        with pytest.raises(Unavailable):  # per call, fallback can be turned off
            c.get_online_features(feats, entity_rows=rows, fallback=None)
        with pytest.raises(Unavailable):  # a client without fallback raises
            strict.get_online_features(feats, entity_rows=rows)
        with pytest.raises(Unavailable):  # a feature INFO never named: no guess
            c.get_online_features(["nosuch:view"], entity_rows=rows)
    finally:
        c.close()
        strict.close()
        loop.run_until_complete(ac.close())
        loop.close()


# ---- telemetry ------------------------------------------------------------------------------

def test_request_id_is_sent_and_on_the_response(server: Server) -> None:
    for resp in both(server, "get_online_features", STATS, entity_rows=[{"customer_id": 1}], request_id="req-42"):
        assert resp.request_id == "req-42"
    for resp in both(server, "get_online_features", STATS, entity_rows=[{"customer_id": 1}]):
        assert resp.request_id is None


def test_on_request_hook_once_per_call_and_its_errors_swallowed(server: Server, caplog: Any) -> None:
    seen: list[tuple[Any, ...]] = []

    def hook(op: str, rows: int, seconds: float, outcome: str) -> None:
        seen.append((op, rows, outcome))
        assert seconds >= 0
        if op == "health":
            raise RuntimeError("a broken hook")
    kw = {"client": {"on_request": hook, "client_name": "inference-7"}}
    both(server, "get_online_features", STATS, entity_rows=[{"customer_id": 1}] * (MAX_ROWS + 1), **kw)
    with caplog.at_level(logging.ERROR, logger="fstore.client"):
        assert all(h["live"] for h in both(server, "health", **kw))
    assert "a broken hook" in caplog.text
    for bad in (lambda c: c.get_online_features(feature_service="nope", entity_rows=[{"customer_id": 1}]),):
        with Client(HOST, server.port, timeout=10, on_request=hook) as c:
            with pytest.raises(UnknownObject):
                bad(c)
    assert seen == [("get", MAX_ROWS + 1, "ok")] * 2 + [("health", 0, "ok")] * 2 + \
        [("get", 1, "UNKNOWN_OBJECT")]

    with Client(HOST, 1, timeout=0.5, retries=2, on_request=hook) as c:  # refused, retried, reported once
        with pytest.raises(Unavailable):
            c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
    assert seen[-1] == ("get", 1, "UNREACHABLE")


def test_client_name_is_sent_in_hello(server: Server) -> None:
    with Client(HOST, server.port, timeout=10, client_name="fraud-scorer") as c:
        c.health()
        assert c._s.hello["client"].startswith("fraud-scorer")


def test_opentelemetry_example_records_a_span_per_call(server: Server) -> None:
    """examples/otel_client.py's hook with the SDK's in-memory exporter: one span per call,
    the error code on a failed one."""
    import importlib.util

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    path = Path(__file__).resolve().parents[1] / "examples" / "otel_client.py"
    spec = importlib.util.spec_from_file_location("otel_client", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    hook = module.otel_hook(HOST, server.port, tracer=provider.get_tracer("test"))
    with Client(HOST, server.port, timeout=10, on_request=hook) as c:
        c.get_online_features(STATS, entity_rows=[{"customer_id": 1}, {"customer_id": 2}])
        with pytest.raises(UnknownObject):
            c.get_online_features(feature_service="nope", entity_rows=[{"customer_id": 1}])
    spans = exporter.get_finished_spans()
    assert [(s.name, s.attributes["fstore.rows"], s.attributes["fstore.outcome"]) for s in spans] == \
        [("fstore.get", 2, "ok"), ("fstore.get", 1, "UNKNOWN_OBJECT")]
    assert spans[1].status.status_code.name == "ERROR" and spans[0].end_time >= spans[0].start_time


# ---- 7. model-ready outputs -------------------------------------------------------------------

def test_outputs_for_models_remote_as_in_process(server: Server, fs: FeatureStore) -> None:
    """to_pandas keeps an int feature with nulls as Int64 (pd.NA), not float; the status
    matrix and to_numpy(mask=True) are the same in process and from both clients."""
    features = ["profile:age", "profile:vip", "profile:score", "customer_stats:avg_amount_7d"]
    probe = fs.get_online_features(["profile:age"], entity_rows=[{"customer_id": c} for c in range(1, 401)])
    have = [c for c, v in zip(range(1, 401), probe.values("age")) if v is not None][:3]
    rows = [{"customer_id": c} for c in (*have, 10_000_001)]  # the last: no such customer
    local = fs.get_online_features(features, entity_rows=rows)
    for resp in [local, *both(server, "get_online_features", features, entity_rows=rows)]:
        df = resp.to_pandas()
        assert str(df["age"].dtype) == "Int32" and df["age"].isna().iloc[-1]
        assert df["age"].iloc[:-1].tolist() == local.values("age")[:-1] and len(have) == 3
        assert str(df["vip"].dtype) == "boolean" and df["score"].dtype == np.float64
        assert resp.to_df().equals(df)
        matrix = resp.status_matrix
        assert matrix.dtype == np.uint8 and matrix.shape == (4, 4) and not matrix.flags.writeable
        assert (matrix == local.status_matrix).all()
        assert matrix[0, -1] == Status.NOT_FOUND
        assert resp.statuses("age") == [Status(s) for s in matrix[0]]
        values, missing = resp.to_numpy(mask=True)
        assert values.shape == missing.shape == (4, 4) and missing.dtype == bool
        assert (missing == (matrix != Status.PRESENT).T).all()
        assert np.array_equal(values, local.to_numpy(), equal_nan=True)
