#!/usr/bin/env bash
# Set everything up on a machine with only Python 3.11+ and a C compiler, then run the test suite
# (and, when given no arguments, the benchmark gate).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench,spark]'
# Debian packages the tests use: promtool (the prometheus package) checks deploy/prometheus/alerts.yml
# (tests/test_deploy.py); redis-server is what fstore bench --redis is tested against (tests/test_bench_redis.py);
# java (a Java 17 runtime) runs the Spark engine's tests (tests/test_spark_engine.py, marked spark)
apt_install() {  # PACKAGE COMMAND: install PACKAGE unless COMMAND is there
    if ! command -v "$2" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null \
            || { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -qq --no-install-recommends "$1" >/dev/null; }
    fi
}
apt_install prometheus promtool
apt_install redis-server redis-server
apt_install openjdk-17-jre-headless java
.venv/bin/python -m pytest -q "$@"
# the full run (no arguments) ends with the benchmark gate (docs/benchmarks.md, "Benchmark gate"):
# 2-3 minutes, ratios to floors measured in the same run against benchmarks/gate.toml
if [ $# -eq 0 ]; then
    .venv/bin/python -m benchmarks.gate --json "${TMPDIR:-/tmp}/fstore-gate.json"
fi
