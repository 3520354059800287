"""The medians of benchmarks/ab_serve.sh's JSON reports: one row per system and shape."""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

runs = defaultdict(list)
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    tag, e, c, _r = f.stem.rsplit("-", 3)
    try:
        d = json.loads(f.read_text())
    except ValueError:
        continue
    runs[(e, c, tag)].append(d)
print(f"{'shape':10} {'system':12} {'n':>2} {'req/s':>9} {'rows/s':>10} {'p50 us':>8} {'p99 us':>8} {'cpu us/req':>10}")
for (e, c, tag), ds in sorted(runs.items()):
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    cpu = [d["server_cpu_us_per_request"] for d in ds if d.get("server_cpu_us_per_request") is not None]
    print(f"{e + '/' + c:10} {tag:12} {len(ds):2} {med([d['rps'] for d in ds]):9.0f} "
          f"{med([d['rows_per_s'] for d in ds]):10.0f} {med([d['latency_us']['p50'] for d in ds]):8.0f} "
          f"{med([d['latency_us']['p99'] for d in ds]):8.0f} {med(cpu):10.1f}")
