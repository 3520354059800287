"""Section 3 of the spec: plan, atomic apply with history, and validation messages.

Every validation case checks that the error names the file, the object and the
field, both as attributes and in the text a person reads.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import customer_stats_table, edit_defs, find, make_demo_repo, write_defs
from fstore import FeatureStore
from fstore.errors import DefinitionErrors, InvalidDefinition, RegistryError

DEFS = "features/defs.yaml"


def plan_errors(repo: Path) -> list[InvalidDefinition]:
    with pytest.raises(DefinitionErrors) as info:
        FeatureStore(repo).plan()
    assert info.value.errors, "DefinitionErrors without errors"
    return info.value.errors


def only_error(repo: Path) -> InvalidDefinition:
    errors = plan_errors(repo)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def assert_names(err: InvalidDefinition, file: str, obj: str, field: str, *words: str) -> None:
    """The error carries file/object/field and its message shows all of them (and ``words``)."""
    assert (err.file, err.obj, err.field) == (file, obj, field), str(err)
    text = str(err)
    assert text.startswith(f"{file}: {obj}.{field}: "), text
    for w in words:
        assert w in text, text


def tmp_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


# ---- plan -----------------------------------------------------------------------------

def test_plan_reports_without_writing(demo_repo: Path) -> None:
    fs = FeatureStore(demo_repo)
    plan = fs.plan()
    assert plan.current_version == 0 and not plan.empty
    assert len(plan.changes) == 7 and {c.action for c in plan.changes} == {"add"}
    assert fs.registry.load() is None
    assert not fs.registry.path.exists() and not fs.registry.history_dir.exists()
    assert fs.registry.history() == []


def test_plan_after_apply_is_empty_and_reapply_keeps_version(demo_store: FeatureStore) -> None:
    plan = demo_store.plan()
    assert plan.empty and plan.changes == [] and plan.current_version == 1
    before = demo_store.registry.path.read_bytes()
    plan, version = demo_store.apply()
    assert version == 1 and plan.empty
    assert demo_store.registry.path.read_bytes() == before
    assert [h["version"] for h in demo_store.registry.history()] == [1]


def test_plan_lists_adds_changes_and_removals(demo_store: FeatureStore) -> None:
    repo = demo_store.config.root
    def change(doc: dict) -> None:
        find(doc["feature_views"], "customer_driver")["description"] = "Trips a customer took with a driver"
        find(doc["feature_views"], "customer_stats")["ttl"] = "14d"
        doc["feature_services"] = [{"name": "fraud_v2", "features": ["customer_stats"]}]
    edit_defs(repo, change)
    plan = demo_store.plan()
    got = {(c.kind, c.name): c for c in plan.changes}
    assert set(got) == {("feature_views", "customer_driver_v1"), ("feature_views", "customer_stats_v1"),
                        ("feature_services", "fraud_v1"), ("feature_services", "fraud_v2")}
    assert got["feature_services", "fraud_v1"].action == "remove"
    assert got["feature_services", "fraud_v2"].action == "add"
    assert got["feature_views", "customer_driver_v1"].action == "change"
    assert got["feature_views", "customer_driver_v1"].details == [
        "description: '' -> 'Trips a customer took with a driver'"]
    assert got["feature_views", "customer_stats_v1"].details == ["ttl: 7d -> 14d"]
    # plan wrote nothing; apply does and records the history
    assert demo_store.registry.load()["version"] == 1
    _, version = demo_store.apply()
    assert version == 2
    reg = demo_store.registry.load()
    assert list(reg["feature_services"]) == ["fraud_v2"]
    history = demo_store.registry.history()
    assert [h["version"] for h in history] == [1, 2]
    assert history[0]["applied_at"] < history[1]["applied_at"] == reg["applied_at"]
    assert history[1]["feature_views"] == ["customer_driver_v1", "customer_stats_v1"]
    kept = json.loads((demo_store.registry.history_dir / "000001.json").read_bytes())
    assert list(kept["feature_services"]) == ["fraud_v1"]  # the old version is kept whole


def test_corrupt_registry_is_reported(demo_store: FeatureStore) -> None:
    demo_store.registry.path.write_text('{"format": 1, "vers')
    with pytest.raises(RegistryError, match="data/registry.json is corrupt"):
        demo_store.plan()


# ---- atomic apply ---------------------------------------------------------------------

def _change_owner(repo: Path) -> None:
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_stats").update(owner="someone@example.com"))


@pytest.mark.parametrize("fail_on", ["registry.json", "000002.json"])
def test_failed_apply_leaves_previous_registry(demo_store: FeatureStore, monkeypatch, fail_on: str) -> None:
    repo = demo_store.config.root
    before_bytes = demo_store.registry.path.read_bytes()
    before = demo_store.registry.load()
    _change_owner(repo)
    real_replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if Path(dst).name == fail_on:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        demo_store.apply()
    monkeypatch.setattr(os, "replace", real_replace)

    fresh = FeatureStore(repo)
    assert fresh.registry.path.read_bytes() == before_bytes
    assert fresh.registry.load() == before
    assert [h["version"] for h in fresh.registry.history()] == [1]  # version 2 never took effect
    assert tmp_files(repo / "data") == []
    # the next apply succeeds and is version 2
    _, version = fresh.apply()
    assert version == 2
    assert fresh.registry.load()["feature_views"]["customer_stats_v1"]["owner"] == "someone@example.com"
    assert [h["version"] for h in fresh.registry.history()] == [1, 2]


def test_apply_killed_midway_leaves_previous_registry(demo_store: FeatureStore) -> None:
    """A real SIGKILL right before the registry file is renamed into place."""
    repo = demo_store.config.root
    before_bytes = demo_store.registry.path.read_bytes()
    _change_owner(repo)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        real_replace = os.replace
        def replace(src, dst):
            if Path(dst).name == "registry.json":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
        os.replace = replace
        from fstore import FeatureStore
        FeatureStore({str(repo)!r}).apply()
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert tmp_files(repo / "data"), "the kill should have left the new registry's temporary file"

    fresh = FeatureStore(repo)
    assert fresh.registry.path.read_bytes() == before_bytes
    assert fresh.registry.load()["version"] == 1
    assert [h["version"] for h in fresh.registry.history()] == [1]
    _, version = fresh.apply()
    assert version == 2
    assert tmp_files(repo / "data") == []  # the next apply cleans up after the killed one
    assert [h["version"] for h in fresh.registry.history()] == [1, 2]


def test_invalid_definitions_leave_registry_untouched(demo_store: FeatureStore) -> None:
    repo = demo_store.config.root
    before = demo_store.registry.path.read_bytes()
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_stats").update(entities=["merchant"]))
    with pytest.raises(DefinitionErrors):
        demo_store.apply()
    assert demo_store.registry.path.read_bytes() == before
    assert [h["version"] for h in demo_store.registry.history()] == [1]


# ---- validation: one test per case ------------------------------------------------------

def test_unknown_entity(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(entities=["merchant"]))
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_stats", "entities", "'merchant'")


def test_unknown_source(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_driver").update(source="rides_src"))
    # only the view is reported: the service naming it is not told the view does not exist
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_driver", "source", "'rides_src'")


def test_duplicate_entity_across_files(demo_repo: Path) -> None:
    write_defs(demo_repo, "entities:\n  - {name: customer, join_keys: [cust_id]}\n", "more.yaml")
    assert_names(only_error(demo_repo), "features/more.yaml", "entity customer", "name",
                 "duplicate entity name 'customer'", DEFS)


def test_duplicate_view_version_in_one_file(demo_repo: Path) -> None:
    def change(doc: dict) -> None:
        dup = dict(find(doc["feature_views"], "customer_stats"), owner="other@example.com")
        doc["feature_views"].append(dup)
    edit_defs(demo_repo, change)
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_stats_v1", "name",
                 "duplicate feature_view name 'customer_stats_v1'")


def test_duplicate_service_and_source(demo_repo: Path) -> None:
    def change(doc: dict) -> None:
        doc["feature_services"].append({"name": "fraud_v1", "features": ["customer_stats"]})
        doc["sources"].append({"name": "trips_src", "path": "data/trips/2024-01-01.csv", "timestamp_field": "ts"})
    edit_defs(demo_repo, change)
    errors = plan_errors(demo_repo)
    assert sorted((e.obj, e.field) for e in errors) == [("feature_service fraud_v1", "name"),
                                                        ("source trips_src", "name")]
    assert all(e.file == DEFS and "duplicate" in str(e) for e in errors)


def test_feature_missing_from_parquet_schema(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats")["features"].append(
        {"name": "max_amount_7d", "dtype": "float64"}))
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_stats", "features[max_amount_7d]",
                 "'max_amount_7d' is missing", "data/customer_stats.parquet")


def test_feature_of_wrong_type_in_parquet(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats")["features"][2].update(dtype="int64"))
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_stats", "features[segment].dtype",
                 "declared int64", "string")


def test_feature_of_wrong_type_in_csv(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_driver").update(
        features=[{"name": "trips_together", "dtype": "string"}]))
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_driver", "features[trips_together].dtype",
                 "declared string", "int64", "data/trips/*.csv")


def test_float_column_is_not_an_int_feature(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats")["features"][0].update(dtype="int64"))
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_stats", "features[avg_amount_7d].dtype",
                 "declared int64", "double")


def test_missing_timestamp_column(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["sources"], "trips_src").update(timestamp_field="pickup_ts"))
    assert_names(only_error(demo_repo), DEFS, "source trips_src", "timestamp_field",
                 "'pickup_ts' is missing", "customer_id, driver_id, ts, trips_together")


def test_missing_created_timestamp_column(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["sources"], "customer_stats_src").update(
        created_timestamp_field="loaded_at"))
    assert_names(only_error(demo_repo), DEFS, "source customer_stats_src", "created_timestamp_field", "'loaded_at'")


def test_timestamp_column_that_is_not_a_time(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["sources"], "trips_src").update(timestamp_field="trips_together"))
    errors = plan_errors(demo_repo)
    assert_names(errors[0], DEFS, "source trips_src", "timestamp_field", "not a timestamp")


@pytest.mark.parametrize("ttl", ["7 days", "-1d", -5, "soon", True])
def test_bad_ttl(demo_repo: Path, ttl) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(ttl=ttl))
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_stats", "ttl", "bad duration", repr(ttl))


def test_bad_dtype(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats")["features"][1].update(dtype="int128"))
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_stats", "features[txn_count_7d].dtype",
                 "unknown dtype 'int128'")


def test_service_naming_an_unknown_view(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_services"], "fraud_v1")["features"].append("merchant_stats"))
    assert_names(only_error(demo_repo), DEFS, "feature_service fraud_v1", "features[2]",
                 "unknown feature view 'merchant_stats'")


def test_service_naming_an_unknown_feature(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_services"], "fraud_v1").update(
        features=["customer_stats:avg_amount_30d", "customer_driver"]))
    assert_names(only_error(demo_repo), DEFS, "feature_service fraud_v1", "features[0]",
                 "no feature 'avg_amount_30d'")


def test_service_pinning_a_version_that_does_not_exist(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_services"], "fraud_v1").update(
        features=["customer_stats_v2:avg_amount_7d"]))
    assert_names(only_error(demo_repo), DEFS, "feature_service fraud_v1", "features[0]", "'customer_stats_v2'")


def test_composite_key_column_missing(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["entities"], "driver").update(join_keys=["driver_uuid"]))
    assert_names(only_error(demo_repo), DEFS, "feature_view customer_driver", "entities",
                 "join key column 'driver_uuid' is missing", "trips_src")


def test_key_column_of_unusable_type(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(entities=["segment_e"])
              or d["entities"].append({"name": "segment_e", "join_keys": ["avg_amount_7d"]}))
    err = plan_errors(demo_repo)[0]
    assert_names(err, DEFS, "feature_view customer_stats", "entities", "'avg_amount_7d'", "integers or strings")


def test_source_path_matching_nothing(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["sources"], "trips_src").update(path="data/rides/*.csv"))
    errors = plan_errors(demo_repo)
    assert_names(errors[0], DEFS, "source trips_src", "path", "'data/rides/*.csv'")


def test_source_file_that_is_not_parquet(demo_repo: Path) -> None:
    (demo_repo / "data" / "customer_stats.parquet").write_text("customer_id,segment\n1,gold\n")
    errors = plan_errors(demo_repo)
    assert_names(errors[0], DEFS, "source customer_stats_src", "path", "not a readable Parquet file")


def test_all_problems_are_reported_together(demo_repo: Path) -> None:
    """Objects that fail to parse do not stop the checks of the others (one plan shows everything)."""
    def change(doc: dict) -> None:
        find(doc["feature_views"], "customer_stats").update(ttl="forever")
        find(doc["feature_views"], "customer_driver")["features"][0].update(dtype="float64x")
        find(doc["sources"], "trips_src").update(timestamp_field="pickup_ts")
        doc["feature_views"].append({"name": "spend", "entities": ["merchant"], "source": "customer_stats_src",
                                     "features": [{"name": "avg_amount_7d", "dtype": "float64"}]})
    edit_defs(demo_repo, change)
    errors = plan_errors(demo_repo)
    assert [(e.file, e.obj, e.field) for e in errors] == [
        (DEFS, "feature_view customer_stats", "ttl"),
        (DEFS, "feature_view customer_driver", "features[trips_together].dtype"),
        (DEFS, "source trips_src", "timestamp_field"),
        (DEFS, "feature_view spend", "entities"),
    ]  # and fraud_v1, which names the two rejected views, is not told they do not exist


def test_a_rejected_object_is_not_reported_again_as_unknown(demo_repo: Path) -> None:
    def change(doc: dict) -> None:
        find(doc["entities"], "driver")["join_keys"] = ["driver id"]
        find(doc["sources"], "customer_stats_src")["created_timestamp_field"] = "created-at"
    edit_defs(demo_repo, change)
    errors = plan_errors(demo_repo)
    assert [(e.obj, e.field) for e in errors] == [("entity driver", "join_keys"),
                                                  ("source customer_stats_src", "created_timestamp_field")]


def test_unreadable_file_is_reported_alone(demo_repo: Path) -> None:
    write_defs(demo_repo, "entities: [\n", "broken.yaml")
    (err,) = plan_errors(demo_repo)
    assert err.file == "features/broken.yaml" and "not valid YAML" in str(err)


def test_schema_is_read_from_every_parquet_file_of_a_folder(demo_repo: Path) -> None:
    """Files that disagree on a column type are reported against the source."""
    folder = demo_repo / "data" / "customer_stats"
    folder.mkdir()
    table = customer_stats_table()
    pq.write_table(table.slice(0, 5), folder / "part-0.parquet")
    bad = table.slice(5).set_column(5, "segment", pa.array([1, 2, 3, 4, 5], pa.int64()))
    pq.write_table(bad, folder / "part-1.parquet")
    edit_defs(demo_repo, lambda d: find(d["sources"], "customer_stats_src").update(path="data/customer_stats/"))
    errors = plan_errors(demo_repo)
    assert errors[0].file == DEFS and errors[0].obj == "source customer_stats_src"
    assert_names(errors[0], DEFS, "source customer_stats_src", "path", "files disagree", "segment")


def test_refused_schema_change_is_catchable_as_such(tmp_path):
    from fstore.errors import SchemaChangeRefused

    root = make_demo_repo(tmp_path / "r")
    fs = FeatureStore(root)
    fs.apply()
    defs = root / "features" / "defs.yaml"
    defs.write_text(defs.read_text().replace("{name: txn_count_7d, dtype: int64}", "{name: txn_count_7d, dtype: float64}"))
    with pytest.raises(SchemaChangeRefused, match=r"customer_stats.*version"):
        fs.apply()


def test_project_rename_is_a_change(tmp_path):
    root = make_demo_repo(tmp_path / "r")
    FeatureStore(root).apply()
    (root / "fstore.yaml").write_text("project: renamed\n")
    plan, version = FeatureStore(root).apply()
    assert not plan.empty and version == 2
    assert FeatureStore(root).registry.load()["project"] == "renamed"


@pytest.mark.parametrize("field, old, new, shown", [
    ("ttl", "7d", "5d", "ttl: 7d -> 5d"),
    ("ttl", "7d", None, "ttl: 7d -> none"),
    ("freshness_sla", "1h", "90m", "freshness_sla: 1h -> 90m"),
    ("freshness_sla", "1h", "1500ms", "freshness_sla: 1h -> 1500ms"),
])
def test_plan_shows_durations_in_units(demo_store: FeatureStore, field: str, old: str, new: str | None,
                                       shown: str) -> None:
    """A duration change reads as written, not as microseconds (168h would read 7d: the largest
    unit that divides it exactly)."""
    def change(doc: dict) -> None:
        view = find(doc["feature_views"], "customer_stats")
        assert view[field] == old
        if new is None:
            view.pop(field)
        else:
            view[field] = new
    edit_defs(demo_store.config.root, change)
    [c] = demo_store.plan().changes
    assert c.details == [shown]


# ---- a feature service whose views clash -------------------------------------------------

def _add_clashing_service(doc: dict, full: bool | None = None) -> None:
    """A second view over the stats source with a feature named like one of customer_stats,
    and a service reading both."""
    doc["feature_views"].append({"name": "stats_copy", "entities": ["customer"], "source": "customer_stats_src",
                                 "features": [{"name": "avg_amount_7d", "dtype": "float64"}]})
    svc = {"name": "clash", "features": ["customer_stats:avg_amount_7d", "stats_copy"]}
    if full is not None:
        svc["full_feature_names"] = full
    doc["feature_services"].append(svc)


def test_service_whose_views_give_one_feature_name_is_refused(demo_store: FeatureStore) -> None:
    edit_defs(demo_store.config.root, _add_clashing_service)
    err = only_error(demo_store.config.root)
    assert_names(err, DEFS, "feature_service clash", "features", "'customer_stats:avg_amount_7d'",
                 "'stats_copy:avg_amount_7d'", "customer_stats_v1", "stats_copy_v1", "'avg_amount_7d'",
                 "full_feature_names: true")
    with pytest.raises(DefinitionErrors):
        demo_store.apply()
    assert demo_store.registry.load()["version"] == 1


def test_a_service_pinning_two_versions_of_one_view_clashes_too(demo_store: FeatureStore) -> None:
    def two_versions(doc: dict) -> None:
        v2 = dict(find(doc["feature_views"], "customer_stats"), version=2)
        doc["feature_views"].append(v2)
        doc["feature_services"].append({"name": "both", "features": ["customer_stats_v1:segment",
                                                                     "customer_stats:segment"]})
    edit_defs(demo_store.config.root, two_versions)
    err = only_error(demo_store.config.root)
    assert "customer_stats_v1" in str(err) and "customer_stats_v2" in str(err) and "'segment'" in str(err)


def test_full_feature_names_on_the_service_allows_it_and_reads_use_them(demo_store: FeatureStore) -> None:
    import pyarrow as pa

    edit_defs(demo_store.config.root, lambda d: _add_clashing_service(d, full=True))
    _, version = demo_store.apply()
    assert demo_store.registry.load()["feature_services"]["clash"]["full_feature_names"] is True
    demo_store.ingest(["customer_stats", "stats_copy"])
    entities = pa.table({"customer_id": [1001], "event_timestamp": pa.array([1704240000_000000],
                                                                            pa.timestamp("us", tz="UTC"))})
    table = demo_store.get_historical_features(entities, feature_service="clash")
    assert table.column_names[-2:] == ["customer_stats__avg_amount_7d", "stats_copy__avg_amount_7d"]
    assert table.column("stats_copy__avg_amount_7d").to_pylist() == [30.0]
    demo_store.materialize("2024-01-01", "2024-01-05", ["customer_stats", "stats_copy"])
    resp = demo_store.get_online_features(feature_service="clash", entity_rows=[{"customer_id": 1001}],
                                          now="2024-01-05")
    assert resp.to_dict() == {"customer_id": [1001], "customer_stats__avg_amount_7d": [30.0],
                              "stats_copy__avg_amount_7d": [30.0]}


def test_full_feature_names_false_is_the_default_and_not_stored(demo_store: FeatureStore) -> None:
    """Services applied before the option existed read unchanged: plan shows no change."""
    edit_defs(demo_store.config.root, lambda d: d["feature_services"][0].update(full_feature_names=False))
    assert demo_store.plan().empty
    edit_defs(demo_store.config.root, lambda d: d["feature_services"][0].update(full_feature_names="yes"))
    err = only_error(demo_store.config.root)
    assert err.field == "full_feature_names" and "true or false" in str(err)
