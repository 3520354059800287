"""``fstore bench --redis``: the rows a run asks for copied from the online store into a real
redis-server (started here on a free 127.0.0.1 port; scripts/test.sh installs it), then read
with GET (one key) or MGET by the same generator, key stream and report."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import msgpack
import pytest

from fstore import FeatureStore
from fstore._ext._online import key_of
from fstore.bench.frames import redis_key
from fstore.online.codec import key_kinds
from server_util import HOST, free_port, repo_copy
from test_bench import SHORT, bench

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "bench_redis")


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed: scripts/test.sh installs it (apt-get install redis-server)"
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(HOST, port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def test_get_of_one_entity_like_for_like(repo: Path, redis_port: int) -> None:
    code, doc, err = bench(repo, 0, "--service", "fraud_v1", "--redis", f"{HOST}:{redis_port}", *SHORT)
    assert code == 0, err
    assert doc["system"] == "redis" and doc["target"] == f"{HOST}:{redis_port}" and doc["service"] == "fraud_v1"
    assert doc["requests"] > 0 and doc["errors"] == {} and doc["keys"]["copied"] > 0
    # fraud_v1 reads two views (one feature each): an MGET of 2 keys per entity, each key one value
    assert sum(doc["statuses"].values()) == doc["requests"] * 2
    assert doc["statuses"]["PRESENT"] > 0 and doc["statuses"]["EXPIRED"] == doc["statuses"]["DEFAULTED"] == 0
    assert doc["server_cpu_us_per_request"] is not None  # the redis-server started here was found


def test_the_copied_rows_are_what_fstore_reads(repo: Path, redis_port: int) -> None:
    """Each key holds the MessagePack array of the view's requested features as read in process;
    an entity without a row in a view has no key."""
    code, doc, err = bench(repo, 0, "--service", "everything", "--entities", "5", "--redis",
                           f"{HOST}:{redis_port}", *SHORT)
    assert code == 0 and doc["requests"] > 0 and doc["errors"] == {}, err
    import redis
    client = redis.Redis(HOST, redis_port)
    with FeatureStore(repo) as fs:
        view = fs.registry.require()["feature_views"]["customer_stats_v1"]
        names = [f["name"] for f in view["features"]]
        checked = found = 0
        for cid in range(1, 401):
            blob = client.get(redis_key("demo", "customer_stats_v1", key_of((cid,), key_kinds(view))))
            resp = fs.get_online_features([f"customer_stats_v1:{n}" for n in names], entity_rows=[{"customer_id": cid}])
            if blob is None:
                continue
            found += 1
            assert msgpack.unpackb(blob, timestamp=3) == [resp.values(n)[0] for n in names], cid
            checked += 1
        assert found > 10
        # an entity of the run without a row in customer_stats has no key
        no_row = [cid for cid in range(1, 401) if fs.get_online_features(
            ["customer_stats:segment"], entity_rows=[{"customer_id": cid}]).event_timestamps("segment")[0] is None]
        for cid in no_row:
            assert client.get(redis_key("demo", "customer_stats_v1", key_of((cid,), key_kinds(view)))) is None
    client.close()


def test_mget_counts_statuses_per_value(repo: Path, redis_port: int) -> None:
    code, doc, err = bench(repo, 0, "--features", "customer_stats:segment,customer_stats:txn_count_7d",
                           "--entities", "4", "--redis", f"{HOST}:{redis_port}", *SHORT)
    assert code == 0, err
    # one view: an MGET of 4 keys, each standing for 2 values
    assert sum(doc["statuses"].values()) == doc["requests"] * 4 * 2
    assert doc["statuses"]["PRESENT"] > 0


def test_an_unreachable_redis_is_exit_2(repo: Path) -> None:
    port = free_port()
    code, doc, err = bench(repo, 0, "--service", "fraud_v1", "--redis", f"{HOST}:{port}", *SHORT)
    assert code == 2 and doc is None and f"{HOST}:{port}" in err, err
