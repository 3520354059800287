"""The gate's arithmetic, apart from any timing: ratios from pytest-benchmark's JSON, the
verdict against benchmarks/gate.toml, and the thresholds a set of runs calibrates.

Every ratio is "higher is better", 1.0 meaning fstore costs what its floor costs:
floor time / fstore time for the micro-benchmarks, and for serving the raw server's CPU per
request / fstore's and fstore's requests/s / the raw server's. A ratio is worse than its
threshold when it is lower; the gate then fails.
"""
from __future__ import annotations

import json
import re
import statistics
import tomllib
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).resolve().parents[1] / "gate.toml"
STATISTICS = ("min", "median", "mean")
MIN_MARGIN = 0.10  # the noise margin is never taken below this share of the median ratio
_NAME = re.compile(r"^test_(?P<pair>.+)_(?P<side>fstore|floor)\[pass(?P<pass>\d+)\]$")


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    with open(path, "rb") as f:
        config = tomllib.load(f)
    if config["gate"]["statistic"] not in STATISTICS:
        raise ValueError(f"{path}: [gate] statistic must be one of {', '.join(STATISTICS)}")
    return config


def micro_ratios(bench_json: dict[str, Any], statistic: str) -> dict[str, dict[str, Any]]:
    """Per pair: the ratio floor / fstore of ``statistic`` in each pass, their median, and the
    two sides' times (seconds, median over passes). Pairs measured on one side only are left out."""
    sides: dict[str, dict[int, dict[str, float]]] = {}
    for b in bench_json["benchmarks"]:
        m = _NAME.match(b["name"])
        if m:
            sides.setdefault(m["pair"], {}).setdefault(int(m["pass"]), {})[m["side"]] = b["stats"][statistic]
    out = {}
    for pair, passes in sides.items():
        both = [p for p in sorted(passes) if len(passes[p]) == 2]
        if not both:
            continue
        values = [passes[p]["floor"] / passes[p]["fstore"] for p in both]
        out[pair] = {"ratio": statistics.median(values), "values": values,
                     "fstore_s": statistics.median(passes[p]["fstore"] for p in both),
                     "floor_s": statistics.median(passes[p]["floor"] for p in both)}
    return out


def verdicts(ratios: dict[str, float], config: dict[str, Any], complete: bool = True) -> list[dict[str, Any]]:
    """One row per measured ratio: its threshold, and ``ok`` (ratio >= threshold). A measured
    ratio without a threshold fails (a new benchmark is calibrated before it lands); with
    ``complete``, so does a configured ratio that was not measured."""
    limits = config.get("ratios", {})
    rows = []
    for name in sorted(set(ratios) | (set(limits) if complete else set())):
        limit = limits.get(name, {}).get("threshold")
        value = ratios.get(name)
        if value is None:
            problem = "not measured"
        elif limit is None:
            problem = "no threshold in gate.toml"
        else:
            problem = None if value >= limit else "below threshold"
        rows.append({"name": name, "ratio": value, "threshold": limit, "ok": problem is None, "problem": problem,
                     "what": limits.get(name, {}).get("what", "")})
    return rows


def calibrate(runs: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Thresholds from repeated gate runs (each a name -> ratio map): the median ratio minus
    the noise margin the runs showed, max - min, taken as at least MIN_MARGIN of the median."""
    out = {}
    for name in sorted(set().union(*runs)):
        values = [r[name] for r in runs if name in r]
        med, lo, hi = statistics.median(values), min(values), max(values)
        margin = max(hi - lo, MIN_MARGIN * med)
        out[name] = {"threshold": round(med - margin, 3), "median": round(med, 3), "min": round(lo, 3),
                     "max": round(hi, 3), "margin": round(margin, 3), "runs": len(values)}
    return out


def render(header: str, config: dict[str, Any], table: dict[str, dict[str, Any]], when: list[str],
           loads: list[float]) -> str:
    """gate.toml's text with the thresholds of ``table`` (``when``/``loads``: the runs' start
    times and load averages, for the reasons); ``header`` (the comments), [gate], each ratio's
    ``what`` and the ratios ``table`` does not hold (runs of ``--only`` some) are kept."""
    gate = config["gate"]
    lines = header.rstrip().splitlines()
    lines += ["", "[gate]"] + [f"{k} = {json.dumps(v)}" for k, v in gate.items() if not isinstance(v, dict)]
    for k, v in gate.items():
        if isinstance(v, dict):
            lines += ["", f"[gate.{k}]"] + [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
    span = f"{min(when)[:16]} to {max(when)[:16]} UTC, load average {min(loads):.1f}-{max(loads):.1f}"
    kept = config.get("ratios", {})
    for name in sorted(set(table) | set(kept)):
        entry = dict(kept.get(name, {}))
        if name in table:  # re-calibrated; the others keep what they had
            c = table[name]
            entry.update(threshold=c["threshold"], calibration={k: c[k] for k in ("median", "min", "max", "margin",
                                                                                  "runs")},
                         reason=(f"{c['runs']} runs ({span}): median {c['median']}, min {c['min']}, max {c['max']}; "
                                 f"threshold = median - noise margin {c['margin']} (max - min, at least "
                                 f"{MIN_MARGIN:.0%} of the median)"))
        lines += ["", f"[ratios.{name}]"]
        for key in ("what", "threshold", "reason", "calibration"):
            if key in entry:
                value = entry[key]
                lines.append(f"{key} = " + ("{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + "}"
                                            if isinstance(value, dict) else json.dumps(value)))
    return "\n".join(lines) + "\n"
