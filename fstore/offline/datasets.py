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
from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as pfeather
import pyarrow.parquet as pq

from .._version import __version__
from ..errors import InvalidArgument, MissingLineage
from ..files import write_atomic
from ..repo.names import split_ref, view_name
from ..repo.request_time import fills_of
from ..repo.resolve import ViewRequest, find_view


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
                    full_feature_names: bool, computed: list[ViewRequest] | None = None,
                    ready: frozenset[str] | None = None) -> dict[str, Any]:
    """The lineage record of a dataset just written to ``dataset``. ``computed``: the request
    views it holds (fstore.repo.resolve), recorded with their function (name, file, source
    sha256), request fields and inputs pinned to the version read (``ready``: the versions
    unpinned references read, offline); a view their functions read is in ``views`` too."""
    request_views, read_by = _functions(registry, requests, computed or [], ready)
    stored = {view_name(r.view) for r in requests}
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
        "full_feature_names": full_feature_names or bool(
            feature_service and registry["feature_services"][feature_service].get("full_feature_names")),
        "entities": {"path": entity_source,
                     "sha256": file_sha256(Path(entity_source)) if entity_source else None},
        "views": [_view_entry(r.view, r.features, r.outputs, offline, read_by) for r in requests] +
        [_view_entry(v, feats, [], offline, read_by) for name, (v, feats) in _inputs(registry, read_by).items()
         if name not in stored],
        "request_views": request_views,
    }


def _view_entry(view: dict[str, Any], features: list[str], columns: list[str], offline: Any,
                read_by: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {"view": view_name(view), "name": view["name"], "version": view["version"], "features": features,
           "columns": columns, "ttl_us": view.get("ttl_us"), "offline_fingerprint": offline.fingerprint(view)}
    if view.get("on_miss"):
        spec = view["on_miss"]
        out["on_miss"] = {"function": dict(spec["function"]), "request": dict(spec["request"]),
                          "inputs": list(spec["inputs"])}
    if view_name(view) in read_by:
        out["read_by"] = sorted(read_by[view_name(view)]["by"])
    return out


def _functions(registry: dict[str, Any], requests: list[ViewRequest], computed: list[ViewRequest],
               ready: frozenset[str] | None) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The request views of a training set as lineage records, and the view versions the
    functions (request views, on_miss fills) read: versioned name -> {features, by}."""
    views = registry["feature_views"]
    read_by: dict[str, dict[str, Any]] = {}

    def pin(ref: str, owner: str) -> str:
        view_ref, feat = split_ref(ref)
        v = find_view(view_ref, views, ready, feat)
        entry = read_by.setdefault(view_name(v), {"features": [], "by": set()})  # type: ignore[arg-type]
        entry["features"] += [feat] if feat not in entry["features"] else []
        entry["by"].add(owner)
        return f"{view_name(v)}:{feat}"  # type: ignore[arg-type]

    # the fills that run (fills_of): of the views asked for and of those request views read
    read = [r.view for r in requests] + [find_view(split_ref(ref)[0], views, ready, split_ref(ref)[1])
                                         for r in computed for ref in r.view["inputs"]]
    for v in fills_of(read):  # type: ignore[arg-type]
        for ref in v["on_miss"]["inputs"]:
            pin(ref, f"feature_view {view_name(v)} on_miss")
    records = []
    for r in computed:
        rv = r.view
        records.append({"name": rv["name"], "function": dict(rv["function"]), "request": dict(rv["request"]),
                        "inputs": [pin(ref, f"request_view {rv['name']}") for ref in rv["inputs"]],
                        "features": list(r.features), "columns": list(r.outputs)})
    return records, read_by


def _inputs(registry: dict[str, Any], read_by: dict[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], list[str]]]:
    return {name: (registry["feature_views"][name], entry["features"]) for name, entry in read_by.items()}


def read_lineage(dataset: Path) -> dict[str, Any]:
    """The lineage record of a training set fstore built; MissingLineage (naming the file)
    when the file or its record is missing, or the file changed since it was built."""
    path = lineage_path(dataset)
    if not dataset.is_file():
        raise MissingLineage(f"dataset {dataset}: no such file")
    if not path.is_file():
        raise MissingLineage(f"dataset {dataset} has no lineage record ({path.name}): register a training "
                             "set built by `fstore build-dataset`, which writes it beside the file")
    try:
        record = json.loads(path.read_bytes())
        record["dataset_sha256"], record["views"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MissingLineage(f"dataset {dataset}: its lineage record {path.name} is not valid ({exc})") from None
    if file_sha256(dataset) != record["dataset_sha256"]:
        raise MissingLineage(f"dataset {dataset} changed since fstore built it (its sha256 differs from "
                             f"the one in {path.name}): build it again")
    return record


def write_lineage(dataset: Path, record: dict[str, Any]) -> Path:
    path = lineage_path(dataset)
    write_atomic(path, json.dumps(record, indent=1).encode())
    return path


def _write_ipc(table: pa.Table, path: Path) -> None:
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)


#: the file name suffixes a dataset can be written as, and how
WRITERS: dict[str, Callable[[pa.Table, Path], None]] = {
    ".parquet": pq.write_table,
    ".csv": pcsv.write_csv,
    ".arrow": _write_ipc,     # the Arrow IPC file format, uncompressed
    ".ipc": _write_ipc,
    ".feather": pfeather.write_feather,  # Feather v2: the IPC file format, LZ4-compressed
}


def dataset_writer(out: Path) -> Callable[[pa.Table, Path], None]:
    """How a dataset named ``out`` is written, by its suffix; InvalidArgument for a suffix
    fstore does not write (checked before the training set is built)."""
    writer = WRITERS.get(out.suffix.lower())
    if writer is None:
        raise InvalidArgument(f"cannot write a dataset as {out.name!r}: the file name must end in "
                              f"{', '.join(WRITERS)}")
    return writer


def write_dataset(table: pa.Table, out: Path) -> None:
    """Write a dataset atomically in the format its suffix names (``WRITERS``)."""
    writer = dataset_writer(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    writer(table, tmp)
    os.replace(tmp, out)
