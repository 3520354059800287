"""The ``fstore drift --html`` report: one self-contained page (inline CSS and SVG, no
script, nothing fetched), with per feature its level, PSI, null rates, statistics and the
reference and current shares of each bin side by side.

A categorical feature with many categories draws its MAX_BARS largest reference
categories, the unseen bin, and one bar for the rest; its PSI is over every bin.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic
from .drift import DriftResult, FeatureDrift
from .psi import Histogram, shares

MAX_BARS = 30
WIDTH, HEIGHT, PAD = 720, 220, 40
COLORS = {"ref": "#4c78a8", "cur": "#f58518", "ok": "#2e7d32", "warn": "#b26a00", "alert": "#c62828"}

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}
.feature{margin:2em 0;padding-top:1em;border-top:2px solid #ccc}.level{font-weight:bold}
.ok{color:#2e7d32}.warn{color:#b26a00}.alert{color:#c62828}svg text{font-size:10px}"""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _bars(hist: Histogram) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels and both sides' shares of the bins to draw (the largest, the rest folded)."""
    if not len(hist.labels):
        return [], np.zeros(0), np.zeros(0)
    ref = shares(hist.ref) if hist.ref.sum() else np.zeros(len(hist.ref))
    cur = shares(hist.cur) if hist.cur.sum() else np.zeros(len(hist.cur))
    labels = list(hist.labels)
    if len(labels) <= MAX_BARS + 1:
        return labels, ref, cur
    top = np.argsort(-hist.ref[:-1], kind="stable")[:MAX_BARS]
    rest = np.setdiff1d(np.arange(len(labels) - 1), top)
    keep = [*top, len(labels) - 1]
    return ([labels[i] for i in keep] + [f"({len(rest)} others)"],
            np.append(ref[keep], ref[rest].sum()), np.append(cur[keep], cur[rest].sum()))


def svg_histogram(hist: Histogram) -> str:
    """Grouped bars: each bin's reference share (blue) and current share (orange)."""
    labels, ref, cur = _bars(hist)
    if not labels:
        return "<p>No reference values: nothing to draw.</p>"
    top = max(float(ref.max()), float(cur.max()), 1e-9)
    slot = (WIDTH - PAD) / len(labels)
    bar = max(slot * 0.4, 1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT + 60}" role="img">',
             f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#888"/>',
             f'<text x="0" y="12">{top:.3g}</text><text x="0" y="{HEIGHT}">0</text>']
    for i, label in enumerate(labels):
        x = PAD + i * slot
        for j, (side, share) in enumerate((("ref", ref[i]), ("cur", cur[i]))):
            h = (HEIGHT - 15) * float(share) / top
            parts.append(f'<rect x="{x + j * bar:.1f}" y="{HEIGHT - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[side]}"><title>{html.escape(label)} {side}: {float(share):.4f}'
                         f'</title></rect>')
        parts.append(f'<text transform="translate({x + bar:.1f},{HEIGHT + 8}) rotate(45)">'
                     f'{html.escape(label[:24])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _feature_section(f: FeatureDrift) -> str:
    e = f.entry
    rows = [("level", f'<span class="level {e["level"]}">{e["level"]}</span>'), ("PSI", _fmt(e["psi"])),
            ("null rate (reference / current)", f'{_fmt(e["null_rate_ref"])} / {_fmt(e["null_rate_cur"])}'),
            ("rows (reference / current)", f'{e["rows_ref"]} / {e["rows_cur"]}'),
            ("thresholds", html.escape(", ".join(f"{k}={_fmt(v)}" for k, v in e["thresholds"].items())))]
    for stat in ("mean", "std", "min", "max"):
        if f"{stat}_ref" in e:
            rows.append((stat + " (reference / current)", f'{_fmt(e[stat + "_ref"])} / {_fmt(e[stat + "_cur"])}'))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f'<div class="feature"><h2>{html.escape(e["feature"])} <small>({html.escape(str(e["view"]))}, '
            f'{e["dtype"]})</small></h2><table>{table}</table>{svg_histogram(f.histogram)}</div>')


def render_html(result: DriftResult) -> str:
    """The whole page."""
    def side(d: dict[str, Any]) -> str:
        return html.escape(", ".join(f"{k}={_fmt(v)}" for k, v in d.items()))

    summary = "".join(f'<tr><td>{html.escape(f.entry["feature"])}</td><td>{_fmt(f.entry["psi"])}</td>'
                      f'<td class="{f.entry["level"]}">{f.entry["level"]}</td></tr>' for f in result.features)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>fstore drift: '
            f'{html.escape(result.service)}</title><style>{_CSS}</style></head><body>'
            f'<h1>Drift of feature service {html.escape(result.service)}: '
            f'<span class="{result.level}">{result.level}</span></h1>'
            f'<p>Reference: {side(result.reference)}<br>Current: {side(result.current)}</p>'
            f'<p><span style="color:{COLORS["ref"]}">&#9632; reference</span> '
            f'<span style="color:{COLORS["cur"]}">&#9632; current</span> (share of non-null values per bin)</p>'
            f'<table><tr><th>feature</th><th>PSI</th><th>level</th></tr>{summary}</table>'
            + "".join(_feature_section(f) for f in result.features) + "</body></html>")


def write_html(result: DriftResult, path: str | Path) -> Path:
    """Write the report atomically; returns its path."""
    out = Path(path)
    write_atomic(out, render_html(result).encode())
    return out
