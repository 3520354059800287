"""``fstore get`` against a running feature server (the real ``fstore serve`` in a
subprocess, 127.0.0.1 only): the same vector, and the same errors word for word, as
``fstore get`` in process.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from fstore import FeatureStore
from server_util import FSTORE, HOST, MAX_ROWS, REPO_ROOT, Server, repo_copy


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "server", {"max_rows": MAX_ROWS, "max_frame_bytes": 1 << 20})


# ---- 10. the CLI against a running server -------------------------------------------------------

@pytest.mark.timeout(60)
def test_fstore_get_against_the_server_prints_the_vector(server: Server, repo: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    args = ["get", "--service", "fraud_v1", "customer_id=1", "driver_id=7"]
    remote = subprocess.run([FSTORE, "get", "--host", HOST, "--port", str(server.port), *args[1:]], env=env,
                            capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert remote.returncode == 0, remote.stderr
    local = subprocess.run([FSTORE, "-r", str(repo), *args], env=env, capture_output=True, text=True, timeout=30)
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout
    with FeatureStore(repo) as fs:
        row = fs.get_online_features(feature_service="fraud_v1", entity_rows=[{"customer_id": 1, "driver_id": 7}]) \
            .to_rows(include_metadata=True)[0]
    for name in ("avg_amount_7d", "trips_together"):
        assert re.search(rf"{name}\s+│\s+{re.escape(repr(row[name]['value']))}\s+│\s+{row[name]['status']}",
                         remote.stdout), remote.stdout
    bad = subprocess.run([FSTORE, "get", "--host", HOST, "--port", str(server.port), "--service", "nope",
                          "customer_id=1"], env=env, capture_output=True, text=True, timeout=30)
    bad_local = subprocess.run([FSTORE, "-r", str(repo), "get", "--service", "nope", "customer_id=1"], env=env,
                               capture_output=True, text=True, timeout=30)
    # the same error, word for word, from the server as in process
    assert bad.returncode == 1 and "unknown feature service 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stderr == bad_local.stderr
