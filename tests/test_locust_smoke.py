"""The Locust load test runs headless for a few seconds against a real server, with no failures."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fstore.client import wait_until_ready

BIN = Path(sys.executable).parent
LOCUSTFILE = Path(__file__).resolve().parents[1] / "loadtests" / "locustfile.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_locust_headless_smoke(tmp_path):
    # locust (the bench extra scripts/test.sh installs) runs in its own process: importing it here
    # would have gevent patch ssl after this process imported it (a RecursionError in urllib3)
    assert (BIN / "locust").exists(), "locust is not installed: pip install -e '.[bench]'"
    repo = tmp_path / "repo"
    subprocess.run([BIN / "fstore", "quickstart", str(repo), "--customers", "200", "--days", "5"], check=True,
                   capture_output=True, timeout=120)
    port = free_port()
    server = subprocess.Popen([BIN / "fstore", "-r", str(repo), "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_ready("127.0.0.1", port, timeout=30)
        proc = subprocess.run(
            [BIN / "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "4", "-r", "4", "-t", "3s",
             "--fstore-port", str(port), "--fstore-entities", "200", "--fstore-batch", "20",
             "--fstore-push-view", "customer_stats", "--only-summary"],
            capture_output=True, text=True, timeout=90, env={**os.environ, "PYTHONPATH": ""})
        assert proc.returncode == 0, proc.stderr[-2000:]
        # the summary table: "fstore   GET 1   861   0(0.00%) | ..." and "Aggregated   1114   0(0.00%)"
        out = proc.stdout + proc.stderr
        counts = {m[1].strip(): (int(m[2]), int(m[3])) for m in
                  re.finditer(r"^(?:fstore)?\s+(GET 1|GET 20|PUSH 1|Aggregated)\s+(\d+)\s+(\d+)\(", out, re.M)}
        assert set(counts) == {"GET 1", "GET 20", "PUSH 1", "Aggregated"}, out[-3000:]
        assert counts["Aggregated"][0] > 50
        assert counts["Aggregated"][1] == 0, out[-3000:]
        assert server.poll() is None
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    assert server.returncode == 0, server.stderr.read().decode()[-2000:]
