"""Section 2 of the spec: the feature repository, its definitions, versions and metadata."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from conftest import (DEFS_YAML, edit_defs, find, load_defs, make_demo_repo, write_defs)
from fstore import Entity, Feature, FeatureService, FeatureStore, FeatureView, Source
from fstore.errors import DefinitionErrors, InvalidDefinition, SchemaChangeRefused, UnknownObject
from fstore.repo.resolve import resolve

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000


def _without_applied_at(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "applied_at"}


def _v2_defs(doc: dict, *, keep_v1: bool) -> None:
    """Add customer_stats version 2 (one more feature); optionally drop version 1."""
    v1 = find(doc["feature_views"], "customer_stats")
    v2 = {**v1, "version": 2,
          "features": [*v1["features"], {"name": "max_amount_7d", "dtype": "float64"}]}
    if not keep_v1:
        doc["feature_views"].remove(v1)
    doc["feature_views"].append(v2)


# ---- the minimal repository -------------------------------------------------------------

def test_minimal_repository_applies_as_is(demo_repo: Path) -> None:
    fs = FeatureStore(demo_repo)
    plan = fs.plan()
    assert {(c.kind, c.name, c.action) for c in plan.changes} == {
        ("entities", "customer", "add"), ("entities", "driver", "add"),
        ("sources", "customer_stats_src", "add"), ("sources", "trips_src", "add"),
        ("feature_views", "customer_stats_v1", "add"), ("feature_views", "customer_driver_v1", "add"),
        ("feature_services", "fraud_v1", "add"),
    }
    _, version = fs.apply()
    assert version == 1
    reg = fs.registry.load()
    assert reg["project"] == "demo"
    assert sorted(reg["feature_views"]) == ["customer_driver_v1", "customer_stats_v1"]
    cd = reg["feature_views"]["customer_driver_v1"]
    assert cd["join_keys"] == ["customer_id", "driver_id"]
    assert cd["key_dtypes"] == {"customer_id": "int64", "driver_id": "int64"}
    assert cd["ttl_us"] is None  # absent ttl: no limit
    assert reg["sources"]["trips_src"]["format"] == "csv"
    assert reg["sources"]["customer_stats_src"]["format"] == "parquet"
    assert reg["feature_services"]["fraud_v1"]["features"] == ["customer_stats:avg_amount_7d", "customer_driver"]


def test_metadata_is_stored(demo_store: FeatureStore) -> None:
    reg = demo_store.registry.load()
    cs = reg["feature_views"]["customer_stats_v1"]
    assert cs["owner"] == "risk-team@example.com"
    assert cs["freshness_sla_us"] == HOUR_US
    assert cs["ttl_us"] == 7 * DAY_US
    assert cs["description"] == "Rolling customer spend statistics"
    assert cs["entities"] == ["customer"] and cs["join_keys"] == ["customer_id"]
    assert [(f["name"], f["dtype"], f["default"]) for f in cs["features"]] == [
        ("avg_amount_7d", "float64", 0.0), ("txn_count_7d", "int64", None), ("segment", "string", None)]
    assert reg["entities"]["driver"]["join_keys"] == ["driver_id"]
    src = reg["sources"]["customer_stats_src"]
    assert (src["timestamp_field"], src["created_timestamp_field"]) == ("event_timestamp", "created_timestamp")
    assert reg["sources"]["trips_src"]["created_timestamp_field"] is None


def test_tags_and_descriptions_are_stored(demo_repo: Path) -> None:
    def change(doc: dict) -> None:
        find(doc["entities"], "customer").update(description="A paying customer", tags={"pii": "yes"})
        find(doc["feature_views"], "customer_stats")["tags"] = {"team": "risk", "tier": 1}
        find(doc["feature_services"], "fraud_v1").update(owner="ml@example.com", tags={"model": "xgb"})
    edit_defs(demo_repo, change)
    fs = FeatureStore(demo_repo)
    fs.apply()
    reg = fs.registry.load()
    assert reg["entities"]["customer"]["description"] == "A paying customer"
    assert reg["entities"]["customer"]["tags"] == {"pii": "yes"}
    assert reg["feature_views"]["customer_stats_v1"]["tags"] == {"team": "risk", "tier": "1"}
    assert reg["feature_services"]["fraud_v1"]["owner"] == "ml@example.com"
    assert reg["feature_services"]["fraud_v1"]["tags"] == {"model": "xgb"}


@pytest.mark.parametrize("ttl", [0, "0", "0s", None])
def test_zero_or_absent_ttl_means_no_limit(demo_repo: Path, ttl) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(ttl=ttl))
    fs = FeatureStore(demo_repo)
    fs.apply()
    assert fs.registry.load()["feature_views"]["customer_stats_v1"]["ttl_us"] is None


@pytest.mark.parametrize("ttl, us", [("7d", 7 * DAY_US), ("90m", 90 * 60_000_000), (3600, HOUR_US),
                                     ("1.5h", 90 * 60_000_000), ("2w", 14 * DAY_US), ("500ms", 500_000)])
def test_ttl_spellings(ttl, us: int) -> None:
    view = FeatureView(name="v", entities=["e"], source="s", features=[Feature("f", "int64")], ttl=ttl)
    assert view.ttl == us


@pytest.mark.parametrize("alias, canonical", [("long", "int64"), ("double", "float64"), ("str", "string"),
                                              ("boolean", "bool"), ("datetime", "timestamp"), ("Float32", "float32")])
def test_dtype_aliases_are_canonical(alias: str, canonical: str) -> None:
    assert Feature("f", alias).dtype == canonical


@pytest.mark.parametrize("alias, choices", [("int", "int32 or int64"), ("Integer", "int32 or int64"),
                                            ("float", "float32 or float64")])
def test_ambiguous_dtype_is_refused_naming_the_choices(alias: str, choices: str) -> None:
    with pytest.raises(InvalidDefinition) as info:
        Feature("f", alias)
    assert info.value.field == "dtype"
    assert f"dtype {alias!r} is ambiguous" in str(info.value) and f"write {choices}" in str(info.value)


def test_every_dtype_and_alias_is_documented() -> None:
    """docs/repository.md has a row per dtype and per alias, saying what it maps to."""
    from fstore.repo.definitions import AMBIGUOUS_DTYPES, DTYPE_ALIASES, DTYPES

    doc = (Path(__file__).parents[1] / "docs" / "repository.md").read_text()
    for name in DTYPES:
        assert f"| `{name}` |" in doc, name
    for alias, canonical in DTYPE_ALIASES.items():
        assert f"| `{alias}` | `{canonical}` |" in doc, alias
    for alias, (_, choices) in AMBIGUOUS_DTYPES.items():
        assert f"| `{alias}` | refused: write {' or '.join(f'`{c}`' for c in choices)} |" in doc, alias


# ---- YAML and Python give the same registry -----------------------------------------------

def test_yaml_and_python_definitions_give_identical_registries(tmp_path: Path) -> None:
    from_yaml = FeatureStore(make_demo_repo(tmp_path / "yaml"))
    from_py = FeatureStore(make_demo_repo(tmp_path / "py", python=True))
    assert not (tmp_path / "py" / "features" / "defs.yaml").exists()
    from_yaml.apply()
    from_py.apply()
    a, b = from_yaml.registry.load(), from_py.registry.load()
    assert a["applied_at"] and b["applied_at"]
    assert _without_applied_at(a) == _without_applied_at(b)
    assert [c.name for c in from_yaml.plan().changes] == [c.name for c in from_py.plan().changes] == []


def test_python_objects_equal_their_yaml_form() -> None:
    customer = Entity("customer", ["customer_id"])
    src = Source("trips_src", "data/trips/*.csv", timestamp_field="ts")
    view = FeatureView("customer_driver", entities=[customer, "driver"], source=src,
                       features=[{"name": "trips_together", "dtype": "long", "default": 0.0}])
    assert view.entities == ["customer", "driver"] and view.source == "trips_src"
    assert view.to_dict() == FeatureView(
        name="customer_driver", version=1, entities=["customer", "driver"], source="trips_src",
        features=[Feature("trips_together", "int64", default=0)]).to_dict()
    svc = FeatureService("svc", features=[view, view[["trips_together"]]])
    assert svc.features == ["customer_driver", "customer_driver:trips_together"]


def test_python_definition_error_names_the_py_file(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "repo", python=True)
    text = (repo / "features" / "defs.py").read_text().replace('dtype="string"', 'dtype="text"')
    write_defs(repo, text, "defs.py")
    with pytest.raises(DefinitionErrors) as info:
        FeatureStore(repo).plan()
    (err,) = info.value.errors
    assert err.file == "features/defs.py"
    # Feature(...) raises before its view exists, so the error names the feature itself
    assert (err.obj, err.field) == ("feature segment", "dtype")
    assert "features/defs.py" in str(info.value) and "'text'" in str(info.value)


# ---- versions -------------------------------------------------------------------------------

def test_new_version_is_stored_beside_the_old_one(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "repo", extra_columns=True)
    fs = FeatureStore(repo)
    fs.apply()
    edit_defs(repo, lambda d: _v2_defs(d, keep_v1=True))
    plan, version = fs.apply()
    assert version == 2
    assert [(c.name, c.action) for c in plan.changes] == [("customer_stats_v2", "add")]
    views = fs.registry.load()["feature_views"]
    assert sorted(views) == ["customer_driver_v1", "customer_stats_v1", "customer_stats_v2"]
    assert views["customer_stats_v2"]["name"] == "customer_stats" and views["customer_stats_v2"]["version"] == 2
    assert fs.get_feature_view("customer_stats")["version"] == 2          # newest
    assert fs.get_feature_view("customer_stats_v1")["version"] == 1       # pinned
    with pytest.raises(UnknownObject):
        fs.get_feature_view("customer_stats_v3")


def test_unversioned_reference_means_newest_and_vN_pins(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "repo", extra_columns=True)
    def change(doc: dict) -> None:
        _v2_defs(doc, keep_v1=True)
        doc["feature_services"].append({"name": "pinned", "features": ["customer_stats_v1:avg_amount_7d"]})
    edit_defs(repo, change)
    fs = FeatureStore(repo)
    fs.apply()
    reg = fs.registry.load()
    (newest, _) = resolve(reg, feature_service="fraud_v1")
    assert (newest.view["name"], newest.view["version"], newest.features) == ("customer_stats", 2, ["avg_amount_7d"])
    (pinned,) = resolve(reg, feature_service="pinned")
    assert (pinned.view["version"], pinned.features) == (1, ["avg_amount_7d"])
    # a feature only v2 has cannot be asked of v1
    edit_defs(repo, lambda d: find(d["feature_services"], "pinned").update(
        features=["customer_stats_v1:max_amount_7d"]))
    with pytest.raises(DefinitionErrors, match="customer_stats_v1.*max_amount_7d"):
        fs.plan()


@pytest.mark.parametrize("change, expected", [
    (lambda v: v["features"][2].update(dtype="bytes"), "segment"),
    (lambda v: v["features"].append({"name": "max_amount_7d", "dtype": "float64"}), "max_amount_7d added"),
    (lambda v: v["features"].pop(1), "txn_count_7d removed"),
    (lambda v: v.update(entities=["account"]), "entities: ['customer'] -> ['account']"),
])
def test_changing_an_applied_schema_in_place_is_refused(tmp_path: Path, change, expected: str) -> None:
    repo = make_demo_repo(tmp_path / "repo", extra_columns=True)
    # an entity keyed on the same column, so that the entity change is otherwise valid
    (repo / "features" / "accounts.yaml").write_text("entities:\n  - {name: account, join_keys: [customer_id]}\n")
    fs = FeatureStore(repo)
    fs.apply()
    before = fs.registry.path.read_bytes()
    edit_defs(repo, lambda d: change(find(d["feature_views"], "customer_stats")))
    with pytest.raises(DefinitionErrors) as info:
        fs.apply()
    (err,) = info.value.errors
    assert isinstance(err, SchemaChangeRefused)
    assert err.file == "features/defs.yaml" and err.obj == "feature_view customer_stats"
    assert err.field == "version" and expected in str(err) and "version: 2" in str(err)
    assert fs.registry.path.read_bytes() == before
    assert [h["version"] for h in fs.registry.history()] == [1]


def test_metadata_may_change_in_place(demo_store: FeatureStore) -> None:
    repo = demo_store.config.root
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_stats").update(
        owner="fraud-team@example.com", description="Spend statistics", ttl="3d"))
    plan = demo_store.plan()
    (change,) = plan.changes
    assert (change.kind, change.name, change.action) == ("feature_views", "customer_stats_v1", "change")
    assert any("owner" in d and "fraud-team@example.com" in d for d in change.details)
    assert "ttl: 7d -> 3d" in change.details
    _, version = demo_store.apply()
    assert version == 2
    assert demo_store.get_feature_view("customer_stats_v1")["owner"] == "fraud-team@example.com"


def test_old_version_stays_queryable_and_ingestible_after_removal(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "repo", extra_columns=True)
    fs = FeatureStore(repo)
    fs.apply()
    v1_record = fs.registry.load()["feature_views"]["customer_stats_v1"]
    # v2 reads a new source; v1 and its source and entity disappear from the YAML
    def change(doc: dict) -> None:
        _v2_defs(doc, keep_v1=False)
        old_src = find(doc["sources"], "customer_stats_src")
        doc["sources"].remove(old_src)
        doc["sources"].append({**old_src, "name": "customer_stats_src2"})
        find(doc["feature_views"], "customer_stats").update(source="customer_stats_src2")
        doc["feature_services"] = []
        doc["feature_views"] = [v for v in doc["feature_views"] if v["name"] != "customer_driver"]
        doc["entities"] = [e for e in doc["entities"] if e["name"] != "driver"]
    edit_defs(repo, change)
    plan, version = fs.apply()
    assert version == 2
    assert not [c for c in plan.changes if c.kind == "feature_views" and c.action == "remove"]
    reg = fs.registry.load()
    assert {"customer_stats_v1", "customer_stats_v2", "customer_driver_v1"} <= set(reg["feature_views"])
    assert {"customer_stats_src", "customer_stats_src2", "trips_src"} <= set(reg["sources"])
    assert "driver" in reg["entities"]
    assert reg["feature_views"]["customer_stats_v1"] == v1_record
    # still ingestible, by pinned name and as part of "everything"
    (res,) = fs.ingest(["customer_stats_v1"])
    assert (res.view, res.rows) == ("customer_stats_v1", 10)
    results = {r.view: r for r in fs.ingest()}
    assert set(results) == {"customer_stats_v1", "customer_stats_v2", "customer_driver_v1"}
    assert results["customer_stats_v1"].up_to_date and results["customer_stats_v2"].rows == 10
    assert results["customer_driver_v1"].rows == 7
    # and a plan right after is empty: nothing is "removed" by leaving the YAML
    assert fs.plan().empty


def test_duplicate_feature_in_a_view_names_the_field(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats")["features"].append(
        {"name": "segment", "dtype": "string"}))
    with pytest.raises(DefinitionErrors) as info:
        FeatureStore(demo_repo).plan()
    (err,) = info.value.errors
    assert (err.file, err.field) == ("features/defs.yaml", "features")
    assert "customer_stats" in err.obj and "'segment' is defined twice" in str(err)


@pytest.mark.parametrize("bad, field", [
    ({"version": 0}, "version"), ({"version": "two"}, "version"), ({"name": "customer_stats_v3"}, "name"),
    ({"entities": []}, "entities"), ({"features": []}, "features"), ({"freshness_sla": "soon"}, "freshness_sla"),
])
def test_bad_view_fields_name_file_object_and_field(demo_repo: Path, bad: dict, field: str) -> None:
    edit_defs(demo_repo, lambda d: find(d["feature_views"], "customer_stats").update(bad))
    with pytest.raises(DefinitionErrors) as info:
        FeatureStore(demo_repo).plan()
    obj = f"feature_view {bad.get('name', 'customer_stats')}"
    (err,) = [e for e in info.value.errors if e.obj == obj]  # renaming also orphans fraud_v1's reference
    assert (err.file, err.field) == ("features/defs.yaml", field)


def test_unknown_yaml_field_is_reported(demo_repo: Path) -> None:
    write_defs(demo_repo, DEFS_YAML.replace("    owner: risk", "    ownr: risk"))
    with pytest.raises(DefinitionErrors,
                       match=r"features/defs.yaml: feature_view customer_stats.ownr: unknown field 'ownr'"):
        FeatureStore(demo_repo).plan()


def test_definitions_can_be_split_across_files(demo_repo: Path) -> None:
    doc = load_defs(demo_repo)
    services = doc.pop("feature_services")
    write_defs(demo_repo, yaml.safe_dump(doc))
    (demo_repo / "features" / "services").mkdir()
    write_defs(demo_repo, yaml.safe_dump({"feature_services": services}), "services/fraud.yml")
    fs = FeatureStore(demo_repo)
    fs.apply()
    assert list(fs.registry.load()["feature_services"]) == ["fraud_v1"]


def test_timedelta_and_iso_defaults() -> None:
    f = Feature("last_seen", "timestamp", default="2024-01-01T00:00:00")
    assert f.default == "2024-01-01T00:00:00+00:00"
    assert FeatureView("v", entities=["e"], source="s", features=[f], ttl=dt.timedelta(hours=2)).ttl == 2 * HOUR_US
    with pytest.raises(InvalidDefinition) as info:
        Feature("n", "int64", default="zero")
    assert info.value.field == "default"


# ---- an exception in a Python definitions file names its line ------------------------------

def _python_error(tmp_path: Path, text: str) -> InvalidDefinition:
    repo = make_demo_repo(tmp_path / "repo", python=True)
    write_defs(repo, text, "defs.py")
    with pytest.raises(DefinitionErrors) as info:
        FeatureStore(repo).plan()
    (err,) = info.value.errors
    assert err.file == "features/defs.py"
    return err


def test_name_error_shows_file_line_and_source(tmp_path: Path) -> None:
    text = DEFS_PY_HEAD + "\n\nfraud_v2 = FeatureService(name='fraud_v2', features=[custmer_stats])\n"
    line = text.splitlines().index("fraud_v2 = FeatureService(name='fraud_v2', features=[custmer_stats])") + 1
    err = _python_error(tmp_path, text)
    assert "NameError: name 'custmer_stats' is not defined" in str(err)
    assert f"at features/defs.py:{line}: `fraud_v2 = FeatureService(name='fraud_v2', features=[custmer_stats])`" \
        in str(err)


def test_error_inside_a_function_shows_the_innermost_line(tmp_path: Path) -> None:
    text = "def features():\n    return 1 / 0\n\n\nfeatures()\n"
    err = _python_error(tmp_path, text)
    assert "ZeroDivisionError: division by zero, at features/defs.py:2: `return 1 / 0`" in str(err)


def test_syntax_error_shows_its_line(tmp_path: Path) -> None:
    err = _python_error(tmp_path, "x = 1\ny = (2,\n")
    assert "SyntaxError" in str(err) and "at features/defs.py:2: `y = (2,`" in str(err)


def test_invalid_definition_raised_by_python_code_shows_its_line(tmp_path: Path) -> None:
    text = "from fstore import Feature\n\nok = Feature('a', 'int64')\nbad = Feature('b', 'text')\n"
    err = _python_error(tmp_path, text)
    assert "unknown dtype 'text'" in str(err) and "at features/defs.py:4: `bad = Feature('b', 'text')`" in str(err)


DEFS_PY_HEAD = "from fstore import FeatureService\n"


def test_every_fstore_yaml_key_is_documented() -> None:
    """docs/repository.md has a row for every key of every section of fstore.yaml."""
    from fstore.config import SECTIONS, TOP_KEYS

    doc = (Path(__file__).parents[1] / "docs" / "repository.md").read_text()
    for key in TOP_KEYS:
        if key not in SECTIONS:
            assert f"| `{key}` |" in doc, key
    for section, keys in SECTIONS.items():
        assert f"### `{section}:`" in doc, section
        for key in keys:
            assert f"| `{section}.{key}` |" in doc, f"{section}.{key}"
