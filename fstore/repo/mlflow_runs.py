"""MLflow interop (the ``mlflow`` extra): read a run for ``fs.models.register(mlflow_run=...)``
and write fstore's lineage back to it as tags.

mlflow is imported here, lazily, so fstore works without it; a call that needs it says how
to install it. MLflow 3 keeps its file store (``file://`` or a plain path) in maintenance
mode behind ``MLFLOW_ALLOW_FILE_STORE``: pointing fstore at one opts in, unless the
variable is set already (so ``MLFLOW_ALLOW_FILE_STORE=false`` still refuses it).
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidArgument, MissingDependency, MlflowRunNotFound
from .names import versioned_name

#: the tag prefix of the lineage written back to a run
TAG_PREFIX = "fstore."


def _client(tracking_uri: str | None) -> tuple[Any, str]:
    """An MlflowClient and the tracking URI it talks to (the argument, else
    MLFLOW_TRACKING_URI, else mlflow's default)."""
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MissingDependency("registering a model from an MLflow run needs mlflow, which is not "
                                f"installed ({exc}): pip install 'fstore[mlflow]'") from None
    uri = tracking_uri or mlflow.get_tracking_uri()
    if "://" not in uri or uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri), uri


def read_run(run_id: str, tracking_uri: str | None) -> dict[str, Any]:
    """``{"run_id", "tracking_uri", "artifact", "params", "metrics"}`` of an MLflow run (params
    are strings, as MLflow keeps them); MlflowRunNotFound names the run and the tracking URI."""
    client, uri = _client(tracking_uri)
    from mlflow.exceptions import MlflowException  # after _client: mlflow is installed
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise MlflowRunNotFound(f"MLflow run {run_id!r} not found at tracking URI {uri}") from None
        raise InvalidArgument(f"MLflow run {run_id!r} at tracking URI {uri}: {exc.message}") from None
    return {"run_id": run.info.run_id, "tracking_uri": uri, "artifact": run.info.artifact_uri,
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics)}


def lineage_tags(name: str, record: dict[str, Any], project: str) -> dict[str, str]:
    """The tags fstore writes to the run a model version was registered from."""
    ts = record["training_set"]
    return {f"{TAG_PREFIX}{k}": str(v) for k, v in {
        "model": name, "model_version": record["version"], "project": project,
        "registry_version": ts.get("registry_version"), "service": record["service"],
        "dataset": record["dataset"], "dataset_sha256": record["dataset_sha256"],
        "views": ",".join(versioned_name(v["name"], v["version"]) for v in record["views"]),
        **({"request_views": ",".join(f"{rv['name']}={rv['function']['function']}@"
                                      f"{rv['function'].get('source_sha256', '')[:12]}"
                                      for rv in record["request_views"])} if record.get("request_views") else {}),
    }.items()}


def write_tags(run_id: str, tracking_uri: str, tags: dict[str, str]) -> None:
    """Set ``tags`` on the run (MLflow tags are strings; an existing tag is overwritten)."""
    client, _ = _client(tracking_uri)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
