"""The ``fstore`` command: each command parses its arguments and calls one library function.

Here the commands of the repository and the offline store (plan, apply, list, describe,
history, ingest, backfill, build-dataset) and quickstart; the others are in the cli_*
modules beside it, by concept, and registered on the group (fstore.cli_group) as this module
imports them.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

# the consoles, and the printers under the names the commands call them by
from .cli_output import console, err_console
from .cli_output import print_plan as _print_plan, print_record as _print_record
from .cli_output import view_doc as _view_doc, warn_null_keys as _warn_null_keys, when as _when
from .cli_output import on_miss_summary, print_request_view, request_view_doc, request_view_summary
from .cli_group import main, open_store, split_list
# the other commands: each cli_* module registers its own on ``main`` (fstore.cli_group)
from . import cli_bench, cli_drift, cli_models, cli_monitor, cli_online, cli_skew, cli_validate  # noqa: F401
from .progress import RichReporter
from .repo.definitions import AS_OF_EVENT
from .repo.names import view_name
from .repo.resolve import require_one
from .times import format_duration


@main.command()
@click.option("--strict", is_flag=True, help="Exit 1 when a change breaks a production model: its service would "
                                             "no longer read the view versions it was trained on.")
@click.pass_context
def plan(ctx: click.Context, strict: bool) -> None:
    """Show what `apply` would change."""
    p = open_store(ctx).plan()
    _print_plan(p)
    if strict and any(i.breaking for i in p.impacts):
        err_console.print("[red]plan --strict:[/red] a change breaks a production model (above); pin the "
                          "trained view versions in its service, or register and promote a model trained "
                          "on the new ones", highlight=False, soft_wrap=True)
        sys.exit(1)


@main.command()
@click.pass_context
def apply(ctx: click.Context) -> None:
    """Validate the definitions and store them in the registry (atomically)."""
    p, version = open_store(ctx).apply()
    _print_plan(p)
    console.print(f"registry version {version}" + (" (unchanged)" if p.empty else " applied"))


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (each view with its state, as describe --json).")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List entities, feature views (every applied version, with their state), request views and feature services."""
    fs = open_store(ctx)
    reg = fs.registry.require()
    states = {view_name(v): fs.view_status(view_name(v)) for v in reg["feature_views"].values()}
    rviews = reg.get("request_views") or {}
    if as_json:
        click.echo(json.dumps({"project": reg["project"], "registry_version": reg["version"],
                               "entities": list(reg["entities"].values()),
                               "feature_views": [_view_doc(v, states[view_name(v)])
                                                 for v in reg["feature_views"].values()],
                               "feature_services": list(reg["feature_services"].values()),
                               "request_views": [request_view_doc(n, rv) for n, rv in rviews.items()]}, indent=1))
        return
    t = Table(title=f"{reg['project']} - registry version {reg['version']}")
    for col in ("kind", "name", "version", "keys / features", "owner", "ttl", "freshness SLA"):
        t.add_column(col, overflow="fold")  # a narrow terminal folds a long name, never cuts it
    for col in ("watermark", "online rows", "last ingest"):
        t.add_column(col)
    for e in reg["entities"].values():
        t.add_row("entity", e["name"], "", ", ".join(e["join_keys"]), "", "", "", "", "", "")
    for v in reg["feature_views"].values():
        st = states[view_name(v)]
        t.add_row("feature view", view_name(v), str(v["version"]),
                  f"{', '.join(v['join_keys'])} -> {len(v['features'])} features", v["owner"],
                  format_duration(v["ttl_us"]), format_duration(v["freshness_sla_us"]),
                  _when(st["watermark"]), f"{st['online_rows']:,}", _when(st["last_ingest"]))
    for n, rv in rviews.items():
        t.add_row("request view", n, "", request_view_summary(rv), "", "", "", "", "", "")
    for s in reg["feature_services"].values():
        t.add_row("feature service", s["name"], "", ", ".join(s["features"]), s["owner"], "", "", "", "", "")
    console.print(t)


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a view: its definition summary and state).")
@click.pass_context
def describe(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one entity, view (NAME or NAME_vN), request view or service with its metadata; a view with its
    watermark, last materialization, online rows, last ingest and pending rows."""
    fs = open_store(ctx)
    reg = fs.registry.require()
    for kind in ("entities", "feature_services", "sources"):
        if name in reg[kind]:
            label = kind[:-1] if kind != "entities" else "entity"
            if as_json:
                click.echo(json.dumps({"kind": label.replace("_", " "), **reg[kind][name]}, indent=1))
            else:
                _print_record(label, reg[kind][name])
            return
    rv = (reg.get("request_views") or {}).get(name)
    if rv is not None:  # computed at read time: no state, a function
        if as_json:
            click.echo(json.dumps(request_view_doc(name, rv), indent=1))
        else:
            print_request_view(name, rv)
        return
    view = fs.get_feature_view(name)
    state = fs.view_status(name)
    if as_json:
        click.echo(json.dumps(_view_doc(view, state), indent=1))
        return
    manifest = fs.offline.manifest(view)
    _print_record("feature view", {**{k: v for k, v in view.items() if k != "features"},
                                   **({"on_miss": on_miss_summary(view["on_miss"])} if view.get("on_miss") else {}),
                                   "ttl": format_duration(view["ttl_us"]),
                                   "freshness_sla": format_duration(view["freshness_sla_us"]),
                                   "max_delay": format_duration(view.get("max_delay_us")),
                                   "as_of": view.get("as_of", AS_OF_EVENT),
                                   "offline rows": manifest["rows"] if manifest else "not ingested",
                                   "last ingest": _when(state["last_ingest"]),
                                   "watermark": _when(state["watermark"]),
                                   "last materialized": _when(state["last_materialized"]),
                                   "online rows": f"{state['online_rows']:,}",
                                   "pending rows": f"{state['pending_rows']:,} (ingested, not yet materialized)",
                                   "unpinned references read": f"{state['serving_reads']} when serving, "
                                                               f"{state['training_reads']} for training sets"})
    t = Table(title="features")
    for col in ("name", "dtype", "default", "description"):
        t.add_column(col)
    for f in view["features"]:
        t.add_row(f["name"], f["dtype"], escape(repr(f["default"])), escape(f["description"]))
    console.print(t)


@main.command()
@click.pass_context
def history(ctx: click.Context) -> None:
    """List every applied registry version."""
    t = Table(title="registry history")
    for col in ("version", "applied at", "feature views"):
        t.add_column(col)
    for h in open_store(ctx).registry.history():
        t.add_row(str(h["version"]), h["applied_at"], ", ".join(h["feature_views"]))
    console.print(t)


@main.command()
@click.argument("views", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: per view, files read and rows, the mode and why.")
@click.pass_context
def ingest(ctx: click.Context, views: tuple[str, ...], as_json: bool) -> None:
    """Load new and changed source files into the offline store (all views, or VIEWS).

    A view with a transformation runs it: on the new and changed files alone when it is
    row-wise (incremental), else over every file, replacing the view's history (full)."""
    start = time.perf_counter()
    results = open_store(ctx).ingest(list(views) or None, progress=RichReporter(err_console))
    if as_json:
        click.echo(json.dumps([{"view": r.view, "files_read": r.units_read, "files_unchanged": r.units_skipped,
                                "files_replaced": r.replaced_units, "rows": r.rows, "mode": r.mode, "why": r.why,
                                "null_key_rows": r.null_key_rows} for r in results], indent=1))
        return
    t = Table(title="ingest")
    for col in ("view", "files read", "files unchanged", "files replaced", "rows", "mode"):
        t.add_column(col)
    for r in results:
        t.add_row(r.view, str(r.units_read), str(r.units_skipped), str(r.replaced_units), f"{r.rows:,}", r.mode)
    console.print(t)
    for r in results:
        if r.why and r.mode != "plain":
            console.print(f"{r.view}: {r.mode}: {r.why}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"done in {time.perf_counter() - start:.2f} s")
    _warn_null_keys(results)


@main.command()
@click.argument("view")
@click.argument("start")
@click.argument("end")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def backfill(ctx: click.Context, view: str, start: str, end: str, as_json: bool) -> None:
    """Recompute VIEW's history with event time in [START, END) (ISO 8601) with its current
    transformation, as a NEW view version: rows outside the window are copied from the newest
    applied version, which stays as it was (models trained on it keep their lineage)."""
    t0 = time.perf_counter()
    r = open_store(ctx).backfill(view, start, end, progress=RichReporter(err_console))
    if as_json:
        click.echo(json.dumps({"view": r.view, "from_view": r.from_view, "mode": r.mode,
                               "rows_copied": r.rows_copied, "rows_recomputed": r.rows_recomputed,
                               "files_read": r.files_read, "start": start, "end": end}, indent=1))
        return
    console.print(f"backfill: registered {r.view} ({r.mode}): {r.rows_recomputed:,} rows recomputed in "
                  f"[{start}, {end}), {r.rows_copied:,} copied from {r.from_view}, {r.files_read} source files "
                  f"read, in {time.perf_counter() - t0:.2f} s", highlight=False, markup=False, soft_wrap=True)
    console.print(f"set version: {r.view.rpartition('_v')[2]} in the view's definition so that plan agrees; "
                  "then `fstore materialize` it to serve it", highlight=False, markup=False, soft_wrap=True)


@main.command("build-dataset")
@click.option("--entities", "entities", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Parquet or CSV file of entity rows (join keys + event timestamp + labels).")
@click.option("--features", "features", multiple=True, help="view:feature or view (repeatable, or comma-separated).")
@click.option("--service", help="A feature service name.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file; its suffix names the format: .parquet, .csv, .arrow/.ipc, .feather.")
@click.option("--full-feature-names", is_flag=True, help="Name columns view__feature.")
@click.option("--timestamp-column", default=None, help="The entity timestamp column (default from fstore.yaml).")
@click.pass_context
def build_dataset(ctx: click.Context, entities: str, features: tuple[str, ...], service: str | None, out: str,
                  full_feature_names: bool, timestamp_column: str | None) -> None:
    """Build a point-in-time correct training set and write its lineage beside it."""
    refs = split_list(features)
    require_one(refs, service, ("--features", "--service"))
    start = time.perf_counter()
    table, lineage = open_store(ctx).build_dataset(entities, out, refs, feature_service=service,
                                               full_feature_names=full_feature_names,
                                               event_timestamp_column=timestamp_column,
                                               progress=RichReporter(err_console))
    console.print(f"wrote {table.num_rows:,} rows x {table.num_columns} columns to {out} "
                  f"in {time.perf_counter() - start:.2f} s; lineage in {lineage}")


@main.command()
@click.argument("directory", default="quickstart-repo", type=click.Path(file_okay=False))
@click.option("--customers", default=2000, show_default=True, help="How many customers to generate.")
@click.option("--days", default=30, show_default=True, help="Days of history to generate.")
def quickstart(directory: str, customers: int, days: int) -> None:
    """Make a demo repository with realistic data, apply, ingest and build a training set."""
    from .quickstart import run_quickstart

    run_quickstart(Path(directory), customers=customers, days=days, console=console)


if __name__ == "__main__":  # pragma: no cover
    main()
