#!/usr/bin/env bash
# Set everything up on a machine with only Python 3.11+ and a C compiler, then run the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
rm -rf quickstart-repo
.venv/bin/fstore quickstart quickstart-repo "$@"
