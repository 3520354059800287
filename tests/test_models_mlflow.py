"""MLflow interop against a real file-based tracking store in tmp_path (no server): register
a model version from a run through the CLI (artifact, params and metrics taken from the run,
explicit ones win), the lineage written back as the run's tags, an unknown run named with its
tracking URI, and the error without the ``mlflow`` extra."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fstore import FeatureStore
from fstore.errors import MlflowRunNotFound
from server_util import FSTORE
import test_models

ROOT = Path(__file__).resolve().parents[1]
repo = test_models.repo  # the fixture: an applied repository with a training set, train.parquet


def _env(**extra: str) -> dict[str, str]:
    """The CLI's environment: without MLFLOW_ALLOW_FILE_STORE, so fstore's own opt-in is what
    lets it open the file store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra}


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, "-r", str(root), *args], capture_output=True, text=True, timeout=120,
                          env=env or _env())


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, MlflowClient, str]:
    """A file store with one finished run: (tracking URI, client, run id)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # this process writes the run
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("fraud"))
    run_id = run.info.run_id
    for key, value in {"depth": "3", "lr": "0.1", "loss_fn": "logloss"}.items():
        client.log_param(run_id, key, value)
    client.log_metric(run_id, "auc", 0.91)
    client.log_metric(run_id, "logloss", 0.3)
    client.set_terminated(run_id)
    return uri, client, run_id


def test_register_from_a_run_takes_its_artifact_params_metrics_and_tags_it(
        repo: Path, tracking: tuple[str, MlflowClient, str]) -> None:
    uri, client, run_id = tracking
    proc = _cli(repo, "model", "register", "fraud_model", "--dataset", str(repo / "train.parquet"),
                "--mlflow-run", run_id, "--mlflow-tracking-uri", uri, "--metric", "auc=0.95", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rec = json.loads(proc.stdout)
    run = client.get_run(run_id)
    assert rec["artifact"] == run.info.artifact_uri and rec["artifact"].startswith("file://")
    assert rec["params"] == {"depth": 3, "lr": 0.1, "loss_fn": "logloss"}
    assert rec["metrics"] == {"auc": 0.95, "logloss": 0.3}  # the explicit --metric wins
    assert rec["mlflow"] == {"run_id": run_id, "tracking_uri": uri}
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("fstore.")}
    dataset = str((repo / "train.parquet").resolve())
    lineage = json.loads((repo / "train.parquet.lineage.json").read_text())
    assert tags == {"fstore.model": "fraud_model", "fstore.model_version": "1", "fstore.project": "models",
                    "fstore.registry_version": str(lineage["registry_version"]),
                    "fstore.service": "fraud_v1", "fstore.dataset": dataset,
                    "fstore.dataset_sha256": rec["dataset_sha256"], "fstore.views": "stats_v1"}

    # the tracking URI from MLFLOW_TRACKING_URI; an explicit --artifact wins; tags move to version 2
    proc = _cli(repo, "model", "register", "fraud_model", "--dataset", str(repo / "train.parquet"),
                "--mlflow-run", run_id, "--artifact", "s3://models/fraud/2", "--param", "depth=5",
                env=_env(MLFLOW_TRACKING_URI=uri))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"tagged MLflow run {run_id}" in proc.stdout
    with FeatureStore(repo) as fs:
        two = fs.models.get("fraud_model", 2)
    assert two["artifact"] == "s3://models/fraud/2" and two["params"]["depth"] == 5
    assert two["metrics"] == {"auc": 0.91, "logloss": 0.3}
    assert client.get_run(run_id).data.tags["fstore.model_version"] == "2"


def test_an_unknown_run_names_the_run_and_the_tracking_uri(
        repo: Path, tracking: tuple[str, MlflowClient, str]) -> None:
    uri, _, _ = tracking
    missing = "0" * 32
    proc = _cli(repo, "model", "register", "m", "--dataset", str(repo / "train.parquet"),
                "--mlflow-run", missing, "--mlflow-tracking-uri", uri)
    assert proc.returncode == 1
    assert missing in proc.stderr and uri in proc.stderr, proc.stderr
    with FeatureStore(repo) as fs:
        assert fs.models.list() == []  # nothing registered
        with pytest.raises(MlflowRunNotFound, match=missing) as info:
            fs.models.register("m", repo / "train.parquet", mlflow_run=missing, mlflow_tracking_uri=uri)
        assert info.value.code == "MLFLOW_RUN_NOT_FOUND" and isinstance(info.value, KeyError)


def test_without_the_extra_the_command_says_how_to_install_it(repo: Path) -> None:
    """mlflow is optional: as if not installed, the CLI names the extra and registers nothing."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["mlflow"] = None  # as if not installed
        from fstore.cli import main
        main(["-r", {str(repo)!r}, "model", "register", "m", "--dataset", {str(repo / "train.parquet")!r},
              "--mlflow-run", "abc"])
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "pip install 'fstore[mlflow]'" in proc.stderr, proc.stderr
    with FeatureStore(repo) as fs:
        assert fs.models.list() == []
