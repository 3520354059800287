"""fstore.yaml: every section is checked against its table of keys, types and defaults."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from fstore import FeatureStore
from fstore.config import ONLINE_KEYS, SERVER_KEYS, SPARK_KEYS, RepoConfig, defaults
from fstore.errors import InvalidConfig, InvalidDefinition
from fstore.serving.server import Limits


def config(tmp_path: Path, doc: dict) -> RepoConfig:
    (tmp_path / "fstore.yaml").write_text(yaml.safe_dump({"project": "p", **doc}))
    return RepoConfig.load(tmp_path)


@pytest.mark.parametrize("doc, field, words", [
    ({"online_store": {"map_sise": 1}}, "online_store.map_sise", "unknown setting 'map_sise'"),
    ({"online_store": {"write_buffer": 64}}, "online_store.write_buffer", "known: path, map_size, write_buffer_mb"),
    ({"online_store": {"map_size": "1G"}}, "online_store.map_size", "expected int, got '1G'"),
    ({"online_store": {"max_dbs": True}}, "online_store.max_dbs", "expected int or null"),
    ({"online_store": {"map_size": 0}}, "online_store.map_size", "must be at least 1"),
    ({"online_store": []}, "online_store", "expected a mapping"),
    ({"offline_store": {"bucket": 4}}, "offline_store.bucket", "unknown setting 'bucket'"),
    ({"offline_store": {"path": 3}}, "offline_store.path", "expected str"),
    ({"server": {"max_rows": 1.5}}, "server.max_rows", "expected int"),
    ({"server": {"listeners": "mod:fn"}}, "server.listeners", "expected list"),
    ({"server": {"listeners": ["no_colon"]}}, "server.listeners", "module:callable"),
    ({"server": {"slow_request_ms": -1}}, "server.slow_request_ms", "milliseconds >= 0, or null (off), got -1"),
    ({"server": {"slow_request_ms": "100ms"}}, "server.slow_request_ms", "expected int or float or null"),
    ({"servr": {}}, "servr", "unknown setting 'servr'"),
    ({"offline_store": {"engine": "spark", "spark": {"mastr": "local[2]"}}}, "offline_store.spark.mastr",
     "unknown setting 'mastr'; known: master, app_name, conf"),
    ({"offline_store": {"engine": "spark", "spark": {"master": 2}}}, "offline_store.spark.master",
     "expected str or null"),
    ({"offline_store": {"engine": "spark", "spark": {"conf": {"spark.x": {"a": 1}}}}},
     "offline_store.spark.conf.spark.x", "expected a setting name and a string, number or boolean"),
    ({"offline_store": {"spark": {"master": "local[2]"}}}, "offline_store.spark", "needs engine: spark"),
    ({"offline_store": {"engine": "spark", "spark": []}}, "offline_store.spark", "expected dict or null"),
])
def test_a_bad_setting_is_an_error_that_names_it(tmp_path: Path, doc: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        config(tmp_path, doc)
    assert info.value.field == field and words in str(info.value), str(info.value)
    assert str(info.value).startswith(f"fstore.yaml: {field}: ")
    assert isinstance(info.value, InvalidDefinition) and isinstance(info.value, ValueError)


def test_settings_reach_the_stores_with_their_defaults(tmp_path: Path) -> None:
    conf = config(tmp_path, {"online_store": {"write_buffer_mb": 0, "max_dbs": 40},
                             "server": {"idle_timeout_s": 30, "max_rows": 50}})
    assert conf.online == {**defaults(ONLINE_KEYS), "write_buffer_mb": 0, "max_dbs": 40}
    assert conf.server["port"] == SERVER_KEYS["port"][1] and conf.server["listeners"] == []
    limits = Limits.from_settings(conf.server)
    assert (limits.max_rows, limits.idle_timeout) == (50, 30)
    assert Limits().max_rows == SERVER_KEYS["max_rows"][1]  # one source for the defaults
    (tmp_path / "features").mkdir()
    store = FeatureStore(tmp_path)
    assert store.online.write_buffer == 0 and store.online.max_dbs == 40
    assert defaults(SERVER_KEYS)["listeners"] is not defaults(SERVER_KEYS)["listeners"]  # no shared list


def test_engine_spark_alone_is_a_local_master_on_this_machines_cores(tmp_path: Path) -> None:
    from fstore.offline.spark.session import master_url

    conf = config(tmp_path, {"offline_store": {"engine": "spark"}})
    assert conf.offline_engine == "spark" and conf.offline_spark == defaults(SPARK_KEYS)
    assert master_url(conf.offline_spark) == f"local[{os.cpu_count()}]"
    conf = config(tmp_path, {"offline_store": {"engine": "spark", "spark": {
        "master": "spark://head:7077", "conf": {"spark.executor.memory": "8g", "spark.sql.shuffle.partitions": 64}}}})
    assert master_url(conf.offline_spark) == "spark://head:7077"
    assert conf.offline_spark["conf"]["spark.sql.shuffle.partitions"] == 64


def test_engine_spark_without_pyspark_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    from fstore.errors import MissingDependency
    from fstore.offline.engines import make_engine

    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now raises ImportError
    conf = config(tmp_path, {"offline_store": {"engine": "spark"}})
    with pytest.raises(MissingDependency, match=r"pip install 'fstore\[spark\]'"):
        make_engine(conf)
