"""One error family: every code a GET or a PUSH can return raises the same class, with the
same message and field, in process and through the network clients (a real server)."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from conftest import edit_defs
from fstore import FeatureStore
from fstore import errors as E
from fstore.client import AsyncClient, Client
from fstore.serving.protocol import GET, PUSH
from server_util import HOST, Raw, Server, frame, raw_frame, repo_copy

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC)
STATS = ["customer_stats:avg_amount_7d", "customer_stats:txn_count_7d"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server tests' repository, plus a second view with a feature of the same name
    (for a name clash) and a small frame limit (for FRAME_TOO_LARGE)."""
    root = repo_copy(tmp_path_factory, "errors", server={"max_frame_bytes": 64 << 10, "max_rows": 500})

    def add_copy(doc: dict[str, Any]) -> None:
        doc["feature_views"].append({"name": "stats_copy", "version": 1, "entities": ["customer"],
                                     "source": "customer_stats_src",
                                     "features": [{"name": "avg_amount_7d", "dtype": "float64"}]})
    edit_defs(root, add_copy)
    with FeatureStore(root) as fs:
        fs.apply()
    return root


@pytest.fixture(scope="module")
def remote(server: Server) -> Iterator[Client]:
    with Client(HOST, server.port, timeout=5, retries=0) as client:
        yield client


def both(local: Callable[[], Any], remote: Callable[[], Any]) -> tuple[E.FstoreError, E.FstoreError]:
    """The errors the two calls raise; each must raise an FstoreError."""
    with pytest.raises(E.FstoreError) as a:
        local()
    with pytest.raises(E.FstoreError) as b:
        remote()
    return a.value, b.value


def assert_same(local: E.FstoreError, remote: E.FstoreError, cls: type[E.FstoreError], code: str) -> None:
    assert type(local) is cls and type(remote) is cls, (type(local), type(remote))
    assert local.code == remote.code == code
    assert str(local) == str(remote) and str(remote)
    assert local.field == remote.field


def push_rows(ids: list[int], **override: Any) -> dict[str, list[Any]]:
    n = len(ids)
    rows: dict[str, list[Any]] = {"customer_id": ids, "event_timestamp": [NOW] * n, "created_timestamp": [NOW] * n,
                                  "avg_amount_7d": [1.5] * n, "txn_count_7d": [3] * n, "segment": ["gold"] * n}
    rows.update(override)
    return rows


GET_CASES: list[tuple[str, type[E.FstoreError], dict[str, Any]]] = [
    ("UNKNOWN_OBJECT", E.UnknownObject, {"feature_service": "nope"}),
    ("UNKNOWN_OBJECT", E.UnknownObject, {"features": ["no_view:x"]}),
    ("UNKNOWN_OBJECT", E.UnknownObject, {"features": ["customer_stats:no_feature"]}),
    ("FEATURE_NAME_CLASH", E.FeatureNameClash, {"features": ["customer_stats:avg_amount_7d",
                                                             "stats_copy:avg_amount_7d"]}),
    ("BAD_ENTITY_ROW", E.EntityRowError, {"features": STATS, "entity_rows": [{"driver_id": 2}]}),
    ("BAD_ENTITY_ROW", E.EntityRowError, {"features": STATS, "entity_rows": [{"customer_id": "not an int"}]}),
    ("INVALID_ARGUMENT", E.InvalidArgument, {"features": []}),
    ("BAD_REQUEST", E.BadRequest, {}),  # neither features nor a service
    ("BAD_REQUEST", E.BadRequest, {"features": STATS, "feature_service": "fraud_v1"}),
]


@pytest.mark.parametrize("code, cls, kwargs", GET_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(GET_CASES)])
def test_get_errors_are_the_same_class_in_process_and_remotely(fs: FeatureStore, remote: Client, code: str,
                                                               cls: type[E.FstoreError], kwargs: dict[str, Any]) -> None:
    kwargs = {"entity_rows": [{"customer_id": 1}], **kwargs}
    local, far = both(lambda: fs.get_online_features(**kwargs), lambda: remote.get_online_features(**kwargs))
    assert_same(local, far, cls, code)


