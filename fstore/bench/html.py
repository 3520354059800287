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

WIDTH, HEIGHT = 760, 240                 # the plot area
LEFT, RIGHT, TOP, BOTTOM = 60, 40, 24, 30  # margins: y labels, the last x label, the unit, x labels
COLORS = {"p50": "#4c78a8", "p99": "#e45756", "requests": "#b6dcd9", "curve": "#4c78a8", "sla": "#c62828"}
CURVE_Q = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}
.met{color:#2e7d32;font-weight:bold}.missed{color:#c62828;font-weight:bold}svg text{font-size:10px}"""


class _Plot:
    """One SVG plot: x in [0, x_max] and y in [0, y_max] mapped onto the plot area."""

    def __init__(self, x_max: float, y_max: float, unit: str) -> None:
        self.x_max, self.y_max = x_max or 1.0, y_max or 1.0
        self.parts = [f'<text x="{LEFT - 4}" y="{TOP - 10}" text-anchor="end">{html.escape(unit)}</text>',
                      f'<line x1="{LEFT}" y1="{TOP + HEIGHT}" x2="{LEFT + WIDTH}" y2="{TOP + HEIGHT}" stroke="#888"/>',
                      f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + HEIGHT}" stroke="#888"/>']
        for i in range(1, 5):
            v = self.y_max * i / 4
            y = self.y(v)
            self.parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + WIDTH}" y2="{y:.1f}" stroke="#eee"/>'
                              f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{v:.3g}</text>')

    def x(self, v: float) -> float:
        return LEFT + WIDTH * v / self.x_max

    def y(self, v: float) -> float:
        return TOP + HEIGHT - HEIGHT * min(v, self.y_max) / self.y_max

    def x_tick(self, v: float, label: str) -> None:
        self.parts.append(f'<line x1="{self.x(v):.1f}" y1="{TOP + HEIGHT}" x2="{self.x(v):.1f}" '
                          f'y2="{TOP + HEIGHT + 4}" stroke="#888"/><text x="{self.x(v):.1f}" '
                          f'y="{TOP + HEIGHT + 16}" text-anchor="middle">{html.escape(label)}</text>')

    def line(self, points: list[tuple[float, float]], color: str, name: str) -> None:
        """A polyline with a dot at each point (a one-point series still shows)."""
        xy = " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in points)
        self.parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{xy}"/>')
        self.parts.extend(f'<circle cx="{self.x(a):.1f}" cy="{self.y(b):.1f}" r="2.5" fill="{color}">'
                          f'<title>{html.escape(name)}: {b:.4g}</title></circle>' for a, b in points)

    def bar(self, x0: float, x1: float, height: float, color: str, title: str) -> None:
        y = self.y(height)
        self.parts.append(f'<rect x="{self.x(x0):.1f}" y="{y:.1f}" width="{self.x(x1) - self.x(x0):.1f}" '
                          f'height="{TOP + HEIGHT - y:.1f}" fill="{color}"><title>{html.escape(title)}</title></rect>')

    def hline(self, v: float, color: str, title: str) -> None:
        self.parts.append(f'<line x1="{LEFT}" y1="{self.y(v):.1f}" x2="{LEFT + WIDTH}" y2="{self.y(v):.1f}" '
                          f'stroke="{color}" stroke-dasharray="4 3"><title>{html.escape(title)}</title></line>')

    def svg(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + RIGHT}" '
                f'height="{TOP + HEIGHT + BOTTOM}" role="img">' + "".join(self.parts) + "</svg>")


def svg_timeline(result: BenchResult) -> str:
    """Per second of the measured window: its requests (bars, scaled to the plot) and the p50 and
    p99 (ms) of its replies, with the SLA's p99 bound dashed."""
    rows = result.timeline()
    if not any(r["requests"] for r in rows):
        return "<p>No successful request: nothing to draw.</p>"
    top_rps = max(r["requests"] for r in rows)
    y_max = max(max(r["p99_us"] or 0 for r in rows) / 1e3, result.sla.p99_ms or 0) * 1.15
    plot = _Plot(len(rows), y_max, "ms")
    for r in rows:
        plot.bar(r["second"] + 0.1, r["second"] + 0.9, r["requests"] / top_rps * y_max * 0.9, COLORS["requests"],
                 f"second {r['second']}: {r['requests']:,} requests")
    for s in range(0, len(rows) + 1, max(1, len(rows) // 10)):
        plot.x_tick(s, f"{s} s")
    for key in ("p50", "p99"):
        plot.line([(r["second"] + 0.5, r[f"{key}_us"] / 1e3) for r in rows if r["requests"]], COLORS[key], key)
    if result.sla.p99_ms is not None:
        plot.hline(result.sla.p99_ms, COLORS["sla"], f"SLA: p99 <= {result.sla.p99_ms:g} ms")
    return plot.svg()


def svg_percentiles(result: BenchResult) -> str:
    """Latency (ms) against the percentile, x = log10(1 / (1 - q)), ending at the max."""
    if not result.raw.ok:
        return "<p>No successful request: nothing to draw.</p>"
    qs = [q for q in CURVE_Q if 1 / (1 - q) <= result.raw.ok]
    points = [(math.log10(1 / (1 - q)), percentile(result.raw.hist, max(q, 1e-9), SUB_BITS) / 1e6) for q in qs]
    x_end = points[-1][0] + 0.5
    points.append((x_end, result.raw.max_ns / 1e6))
    plot = _Plot(x_end, max(max(y for _, y in points), result.sla.p99_ms or 0) * 1.1, "ms")
    for q in (0.0, 0.9, 0.99, 0.999, 0.9999, 0.99999):
        if math.log10(1 / (1 - q)) < x_end - 0.25:
            plot.x_tick(math.log10(1 / (1 - q)), f"{q * 100:g}%")
    plot.x_tick(x_end, "max")
    plot.line(points, COLORS["curve"], "latency (ms)")
    if result.sla.p99_ms is not None:
        plot.hline(result.sla.p99_ms, COLORS["sla"], f"SLA: p99 <= {result.sla.p99_ms:g} ms")
    return plot.svg()


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
    legend += f' <span style="color:{COLORS["sla"]}">- - SLA p99</span>' if result.sla.p99_ms is not None else ""
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>fstore bench: {html.escape(doc["target"])}'
            f'</title><style>{_CSS}</style></head><body><h1>fstore bench: {html.escape(doc["system"])} at '
            f'{html.escape(doc["target"])}</h1><table>{table}</table>{notes}'
            f'<h2>Latency over time</h2><p>{legend} (each second of the measured window: its replies\' p50 '
            f'and p99, and how many there were, scaled to the plot)</p>{svg_timeline(result)}'
            f'<h2>Latency by percentile</h2>{svg_percentiles(result)}</body></html>')


def write_html(result: BenchResult, path: str | Path) -> Path:
    """Write the page atomically; returns its path."""
    out = Path(path)
    write_atomic(out, render_html(result).encode())
    return out
