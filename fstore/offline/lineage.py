"""A model version's lineage down to the files: model version -> training set -> feature
service -> view versions -> sources, with the source files and ingest runs the offline
store holds for each view version (its manifest)."""
from __future__ import annotations

from typing import Any

from ..repo.models import find_version, parse_model_ref
from ..repo.names import versioned_name
from .store import OfflineStore


def model_lineage(doc: dict[str, Any], offline: OfflineStore, ref: str) -> dict[str, Any]:
    """The lineage document of model version ``ref`` ('name:N', or 'name' for its newest)."""
    name, version = parse_model_ref(ref)
    rec = find_version(doc.get("models", {}), name, version)
    training = rec.get("training_set", {})
    return {
        "model": name, "version": rec["version"], "stage": rec["stage"],
        "dataset": rec["dataset"],
        "training_set": {"file": rec["dataset"], "sha256": rec["dataset_sha256"], "rows": training.get("rows"),
                         "entities_sha256": (training.get("entities") or {}).get("sha256"),
                         "entities_path": (training.get("entities") or {}).get("path"),
                         "built_at": training.get("built_at"), "registry_version": training.get("registry_version")},
        "service": rec["service"],
        "service_features": doc["feature_services"].get(rec["service"], {}).get("features"),
        "views": [_view(doc, offline, v) for v in rec["views"]],
        "request_views": rec.get("request_views", []),
        "artifact": rec.get("artifact"), "metrics": rec.get("metrics", {}), "params": rec.get("params", {}),
    }


def _view(doc: dict[str, Any], offline: OfflineStore, trained: dict[str, Any]) -> dict[str, Any]:
    """One view version the model was trained on, with its source and what was ingested."""
    key = versioned_name(trained["name"], trained["version"])
    record = doc["feature_views"].get(key)
    out = {"name": trained["name"], "version": trained["version"], "view": key,
           "offline_fingerprint": trained.get("offline_fingerprint"), "sources": []}
    out |= {k: trained[k] for k in ("on_miss", "read_by") if k in trained}
    if record is None:  # never happens to an applied version (apply keeps them); said, not hidden
        out["missing"] = True
        return out
    manifest = offline.manifest(record)
    out["offline_fingerprint_now"] = offline.fingerprint(record)
    src = doc["sources"].get(record["source"], {})
    files = [{"file": unit, "fingerprint": u.get("fingerprint"), "rows": u.get("rows"), "run": u.get("run"),
              "at": u.get("at")} for unit, u in sorted((manifest or {}).get("units", {}).items())]
    runs = [{"id": r["id"], "rows": r["rows"], "at": r["at"], "files": r.get("units", [])}
            for r in (manifest or {}).get("runs", [])]
    out["sources"] = [{"name": record["source"], "path": src.get("path"), "format": src.get("format"),
                       "files": files, "ingest_runs": runs}]
    return out
