"""Twin repositories for the Spark engine's tests: the same definitions and source files,
one with the local engine and one with ``engine: spark`` (local[2], tiny shuffles)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fstore import FeatureStore

SPARK_YAML = ("  engine: spark\n  spark:\n    master: local[2]\n    conf:\n"
              "      spark.sql.shuffle.partitions: 2\n      spark.default.parallelism: 2\n"
              "      spark.driver.memory: 1g\n      spark.sql.adaptive.enabled: false\n")

needs_spark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("pyspark") is None,
    reason="pyspark is not installed (pip install 'fstore[spark]'); CI installs it and runs these")


def spark_twin(local_root: Path) -> Path:
    """A copy of a repository (definitions and sources, no stores) whose engine is Spark."""
    twin = local_root.with_name(local_root.name + "-spark")
    shutil.rmtree(twin, ignore_errors=True)
    shutil.copytree(local_root, twin, ignore=shutil.ignore_patterns("offline", "online", "registry.json"))
    text = (twin / "fstore.yaml").read_text()
    if "offline_store: {buckets:" in text:  # make_repo's one-line form
        buckets = text.split("buckets:")[1].split("}")[0].strip()
        text = text.replace(f"offline_store: {{buckets: {buckets}}}", f"offline_store:\n  buckets: {buckets}\n"
                            + SPARK_YAML.rstrip("\n"))
    else:
        text += "offline_store:\n" + SPARK_YAML
    (twin / "fstore.yaml").write_text(text)
    return twin


def sync_sources(local_root: Path, twin: Path) -> None:
    """Copy the local repository's source data and definitions to the twin again."""
    for sub in ("data", "features"):
        src = local_root / sub
        for path in src.rglob("*"):
            if path.is_file() and not {"offline", "online"} & set(path.parts) and path.name != "registry.json":
                dest = twin / path.relative_to(local_root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)


def stored(fs: FeatureStore, view: str) -> dict:
    """Everything a view's offline store holds, but write times: each part's rows, and the
    manifest's units and runs."""
    [v] = [v for n, v in fs.registry.load()["feature_views"].items() if n == view]
    vdir = fs.offline.view_dir(v)
    manifest = json.loads((vdir / "_manifest.json").read_text())
    for run in manifest["runs"]:
        run.pop("at")
    for unit in manifest["units"].values():
        unit.pop("at")
    parts = {str(p.relative_to(vdir)): pq.read_table(p).to_pylist() for p in sorted(vdir.glob("b*/*.parquet"))}
    return {"manifest": manifest, "parts": parts}
