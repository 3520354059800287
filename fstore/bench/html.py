"""The ``fstore bench --html`` page: one self-contained file (inline CSS and SVG, no script,
nothing fetched) with the run's figures, its latency over time (p50 and p99 of each second,
and the requests answered in it) and its percentile distribution (latency against 1/(1-q)
on a log scale, as HdrHistogram plots it, so the tail is as wide as the median).
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from .._ext._hdr import SUB_BITS, percentile
from ..files import write_atomic
from .result import BenchResult

WIDTH, HEIGHT, LEFT, BOTTOM = 760, 260, 60, 30
COLORS = {"p50": "#4c78a8", "p99": "#e45756", "requests": "#72b7b2", "curve": "#4c78a8", "sla": "#c62828"}
CURVE_Q = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}
.met{color:#2e7d32;font-weight:bold}.missed{color:#c62828;font-weight:bold}svg text{font-size:10px}"""


def _axes(y_max: float, y_label: str, x_ticks: list[tuple[float, str]], x_max: float) -> list[str]:
    """The frame, the y axis (0..y_max) and the x ticks of a plot."""
    out = [f'<line x1="{LEFT}" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#888"/>',
           f'<line x1="{LEFT}" y1="0" x2="{LEFT}" y2="{HEIGHT}" stroke="#888"/>',
           f'<text x="2" y="12">{html.escape(y_label)}</text>']
    for i in range(1, 5):
        v = y_max * i / 4
        y = HEIGHT - HEIGHT * i / 4 + 10
        out.append(f'<text x="2" y="{y:.0f}">{v:.3g}</text>'
                   f'<line x1="{LEFT}" y1="{y - 10:.0f}" x2="{WIDTH}" y2="{y - 10:.0f}" stroke="#eee"/>')
    for x, label in x_ticks:
        px = LEFT + (WIDTH - LEFT) * x / (x_max or 1)
        out.append(f'<text x="{px:.0f}" y="{HEIGHT + 14}" text-anchor="middle">{html.escape(label)}</text>')
    return out


def _line(points: list[tuple[float, float]], x_max: float, y_max: float, color: str, name: str) -> str:
    xy = " ".join(f"{LEFT + (WIDTH - LEFT) * x / (x_max or 1):.1f},{HEIGHT - (HEIGHT - 15) * y / (y_max or 1):.1f}"
                  for x, y in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{xy}"><title>{name}</title></polyline>'


def _svg(parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH + 10}" height="{HEIGHT + BOTTOM}" '
            f'role="img">' + "".join(parts) + "</svg>")


def svg_timeline(result: BenchResult) -> str:
    """p50 and p99 (ms) of each second of the measured window, and its requests/s (scaled)."""
    rows = [r for r in result.timeline() if r["requests"]]
    if not rows:
        return "<p>No successful request: nothing to draw.</p>"
    x_max = max(r["second"] for r in rows) + 1
    y_max = max(r["p99_us"] for r in rows) / 1e3 * 1.1
    top_rps = max(r["requests"] for r in rows)
    parts = _axes(y_max, "ms", [(s, f"{s} s") for s in range(0, x_max + 1, max(1, x_max // 10))], x_max)
    parts.append(_line([(r["second"] + 0.5, r["requests"] / top_rps * y_max) for r in rows], x_max, y_max,
                       COLORS["requests"], f"requests per second (peak {top_rps:,})"))
    for key in ("p50", "p99"):
        parts.append(_line([(r["second"] + 0.5, r[f"{key}_us"] / 1e3) for r in rows], x_max, y_max, COLORS[key], key))
    if result.sla.p99_ms is not None and result.sla.p99_ms <= y_max:
        y = HEIGHT - (HEIGHT - 15) * result.sla.p99_ms / y_max
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}" stroke="{COLORS["sla"]}" '
                     f'stroke-dasharray="4 3"><title>SLA p99 {result.sla.p99_ms:g} ms</title></line>')
    return _svg(parts)


def svg_percentiles(result: BenchResult) -> str:
    """Latency (ms) against the percentile, x = log10(1 / (1 - q))."""
    if not result.raw.ok:
        return "<p>No successful request: nothing to draw.</p>"
    qs = [q for q in CURVE_Q if q == 0 or 1 / (1 - q) <= result.raw.ok]
    points = [(math.log10(1 / (1 - q)), percentile(result.raw.hist, max(q, 1e-9), SUB_BITS) / 1e6) for q in qs]
    x_end = points[-1][0] + 0.5
    points.append((x_end, result.raw.max_ns / 1e6))
    y_max = max(y for _, y in points) * 1.1
    ticks = [(math.log10(1 / (1 - q)), f"{q * 100:g}%") for q in (0.0, 0.9, 0.99, 0.999, 0.9999, 0.99999)
             if math.log10(1 / (1 - q)) < x_end] + [(x_end, "max")]
    return _svg(_axes(y_max, "ms", ticks, x_end) + [_line(points, x_end, y_max, COLORS["curve"], "latency")])


def render_html(result: BenchResult) -> str:
    doc = result.to_json()
    lat = doc["latency_us"]
    sla = doc["sla"]
    verdict = ("none set" if sla["met"] is None else
               '<span class="met">met</span>' if sla["met"] else
               f'<span class="missed">missed</span>: {html.escape("; ".join(sla["missed"]))}')
    rows: list[tuple[str, Any]] = [
        ("target", f"{doc['system']} at {doc['target']}"),
        ("request", doc["service"] or doc["model"] or ", ".join(doc["features"] or [])),
        ("load", f"{doc['loop']} loop" + (f" at {doc['rate']:,.0f} req/s" if doc["rate"] else "") +
         f", {doc['connections']} connections, {doc['entities_per_request']} entity row(s) per request"),
        ("measured", f"{doc['duration_s']} s after {doc['warmup_s']} s of warm-up"),
        ("throughput", f"{doc['rps']:,.0f} req/s, {doc['rows_per_s']:,.0f} rows/s ({doc['requests']:,} requests)"),
        ("latency (ms)", "  ".join(f"{k} {'-' if v is None else f'{v / 1e3:.3f}'}" for k, v in lat.items())),
        ("errors", ", ".join(f"{k} {v:,}" for k, v in doc["errors"].items()) or "none"),
        ("statuses", ", ".join(f"{k} {v:,}" for k, v in doc["statuses"].items() if v) or "none"),
        ("server CPU per request", "unknown" if doc["server_cpu_us_per_request"] is None
         else f"{doc['server_cpu_us_per_request']} us"),
        ("generator", f"{doc['generator']}, {doc['generator_cpu_us_per_request']} us CPU per request"),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    table += f"<tr><th>SLA</th><td>{verdict}</td></tr>"
    notes = "".join(f"<p>Note: {html.escape(n)}</p>" for n in doc["notes"])
    legend = " ".join(f'<span style="color:{COLORS[k]}">&#9632; {k}</span>' for k in ("p50", "p99", "requests"))
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>fstore bench: {html.escape(doc["target"])}'
            f'</title><style>{_CSS}</style></head><body><h1>fstore bench: {html.escape(doc["system"])} at '
            f'{html.escape(doc["target"])}</h1><table>{table}</table>{notes}'
            f'<h2>Latency over time</h2><p>{legend} (requests per second scaled to the plot; a dashed line '
            f'is the SLA)</p>{svg_timeline(result)}'
            f'<h2>Latency by percentile</h2>{svg_percentiles(result)}</body></html>')


def write_html(result: BenchResult, path: str | Path) -> Path:
    """Write the page atomically; returns its path."""
    out = Path(path)
    write_atomic(out, render_html(result).encode())
    return out