@pytest.mark.parametrize("args, code, cls", [
    ({"features": STATS, "service": "fraud_v1"}, "BAD_REQUEST", E.BadRequest),
    ({"features": "customer_stats:segment"}, "BAD_REQUEST", E.BadRequest),
    ({"features": STATS, "entities": {"customer_id": 5}}, "BAD_REQUEST", E.BadRequest),
    ({"features": STATS, "entities": {"customer_id": [1] * 501}}, "TOO_MANY_ROWS", E.TooManyRows),
])
def test_get_refusals_only_a_server_makes_arrive_as_their_class(remote: Client, args: dict[str, Any], code: str,
                                                              cls: type[E.FstoreError]) -> None:
    """Arguments a client's own checks would stop, sent as they are: the server's code comes
    back as its class (TooManyRows is a BadRequest, which is an InvalidArgument and a ValueError)."""
    with pytest.raises(cls) as info:
        remote._call(GET, {"entities": {"customer_id": [1]}, **args}, retry=False)
    assert type(info.value) is cls and info.value.code == code and isinstance(info.value, ValueError)


def test_async_client_raises_the_same_classes(fs: FeatureStore, server: Server) -> None:
    async def main() -> list[E.FstoreError]:
        out = []
        async with AsyncClient(HOST, server.port, timeout=5) as client:
            for kwargs in ({"feature_service": "nope"}, {"features": STATS, "entity_rows": [{"driver_id": 1}]}):
                try:
                    await client.get_online_features(**{"entity_rows": [{"customer_id": 1}], **kwargs})
                except E.FstoreError as exc:
                    out.append(exc)
            try:
                await client.push("nope", push_rows([1]))
            except E.FstoreError as exc:
                out.append(exc)
        return out

    unknown, row, push = asyncio.run(asyncio.wait_for(main(), 30))
    with pytest.raises(E.FstoreError) as local:
        fs.get_online_features(feature_service="nope", entity_rows=[{"customer_id": 1}])
    assert_same(local.value, unknown, E.UnknownObject, "UNKNOWN_OBJECT")
    assert type(row) is E.EntityRowError and type(push) is E.UnknownObject


PUSH_CASES: list[tuple[str, type[E.FstoreError], str, dict[str, Any]]] = [
    ("UNKNOWN_OBJECT", E.UnknownObject, "no_such_view", push_rows([950_001])),
    ("BAD_REQUEST", E.BadRequest, "customer_stats", {k: v for k, v in push_rows([950_002]).items() if k != "segment"}),
    ("BAD_REQUEST", E.BadRequest, "customer_stats", push_rows([950_003], txn_count_7d=["many"])),
    ("BAD_REQUEST", E.BadRequest, "customer_stats", push_rows([950_004], event_timestamp=["yesterday"])),
    ("BAD_REQUEST", E.BadRequest, "customer_stats", push_rows([950_005], event_timestamp=[None])),
    ("BAD_REQUEST", E.BadRequest, "customer_stats", push_rows([950_006, 950_007], segment=["a"])),
    ("BAD_REQUEST", E.BadRequest, "device", {"device_id": ["x" * 600], "ts": [NOW], "risk": [1.0],
                                             "label": ["k"]}),
]


@pytest.mark.parametrize("code, cls, view, rows", PUSH_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(PUSH_CASES)])
def test_push_errors_are_the_same_class_in_process_and_remotely(fs: FeatureStore, remote: Client, code: str,
                                                                cls: type[E.FstoreError], view: str,
                                                                rows: dict[str, Any]) -> None:
    local, far = both(lambda: fs.push(view, rows), lambda: remote.push(view, rows))
    assert_same(local, far, cls, code)
    if code == "BAD_REQUEST":
        assert far.field and far.field.startswith("rows"), far.field


