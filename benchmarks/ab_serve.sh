#!/usr/bin/env bash
# A/B of fstore serve builds beside Redis, alternating rounds (docs/benchmarks.md, issue 13 part 2).
# usage: benchmarks/ab_serve.sh OUTDIR ROUNDS "ENTITIES CONNECTIONS ..." [--metrics] TREE...
# Each TREE is a checkout with built extensions (PYTHONPATH); "redis" runs redis-server.
# Server on core 0, load generator on core 1; one JSON report per run in OUTDIR.
# Defaults are of the checkout this script sits in (HERE): REPO (the bench repository) is
# HERE/bench-data/loadgen/repo, made by `python benchmarks/bench_loadgen.py --keep bench-data/loadgen`;
# PY (the bin folder with python and fstore) is HERE/.venv/bin; Redis is driven by HERE's fstore bench.
set -u
out=$1; rounds=$2; shapes=$3; shift 3
metrics=""; if [ "${1:-}" = "--metrics" ]; then metrics=1; shift; fi
here=$(cd "$(dirname "$0")/.." && pwd)
repo=${REPO:-$here/bench-data/loadgen/repo}; py=${PY:-$here/.venv/bin}
[ -x "$py/fstore" ] || { echo "ab_serve.sh: no fstore in $py: set PY to the bin folder of a venv with fstore" >&2; exit 1; }
[ -d "$repo" ] || { echo "ab_serve.sh: no bench repository at $repo: make it with python benchmarks/bench_loadgen.py --keep $here/bench-data/loadgen, or set REPO" >&2; exit 1; }
mkdir -p "$out"; out=$(cd "$out" && pwd); cd "$repo" || exit 1
port=$((40000 + RANDOM % 20000))
for r in $(seq "$rounds"); do
  for tree in "$@"; do
    port=$((port + 3)); tag=$(basename "$tree")
    if [ "$tree" = redis ]; then
      taskset -c 0 redis-server --port $port --save "" --appendonly no >/dev/null 2>&1 & pid=$!
      target=(--redis 127.0.0.1:$port); pp=$here
    else
      PYTHONPATH=$tree taskset -c 0 $py/fstore -r . serve --port $port ${metrics:+--metrics-port $((port + 1))} \
        >>"$out/serve-$tag.log" 2>&1 & pid=$!
      target=(--port $port); pp=$tree
    fi
    for _ in $(seq 150); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
    for shape in $shapes; do
      e=${shape%x*}; c=${shape#*x}
      PYTHONPATH=$pp taskset -c 1 $py/fstore -r . bench "${target[@]}" --features events --entities $e \
        --connections $c --duration ${DURATION:-5} --warmup 1 --json >"$out/$tag-e$e-c$c-r$r.json" 2>/dev/null
    done
    kill $pid; wait $pid 2>/dev/null
  done
done
