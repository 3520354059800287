"""What the ``fstore`` command prints: the consoles and the printers of plans, records and writes.

Everything printed is text, never markup: names, messages and descriptions are escaped, so
``features[x]`` or ``[EUR]`` print as written. Piped output takes the width it needs, so a
name is never cut or wrapped; a terminal folds what does not fit rather than cutting it.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .times import format_duration, from_us
from .repo.definitions import AS_OF_EVENT
from .repo.request_time import on_miss_info, request_view_info

console = Console()
if not console.is_terminal:  # piped: lines as long as they need, so no name is ever cut or wrapped
    console = Console(width=10_000)
err_console = Console(stderr=True)
if not err_console.is_terminal:  # an error message stays one line in a log
    err_console = Console(stderr=True, width=10_000)

#: how a registry section names one of its objects in a plan
_KIND_LABEL = {"entities": "entity", "sources": "source", "feature_views": "feature view",
               "feature_services": "feature service"}


def print_plan(p: Any) -> None:
    """A plan: its warnings, each change with its changed fields, and the effects on reads."""
    for warning in p.warnings:
        console.print(f"warning: {warning}", highlight=False, markup=False)
    for line in getattr(p, "ingest", []):  # views with a transformation: incremental or full
        console.print(f"ingest {line}", highlight=False, markup=False, soft_wrap=True)
    changes = [c for c in p.changes if c.action != "keep"]
    if not changes:
        console.print(f"no changes (registry version {p.current_version})")
        return
    marks = {"add": "[green]+[/green]", "remove": "[red]-[/red]", "change": "[yellow]~[/yellow]"}
    for c in changes:
        console.print(f"{marks[c.action]} {_KIND_LABEL.get(c.kind, c.kind)} {c.name}")
        for d in c.details:
            console.print(f"    {d}", highlight=False, markup=False)
    for effect in p.effects:
        console.print(f"! {effect}", highlight=False, markup=False)
    for impact in getattr(p, "impacts", []):  # changes a production model reads (fstore.repo.impact)
        console.print(f"{'!!' if impact.breaking else '!'} model impact: {impact.message}", highlight=False,
                      markup=False, soft_wrap=True)


def when(iso: str | None) -> str:
    """An ISO 8601 UTC time to the second, for a table ('never' when it never happened)."""
    return "never" if iso is None else iso[:19].replace("T", " ") + "Z"


def view_doc(view: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """A view's definition summary and its state (fstore.online.status), as --json prints it."""
    return {**state, "entities": view["entities"], "join_keys": view["join_keys"], "source": view["source"],
            "online": view["online"], "owner": view["owner"], "description": view["description"],
            "ttl": format_duration(view["ttl_us"]), "freshness_sla": format_duration(view["freshness_sla_us"]),
            "max_delay": format_duration(view.get("max_delay_us")), "as_of": view.get("as_of", AS_OF_EVENT),
            "features": [{k: f[k] for k in ("name", "dtype", "default")} for f in view["features"]],
            **({"transform": view["transform"]} if view.get("transform") else {}),  # absent when unset
            **({"on_miss": on_miss_info(view["on_miss"])} if view.get("on_miss") else {})}


def request_view_doc(name: str, rv: dict[str, Any]) -> dict[str, Any]:
    """A request view as ``describe --json`` and ``list --json`` print it."""
    return {"kind": "request view", "name": name, **request_view_info(rv)}


def request_view_summary(rv: dict[str, Any]) -> str:
    """One line: ``fn(request fields; inputs) -> features``, as ``fstore list`` shows it."""
    args = [f"{k}: {d}" for k, d in rv["request"].items()] + list(rv["inputs"])
    outs = ", ".join(f"{f['name']}: {f['dtype']}" for f in rv["features"])
    return f"{rv['function']['function']}({', '.join(args)}) -> {outs}"


def on_miss_summary(spec: dict[str, Any]) -> str:
    """A view's on_miss in one line: ``compute fn(request fields; inputs)`` (fills NOT_FOUND/EXPIRED)."""
    args = [f"{k}: {d}" for k, d in spec["request"].items()] + list(spec["inputs"])
    return f"compute {spec['function']['function']}({', '.join(args)}) where the read finds no usable row"


def print_request_view(name: str, rv: dict[str, Any]) -> None:
    """``fstore describe`` of a request view: its function, request fields, inputs, features."""
    fn = rv["function"]
    print_record("request view", {"name": name, "function": fn["function"], "file": fn.get("file", ""),
                                  "source_sha256": fn.get("source_sha256", ""),
                                  "request": [f"{k}: {d}" for k, d in rv["request"].items()],
                                  "inputs": list(rv["inputs"]), "description": rv.get("description", "")})
    t = Table(title="features (computed at read time)")
    for col in ("name", "dtype", "description"):
        t.add_column(col)
    for f in rv["features"]:
        t.add_row(f["name"], f["dtype"], escape(f.get("description", "")))
    console.print(t)


def print_record(kind: str, record: dict[str, Any]) -> None:
    """One registry object as a two-column table (durations in units, not their ``_us`` fields)."""
    t = Table(title=f"{kind} {record.get('name', '')}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in record.items():
        if k.endswith("_us"):
            continue
        if k == "sla" and isinstance(v, dict):  # a feature service's serving SLA (fstore bench checks it)
            v = sla_text(v)
        t.add_row(k, escape(", ".join(map(str, v)) if isinstance(v, list) else str(v)))  # text, not markup
    console.print(t)


def sla_text(sla: dict[str, Any]) -> str:
    """A service's ``sla`` as a reader says it: ``p99 <= 2 ms, >= 10,000 req/s``."""
    parts = []
    if sla.get("p99_ms") is not None:
        parts.append(f"p99 <= {sla['p99_ms']:g} ms")
    if sla.get("min_rps") is not None:
        parts.append(f">= {sla['min_rps']:,.0f} req/s")
    return ", ".join(parts)


def warn_null_keys(results: list[Any]) -> None:
    """Say how many rows a run skipped for a null join key, and in which column(s)."""
    for r in results:
        if r.null_key_rows:
            err_console.print(f"[yellow]warning:[/yellow] {escape(r.view)}: {r.null_key_rows:,} row(s) with a null "
                              f"join key ({escape(', '.join(r.null_key_columns))}) were skipped: a row without a "
                              "key can never be joined or read", highlight=False)


def print_writes(results: list[Any], title: str) -> None:
    """What a materialization or load wrote, one row per view."""
    t = Table(title=title)
    for col in ("view", "rows read", "rows written", "seconds", "rows/s", "watermark"):
        t.add_column(col)
    for r in results:
        wm = r.watermark
        t.add_row(r.view, f"{r.rows_read:,}", f"{r.rows_written:,}", f"{r.seconds:.2f}",
                  f"{r.rows_per_second:,.0f}", "" if wm is None else from_us(wm).isoformat())
    console.print(t)
