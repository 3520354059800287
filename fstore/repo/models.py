"""The model registry: which training set each model version was trained on, and its stage.

Models live in the registry document, in a ``models`` section that definitions never
hold (``apply`` carries it over unchanged), so a register or a promote is a new
registry version like an apply: atomic, under the registry lock, with its history copy.
A version records the view versions of its training set, so that ``plan`` can name a
change that a production model reads (fstore.repo.impact) and a read can name a model
instead of a service (``serving_service``).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

from ..errors import BadRequest, InvalidArgument, NoProductionVersion, UnknownObject
from .mlflow_runs import lineage_tags, read_run, write_tags
from .names import NAME_RE
from .registry import Registry

#: the stages of a model version; at most one version of a model is in production
STAGES = ("none", "staging", "production", "archived")
#: the stages a promote may set (``none`` is where a version starts)
PROMOTE_STAGES = STAGES[1:]


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """``fraud_model`` -> (name, None); ``fraud_model:3`` -> (name, 3)."""
    name, sep, version = ref.partition(":")
    if not sep:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise InvalidArgument(f"model reference {ref!r}: write NAME or NAME:N with N a version number")
    return name, int(version)


def find_version(models: dict[str, Any], name: str, version: int | None = None, *,
                 production: bool = False) -> dict[str, Any]:
    """A model version's record: version ``version``, else the production version when
    ``production``, else the newest. UnknownObject names the known models or versions."""
    model = models.get(name)
    if model is None:
        raise UnknownObject(f"unknown model {name!r}; known: {', '.join(sorted(models)) or 'none'}")
    versions = model["versions"]
    if version is not None:
        for rec in versions:
            if rec["version"] == version:
                return rec
        raise UnknownObject(f"model {name!r} has no version {version}; known: "
                            f"{', '.join(str(r['version']) for r in versions)}")
    if production:
        for rec in versions:
            if rec["stage"] == "production":
                return rec
        raise NoProductionVersion(f"model {name!r} has no production version: name one (`{name}:N`) "
                                  f"or promote one (`fstore model promote {name}:N --stage production`)")
    return versions[-1]


def serving_service(doc: dict[str, Any], model: str) -> str:
    """The feature service a read that names ``model`` ('name' for its production version,
    'name:N' for version N) is served from."""
    name, version = parse_model_ref(model)
    return find_version(doc.get("models", {}), name, version, production=True)["service"]


def model_service(doc: dict[str, Any], features: Any, service: Any, model: Any) -> str:
    """The service of a read that names ``model``: BadRequest when it also names features or
    a service, or ``model`` is not a string (the same in process and on the server)."""
    if features is not None or service is not None:
        raise BadRequest("give exactly one of features, service or model", "model")
    if type(model) is not str:
        raise BadRequest("model must be a string", "model")
    return serving_service(doc, model)


def parse_scalar(value: str) -> Any:
    """A ``k=v`` value (or an MLflow param, always a string) as stored: an int or float when
    it reads as one, else the string."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _pairs(items: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """Metrics or params as stored: keys are strings, values JSON scalars."""
    out: dict[str, Any] = {}
    for k, v in (items or {}).items():
        if not isinstance(k, str) or not k:
            raise InvalidArgument(f"{what}: every name must be a non-empty string, got {k!r}")
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise InvalidArgument(f"{what} {k!r}: the value must be a string, number or bool, got {type(v).__name__}")
        out[k] = v
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


class ModelRegistry:
    """``fs.models``: register, look up and promote model versions.

    ``read_lineage`` gives a dataset file's lineage record (fstore.offline.datasets),
    raising MissingLineage for a file without one.
    """

    def __init__(self, registry: Registry, read_lineage: Callable[[Path], dict[str, Any]]) -> None:
        self.registry = registry
        self.read_lineage = read_lineage

    def register(self, name: str, dataset: str | Path, *, service: str | None = None,
                 artifact: str | None = None, metrics: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None, description: str = "",
                 mlflow_run: str | None = None, mlflow_tracking_uri: str | None = None) -> dict[str, Any]:
        """Record a new version of model ``name`` trained on ``dataset`` (a training set fstore
        built); returns its record. ``service`` defaults to the one the dataset was built from.

        With ``mlflow_run``, the run's artifact URI, params and metrics fill what the call does
        not give (a given metric or param overrides the run's), and fstore's lineage is written
        back to the run as ``fstore.*`` tags once the version is recorded (fstore.repo.mlflow_runs).
        """
        if mlflow_run is None:
            return self._register(name, dataset, service, artifact, metrics, params, description, None)
        run = read_run(mlflow_run, mlflow_tracking_uri)
        rec = self._register(name, dataset, service, artifact or run["artifact"],
                             {**run["metrics"], **(metrics or {})}, {**{k: parse_scalar(v) for k, v in run["params"].items()}, **(params or {})},
                             description, {"run_id": run["run_id"], "tracking_uri": run["tracking_uri"]})
        write_tags(run["run_id"], run["tracking_uri"],
                   lineage_tags(name, rec, self.registry.require()["project"]))
        return rec

    def _register(self, name: str, dataset: str | Path, service: str | None, artifact: str | None,
                  metrics: dict[str, Any] | None, params: dict[str, Any] | None, description: str,
                  mlflow: dict[str, str] | None) -> dict[str, Any]:
        """The registration itself: checks, then the new version as one registry version."""
        if not NAME_RE.match(name or ""):
            raise InvalidArgument(f"model name {name!r}: use letters, digits and _, not starting with a digit")
        path = Path(dataset).resolve()
        lineage = self.read_lineage(path)
        doc = self.registry.require()
        service = service or lineage.get("feature_service")
        if service is None:
            raise InvalidArgument(f"dataset {dataset}: it was built from a feature list, not a service; "
                                  "name the service the model reads when served with --service")
        if service not in doc["feature_services"]:
            raise UnknownObject(f"unknown feature service {service!r}; known: "
                                f"{', '.join(doc['feature_services']) or 'none'}")
        if lineage.get("project") not in (None, doc["project"]):
            raise InvalidArgument(f"dataset {dataset} was built in project {lineage['project']!r}, "
                                  f"not {doc['project']!r}")
        record = {
            "dataset": str(path), "dataset_sha256": lineage["dataset_sha256"], "service": service,
            "views": [_trained_view(v) for v in lineage["views"]],
            # features computed by functions (absent from training sets built before them: [])
            "request_views": [{k: rv[k] for k in ("name", "function", "request", "inputs", "features")}
                              for rv in lineage.get("request_views") or []],
            "training_set": {"rows": lineage.get("rows"), "built_at": lineage.get("created_at"),
                             "registry_version": lineage.get("registry_version"),
                             "entities": lineage.get("entities"), "feature_service": lineage.get("feature_service")},
            "artifact": artifact, "metrics": _pairs(metrics, "metric"), "params": _pairs(params, "param"),
            "description": description or "", "mlflow": mlflow, "stage": "none", "registered_at": _now(), "promoted_at": None,
        }

        def add(models: dict[str, Any]) -> dict[str, Any]:
            versions = models.setdefault(name, {"versions": []})["versions"]
            rec = {"version": (versions[-1]["version"] + 1) if versions else 1, **record}
            versions.append(rec)
            return rec
        return self.registry.update_models(add)

    def get(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Version ``version`` of a model (default: its newest), with its name (as ``name`` and,
        as lineage spells it, ``model``)."""
        rec = find_version(self.registry.require().get("models", {}), name, version)
        return {"name": name, "model": name, **rec}

    def promote(self, name: str, version: int, stage: str) -> dict[str, Any]:
        """Move a version to ``stage``; promoting one to production archives the one there."""
        if stage not in PROMOTE_STAGES:
            raise InvalidArgument(f"stage {stage!r}: use one of {', '.join(PROMOTE_STAGES)}")

        def move(models: dict[str, Any]) -> dict[str, Any]:
            rec = find_version(models, name, version)
            now = _now()
            if stage == "production":
                for other in models[name]["versions"]:
                    if other is not rec and other["stage"] == "production":
                        other["stage"], other["promoted_at"] = "archived", now
            rec["stage"], rec["promoted_at"] = stage, now
            return {"name": name, "model": name, **rec}
        return self.registry.update_models(move)

    def list(self) -> list[dict[str, Any]]:
        """Every model: its name, versions (newest last) and production version (or None)."""
        models = self.registry.require().get("models", {})
        return [{"name": name, "versions": m["versions"],
                 "production": next((r["version"] for r in m["versions"] if r["stage"] == "production"), None)}
                for name, m in sorted(models.items())]


def _trained_view(v: dict[str, Any]) -> dict[str, Any]:
    """A view version of a training set's lineage, as a model version records it: with its
    ``on_miss`` function and the functions that read it (``read_by``), when it has them."""
    out = {"name": v["name"], "version": v["version"], "offline_fingerprint": v.get("offline_fingerprint")}
    out |= {k: v[k] for k in ("on_miss", "read_by") if k in v}
    return out
