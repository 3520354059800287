"""Training sets on disk: the file, written atomically, and its lineage beside it.

A model trained on a dataset can be traced back to the registry version, the
view versions and the exact offline data (a fingerprint of the parts and source
files read) that produced it; the model registry of a later issue links models
to these records.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .._version import __version__
from ..files import write_atomic
from ..repo.names import view_name
from ..repo.resolve import ViewRequest


def lineage_path(dataset: Path) -> Path:
    return dataset.with_name(dataset.name + ".lineage.json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_lineage(*, registry: dict[str, Any], offline: Any, requests: list[ViewRequest],
                    table: pa.Table, dataset: Path, entity_source: str | None,
                    features: Sequence[str] | None, feature_service: str | None,
                    full_feature_names: bool) -> dict[str, Any]:
    """The lineage record of a dataset just written to ``dataset``."""
    return {
        "dataset": str(dataset),
        "dataset_sha256": file_sha256(dataset),
        "rows": table.num_rows,
        "columns": table.column_names,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "fstore_version": __version__,
        "project": registry["project"],
        "registry_version": registry["version"],
        "feature_service": feature_service,
        "features": list(features) if features is not None else
        list(registry["feature_services"][feature_service]["features"]),
        "full_feature_names": full_feature_names,
        "entities": {"path": entity_source,
                     "sha256": file_sha256(Path(entity_source)) if entity_source else None},
        "views": [{"view": view_name(r.view), "name": r.view["name"], "version": r.view["version"],
                   "features": r.features, "columns": r.outputs, "ttl_us": r.view.get("ttl_us"),
                   "offline_fingerprint": offline.fingerprint(r.view)} for r in requests],
    }


def write_lineage(dataset: Path, record: dict[str, Any]) -> Path:
    path = lineage_path(dataset)
    write_atomic(path, json.dumps(record, indent=1).encode())
    return path


def write_dataset(table: pa.Table, out: Path) -> None:
    """Write a dataset atomically: Parquet, or CSV when the name ends in .csv."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        pcsv.write_csv(table, tmp)
    else:
        pq.write_table(table, tmp)
    os.replace(tmp, out)