def test_push_offline_store_error_both_ways(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A failed offline append refuses the PUSH (nothing written online), in process and remotely."""
    root = repo_copy(tmp_path_factory, "offline_broken")
    lock = root / "data" / "offline" / "customer_stats_v1" / ".lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()  # the offline writers' lock cannot be opened: the append fails with an OSError
    srv = Server(root)
    try:
        with FeatureStore(root) as fs, Client(HOST, srv.port, timeout=5, retries=0) as client:
            rows = push_rows([960_001])
            local, far = both(lambda: fs.push("customer_stats", rows, offline=True),
                              lambda: client.push("customer_stats", rows, offline=True))
            assert_same(local, far, E.OfflineStoreError, "OFFLINE_STORE_ERROR")
            got = fs.get_online_features(["customer_stats:segment"], entity_rows=[{"customer_id": 960_001}])
            assert got.statuses("segment")[0].name == "NOT_FOUND"  # nothing was written online
    finally:
        srv.stop()


def test_online_store_error_both_ways(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A process that may open no more LMDB databases refuses reads of a view it has not
    opened yet, in process and on the server, with OnlineStoreError naming the setting."""
    root = repo_copy(tmp_path_factory, "few_dbs")
    doc = yaml.safe_load((root / "fstore.yaml").read_text())
    doc["online_store"] = {"max_dbs": 2}  # the metadata database and one view
    (root / "fstore.yaml").write_text(yaml.safe_dump(doc))
    srv = Server(root)
    try:
        with FeatureStore(root) as fs, Client(HOST, srv.port, timeout=5, retries=0) as client:
            first = {"features": ["customer_stats:segment"], "entity_rows": [{"customer_id": 1}]}
            fs.get_online_features(**first)
            client.get_online_features(**first)
            second = {"features": ["device:risk"], "entity_rows": [{"device_id": "dev-1"}]}
            local, far = both(lambda: fs.get_online_features(**second), lambda: client.get_online_features(**second))
            assert_same(local, far, E.OnlineStoreError, "ONLINE_STORE_ERROR")
            assert "max_dbs" in str(far)
            push = push_rows([970_001])
            local, far = both(lambda: fs.push("device", {"device_id": ["d"], "ts": [NOW], "risk": [1.0],
                                                         "label": ["k"]}),
                              lambda: client.push("device", {"device_id": ["d"], "ts": [NOW], "risk": [1.0],
                                                             "label": ["k"]}))
            assert_same(local, far, E.OnlineStoreError, "ONLINE_STORE_ERROR")
            assert fs.push("customer_stats", push) == 1  # an opened view still takes pushes
    finally:
        srv.stop()


def test_registry_errors_both_ways(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A corrupt registry, then none: RegistryError, then NotApplied, in process and from a
    running server (which looks at the registry file again within a second)."""
    root = repo_copy(tmp_path_factory, "registry_gone")
    srv = Server(root)
    registry = root / "data" / "registry.json"
    try:
        with Client(HOST, srv.port, timeout=5, retries=0) as client:
            req = {"features": STATS, "entity_rows": [{"customer_id": 1}]}
            client.get_online_features(**req)
            for content, cls, code in ((b"{not json", E.RegistryError, "REGISTRY_ERROR"),
                                       (None, E.NotApplied, "NOT_APPLIED")):
                if content is None:
                    registry.unlink()
                else:
                    registry.write_bytes(content)

                def remote_get() -> Any:
                    deadline = dt.datetime.now() + dt.timedelta(seconds=10)
                    while dt.datetime.now() < deadline:  # until the server's cached registry is re-checked
                        client.get_online_features(**req)
                    raise AssertionError("the server kept answering from a registry that is gone")

                local, far = both(lambda: FeatureStore(root).get_online_features(**req), remote_get)
                assert_same(local, far, cls, code)
                far_push = both(lambda: FeatureStore(root).push("customer_stats", push_rows([1])),
                                lambda: client.push("customer_stats", push_rows([1])))
                assert_same(*far_push, cls, code)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_protocol_refusals_arrive_as_their_class(server: Server, remote: Client) -> None:
    """Codes with no in-process counterpart: each reply's code is rebuilt as its class."""
    with pytest.raises(E.FrameTooLarge):  # the server's limit here is 64 KiB
        remote.get_online_features(STATS, entity_rows=[{"customer_id": "x" * 70_000}])  # (many rows: split)
    seen = {}
    with Raw(server.port, hello=False) as raw:
        raw.request(GET, 1, {"features": STATS, "entities": {"customer_id": [1]}})
        seen["HANDSHAKE_REQUIRED"] = raw.read()
    with Raw(server.port, hello=False) as raw:
        raw.request(1, 1, {"version": 99})
        seen["UNSUPPORTED_VERSION"] = raw.read()
    with Raw(server.port) as raw:
        raw.request(42, 3, {})
        seen["UNKNOWN_OP"] = raw.read()
    with Raw(server.port) as raw:
        raw.send(raw_frame(b"\xc1"))
        seen["BAD_FRAME"] = raw.read()
    with Raw(server.port) as raw:
        raw.send(frame([PUSH, 5, "not a map"]))
        seen["BAD_REQUEST"] = raw.read()
    for code, reply in seen.items():
        assert reply[1] is False and reply[2]["code"] == code, reply
        exc = E.FstoreError.from_wire(reply[2])
        assert type(exc) is E.error_class(code) and exc.code == code and str(exc) == reply[2]["message"]


def test_overloaded_and_shutting_down_arrive_as_their_class(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "one_conn", server={"max_connections": 1})
    srv = Server(root)
    try:
        with Client(HOST, srv.port, timeout=5, retries=0, pool_size=1) as first:
            first.health()
            with Client(HOST, srv.port, timeout=5, retries=0) as second:
                with pytest.raises(E.Overloaded) as info:
                    second.health()
                assert info.value.code == "OVERLOADED" and isinstance(info.value, E.Unavailable)
    finally:
        srv.stop()
    assert E.error_class("SHUTTING_DOWN") is E.ShuttingDown  # (a draining server: tests/test_server_lifecycle.py)


def test_every_code_has_one_class_and_travels_unchanged() -> None:
    """Every FstoreError subclass's code maps back to a class that is it or shares its code
    with an ancestor (DefinitionErrors); a reply with a code this version does not know is an
    FstoreError that keeps the code."""
    def subclasses(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    codes = {}
    for cls in subclasses(E.FstoreError):
        target = E.error_class(cls.code)
        assert issubclass(cls, target), (cls, target)
        codes.setdefault(cls.code, target)
        wire = {"code": cls.code, "message": f"a {cls.__name__}", "field": "x"}
        back = E.FstoreError.from_wire(json.loads(json.dumps(wire)))
        assert type(back) is target and str(back) == f"a {cls.__name__}" and back.field == "x"
    assert len(codes) >= 25
    unknown = E.FstoreError.from_wire({"code": "FROM_THE_FUTURE", "message": "m", "field": None})
    assert type(unknown) is E.FstoreError and unknown.code == "FROM_THE_FUTURE" and str(unknown) == "m"
    assert E.FstoreError.code == "FSTORE_ERROR"  # an unknown code does not leak into the class
    assert E.as_fstore_error(ZeroDivisionError("x")).code == "INTERNAL"


def test_every_error_class_is_named_by_fstore_errors() -> None:
    """The classes are written by concept in fstore._errors; fstore.errors, their one import
    path, names every one of them (so its code table sees every code) and no other."""
    import importlib
    import inspect
    import pkgutil

    import fstore._errors as package

    written = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"fstore._errors.{info.name}")
        written |= {name for name, obj in vars(module).items() if not name.startswith("_") and
                    (inspect.isclass(obj) and issubclass(obj, E.FstoreError) or inspect.isfunction(obj))}
    assert written and written <= set(E.__all__), sorted(written - set(E.__all__))
    assert all(getattr(E, name).__module__ == "fstore.errors" for name in written)
