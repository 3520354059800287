"""Run the benchmark gate, or calibrate its thresholds (docs/benchmarks.md, "Benchmark gate").

    python -m benchmarks.gate [--only read_1,serve] [--json gate.json] [--work DIR]
    python -m benchmarks.gate calibrate RUN.json RUN.json ... [--write]

The run: the pytest-benchmark suites of benchmarks/gate/bench_*.py in a pytest subprocess
(``--passes`` passes, fstore and its floor back to back), then the serving run (serving.py);
a table of every ratio against its threshold in benchmarks/gate.toml; ``--json`` writes it all.
Exit 0: every ratio at or above its threshold; 1: one below (or one without a threshold);
2: a benchmark could not run. Ratios only: no absolute time is compared with anything.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fstore.online.service import SLOWDOWN_ENV

from .ratios import CONFIG, calibrate, load_config, micro_ratios, render, verdicts
from .serving import PAIRS as SERVING_PAIRS

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _selected(name: str, only: list[str] | None) -> bool:
    return only is None or any(name == o or name.startswith(o + "_") for o in only)


def run_micro(args: argparse.Namespace, gate: dict[str, Any], work: Path, pairs: list[str] | None) -> dict[str, Any]:
    """The suites in a pytest subprocess; its pytest-benchmark JSON, or SystemExit(2) if it failed."""
    out = work / "pytest-benchmark.json"
    cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", "-o", "python_files=bench_*.py",
           "-o", "addopts=", f"--gate-work={work}", f"--gate-passes={args.passes or gate['passes']}",
           f"--benchmark-max-time={args.max_time or gate['max_time']}", "--benchmark-min-rounds=5",
           f"--benchmark-timer={gate['timer']}", f"--benchmark-min-time={gate['min_time']}",
           "--benchmark-warmup=on", "--benchmark-warmup-iterations=200", f"--benchmark-json={out}"]
    if pairs is not None:
        cmd += ["-k", " or ".join(f"test_{p}_fstore or test_{p}_floor" for p in pairs)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    if args.verbose or proc.returncode != 0:
        print(proc.stdout[-20000:], proc.stderr[-5000:], sep="\n", file=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"gate: the benchmark suites failed (pytest exit {proc.returncode}); output above")
    return json.loads(out.read_text())


def micro_pairs() -> list[str]:
    """Every micro-benchmark pair, from the suites' test names (test_<pair>_fstore)."""
    import ast

    names = []
    for path in sorted(HERE.glob("bench_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and node.name.endswith("_fstore"):
                names.append(node.name[len("test_"):-len("_fstore")])
    return names


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Benchmark gate: ratios to the floor measured in the same run (higher is better; "
                    f"fails below the threshold of {Path(result['config']).name})")
    for col in ("ratio", "what", "fstore", "floor", "per pass / round", "ratio (median)", "threshold", "verdict"):
        t.add_column(col, justify="left" if col in ("ratio", "what", "verdict") else "right")
    micro, serving = result["micro"], result.get("serving") or {}
    for row in result["verdicts"]:
        name, fstore, floor, values = row["name"], "", "", []
        if name in micro:
            fstore, floor = f"{micro[name]['fstore_s'] * 1e6:,.1f} us", f"{micro[name]['floor_s'] * 1e6:,.1f} us"
            values = micro[name]["values"]
        elif name in serving.get("values", {}):
            field, unit = ("server_cpu_us", "us/req") if name.endswith("cpu") else ("rps", "req/s")
            fstore, floor = (f"{statistics.median(r[side][field] for r in serving['per_round']):,.1f} {unit}"
                             for side in ("fstore", "raw"))
            values = serving["values"][name]
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        limit = "-" if row["threshold"] is None else f"{row['threshold']:.3f}"
        verdict = "[green]ok[/green]" if row["ok"] else f"[red bold]FAIL[/red bold] ({row['problem']})"
        t.add_row(name, row["what"], fstore, floor, " ".join(f"{v:.2f}" for v in values), ratio, limit, verdict)
    Console(width=200).print(t)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    gate = config["gate"]
    only = [o.strip() for o in args.only.split(",") if o.strip()] if args.only else None
    pairs = [p for p in micro_pairs() if _selected(p, only)]
    serve = not args.no_serving and any(_selected(p, only) for p in SERVING_PAIRS)
    started = time.time()
    result: dict[str, Any] = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "config": str(args.config), "loadavg_start": os.getloadavg(),
                              "slowdown_us": os.environ.get(SLOWDOWN_ENV), "micro": {}, "serving": None}
    with tempfile.TemporaryDirectory(prefix="fstore-gate-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        statistic = gate["statistic"]
        if pairs:
            result["micro"] = micro_ratios(run_micro(args, gate, work, None if only is None else pairs), statistic)
        if serve:
            from . import data, serving

            try:
                result["serving"] = serving.run(data.online(work), work, gate["serving"])
            except (RuntimeError, OSError) as exc:
                raise SystemExit(f"gate: the serving run failed: {exc}") from None
    ratios = {name: m["ratio"] for name, m in result["micro"].items()}
    if result["serving"]:
        ratios.update(result["serving"]["ratios"])
    measured_all = only is None and serve
    result.update(statistic=statistic, ratios=ratios, verdicts=verdicts(ratios, config, complete=measured_all),
                  seconds=round(time.time() - started, 1), loadavg_end=os.getloadavg())
    result["ok"] = all(v["ok"] for v in result["verdicts"])
    print_table(result)
    failed = sum(not v["ok"] for v in result["verdicts"])
    print(f"gate: {'passed' if result['ok'] else 'FAILED'} in {result['seconds']:.0f} s "
          f"(load average {result['loadavg_start'][0]:.1f} -> {result['loadavg_end'][0]:.1f})")
    print(f"gate: {len(result['verdicts']) - failed} passed, {failed} failed")  # the closing line CI reads
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


def run_calibrate(args: argparse.Namespace) -> int:
    runs = [json.loads(p.read_text()) for p in args.runs]
    if any(r.get("slowdown_us") for r in runs):
        raise SystemExit("calibrate: a run had the deliberate slowdown set; leave it out")
    table = calibrate([r["ratios"] for r in runs])
    config = load_config(args.config)
    header = args.config.read_text().split("\n[gate]")[0]
    text = render(header, config, table, [r["started"] for r in runs], [r["loadavg_start"][0] for r in runs])
    if args.write:
        args.config.write_text(text)
        print(f"wrote {args.config}")
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calibrate"]:
        p = argparse.ArgumentParser(prog="python -m benchmarks.gate calibrate",
                                    description="thresholds from repeated gate runs (their --json files)")
        p.add_argument("runs", nargs="+", type=Path)
        p.add_argument("--config", type=Path, default=CONFIG)
        p.add_argument("--write", action="store_true", help="rewrite the config instead of printing it")
        return run_calibrate(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated ratio names or prefixes (e.g. read_1,serve); default: all")
    p.add_argument("--passes", type=int, help="passes over the micro-benchmarks (default: gate.toml)")
    p.add_argument("--max-time", type=float, help="seconds per micro-benchmark per pass (default: gate.toml)")
    p.add_argument("--no-serving", action="store_true", help="skip the serving run")
    p.add_argument("--work", type=Path, help="keep (and reuse) the generated data in this folder")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("-v", "--verbose", action="store_true", help="show the pytest output")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
