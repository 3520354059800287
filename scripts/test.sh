#!/usr/bin/env bash
# Set everything up on a machine with only Python 3.11+ and a C compiler, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'
# promtool (Debian's prometheus package) checks deploy/prometheus/alerts.yml (tests/test_deploy.py)
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
        || { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi
.venv/bin/python -m pytest -q "$@"
