"""The ``fstore`` command: each command parses its arguments and calls one library function."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

# the consoles, and the printers under the names the commands call them by
from .cli_output import console, err_console
from .cli_output import print_plan as _print_plan, print_record as _print_record, print_writes as _print_writes
from .cli_output import view_doc as _view_doc, warn_null_keys as _warn_null_keys, when as _when
from .cli_output import on_miss_summary, print_request_view, request_view_doc, request_view_summary
from .cli_values import info_request_dtypes, raw_rows, typed_rows
from .repo.request_time import request_dtypes
from .errors import DefinitionErrors, FstoreError
from .feature_store import FeatureStore
from .progress import RichReporter
from .config import SERVER_KEYS
from .repo.definitions import AS_OF_EVENT
from .repo.names import view_name
from .repo.resolve import require_one
from .times import format_duration

#: commands that take no repository, so no --repo of their own
_NO_REPO = frozenset({"quickstart"})


def _repo_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--repo`` given after the subcommand: it overrides the group's."""
    if value is not None:
        ctx.obj = value


class _Group(click.Group):
    """Turns fstore's own errors into one red line (or a list) and exit code 1, not a traceback."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Every command that reads a repository also takes ``--repo/-r`` after its name."""
        if (name or cmd.name) not in _NO_REPO and not any(p.name == "repo" for p in cmd.params):
            cmd.params.append(click.Option(
                ["--repo", "-r"], default=None, expose_value=False, is_eager=True, callback=_repo_option,
                type=click.Path(file_okay=False),
                help="The feature repository (overrides the one before the command)."))
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DefinitionErrors as exc:
            err_console.print(f"[red]error:[/red] {len(exc.errors)} problem(s) in the feature definitions:")
            for e in exc.errors:  # the message is text, not markup: "features[x]" must print as written
                err_console.print(f"  [red]-[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except FstoreError as exc:  # one line, however narrow the terminal; text, not markup
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except ConnectionError as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            sys.exit(1)


@click.group(cls=_Group)
@click.option("--repo", "-r", default=".", envvar="FSTORE_REPO", show_default=True,
              type=click.Path(file_okay=False), help="The feature repository (folder with fstore.yaml).")
@click.version_option(package_name="fstore")
@click.pass_context
def main(ctx: click.Context, repo: str) -> None:
    """fstore: features as code, point-in-time training sets, low-latency serving."""
    ctx.obj = repo


def _store(ctx: click.Context) -> FeatureStore:
    return FeatureStore(ctx.obj)


@main.command()
@click.option("--strict", is_flag=True, help="Exit 1 when a change breaks a production model: its service would "
                                             "no longer read the view versions it was trained on.")
@click.pass_context
def plan(ctx: click.Context, strict: bool) -> None:
    """Show what `apply` would change."""
    p = _store(ctx).plan()
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
    p, version = _store(ctx).apply()
    _print_plan(p)
    console.print(f"registry version {version}" + (" (unchanged)" if p.empty else " applied"))


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (each view with its state, as describe --json).")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List entities, feature views (every applied version, with their state), request views and feature services."""
    fs = _store(ctx)
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
    fs = _store(ctx)
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
    for h in _store(ctx).registry.history():
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
    results = _store(ctx).ingest(list(views) or None, progress=RichReporter(err_console))
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
    r = _store(ctx).backfill(view, start, end, progress=RichReporter(err_console))
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
    refs = _split(features)
    require_one(refs, service, ("--features", "--service"))
    start = time.perf_counter()
    table, lineage = _store(ctx).build_dataset(entities, out, refs, feature_service=service,
                                               full_feature_names=full_feature_names,
                                               event_timestamp_column=timestamp_column,
                                               progress=RichReporter(err_console))
    console.print(f"wrote {table.num_rows:,} rows x {table.num_columns} columns to {out} "
                  f"in {time.perf_counter() - start:.2f} s; lineage in {lineage}")


_ALLOW_FUTURE = click.option("--allow-future", is_flag=True,
                             help="Accept an END later than now plus materialize.clock_skew (fstore.yaml).")


@main.command()
@click.argument("start")
@click.argument("end")
@click.option("--views", multiple=True, help="Views to materialize (NAME or NAME_vN; repeatable or comma-separated).")
@_ALLOW_FUTURE
@click.pass_context
def materialize(ctx: click.Context, start: str, end: str, views: tuple[str, ...], allow_future: bool) -> None:
    """Write the newest row per entity with event time in [START, END] (ISO 8601) to the online store."""
    _print_writes(_store(ctx).materialize(start, end, _split(views), progress=RichReporter(err_console),
                                          allow_future=allow_future), "materialize")


@main.command("materialize-incremental")
@click.argument("end", default="now")
@click.option("--views", multiple=True, help="Views to materialize (NAME or NAME_vN).")
@_ALLOW_FUTURE
@click.pass_context
def materialize_incremental(ctx: click.Context, end: str, views: tuple[str, ...], allow_future: bool) -> None:
    """Write every row ingested since each view's last materialization, whatever its event time,
    up to END (ISO 8601, default 'now'); rows dated after END wait for a later run."""
    _print_writes(_store(ctx).materialize_incremental(end, _split(views), progress=RichReporter(err_console),
                                                      allow_future=allow_future), "materialize-incremental")


@main.command()
@click.argument("view")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def load(ctx: click.Context, view: str, files: tuple[str, ...]) -> None:
    """Bulk-load Parquet/CSV FILES straight into VIEW's online store, all or nothing."""
    result = _store(ctx).load(view, list(files), progress=RichReporter(err_console))
    _print_writes([result], "load")
    _warn_null_keys([result])


@main.command()
@click.argument("view")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--offline", is_flag=True,
              help="Also append the rows to the offline store (first), so training sees them.")
@click.pass_context
def push(ctx: click.Context, view: str, files: tuple[str, ...], offline: bool) -> None:
    """Push the rows of Parquet/CSV FILES to VIEW online, newer-only as a server's PUSH, without a server."""
    result = _store(ctx).push_files(view, list(files), offline=offline, progress=RichReporter(err_console))
    console.print(f"{result.view}: {result.rows_written:,} of {result.rows_read:,} row(s) written online "
                  "(a row no newer than the stored one is not)"
                  + (f"; {result.rows_read:,} appended to the offline store" if result.offline else ""))
    _warn_null_keys([result])


@main.command()
@click.option("--views", multiple=True, help="Views to clean (default: all with a ttl).")
@click.pass_context
def gc(ctx: click.Context, views: tuple[str, ...]) -> None:
    """Delete online rows older than their view's ttl, in small transactions."""
    for view, n in _store(ctx).gc(_split(views)).items():
        console.print(f"{view}: {n:,} expired rows deleted")


@main.command()
@click.option("--service", help="A feature service name.")
@click.option("--features", multiple=True, help="view:feature or view (repeatable or comma-separated).")
@click.option("--full-feature-names", is_flag=True)
@click.option("--host", default=None, help="Ask a running server instead of reading the store in process.")
@click.option("--port", default=None, type=int, help=f"The server's port (with --host; default {SERVER_KEYS['port'][1]}).")
@click.option("--project", default=None, help="With --host/--port: refuse a server of another project.")
@click.option("--token-env", default=None, metavar="NAME",
              help="With --host/--port: the auth token is in this environment variable (never a secret in argv).")
@click.option("--tls-ca", default=None, type=click.Path(dir_okay=False),
              help="With --host/--port: connect with TLS, trusting this CA (PEM).")
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False),
              help="With --tls-ca: this client certificate (PEM), for a server with a client CA.")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="With --tls-cert: its key (PEM).")
@click.option("--model", default=None, help="Serve a model's service: NAME (its production version) or NAME:N.")
@click.argument("keys", nargs=-1, required=True)
@click.pass_context
def get(ctx: click.Context, service: str | None, features: tuple[str, ...], full_feature_names: bool,
        host: str | None, port: int | None, project: str | None, token_env: str | None, tls_ca: str | None,
        tls_cert: str | None, tls_key: str | None, keys: tuple[str, ...], model: str | None = None) -> None:
    """Read feature vectors: fstore get --service fraud_v1 customer_id=1 driver_id=7.

    A key given again starts another entity row: the n-th value of each key makes row n
    (customer_id=1 customer_id=2 reads two customers), so every key must be given as often
    as the others. A request field is read as the dtype its definition declares
    (trip_km=12.5 is a float64); any other value as an integer if it is one, else as text.
    """
    refs = _split(features)
    if model is not None and (refs is not None or service is not None):
        raise click.UsageError("give exactly one of --features, --service or --model")
    if model is None:
        require_one(refs, service, ("--features", "--service"))
    values = raw_rows(keys)  # read as their declared types below (request fields: cli_values)
    if host is not None or port is not None:
        import os

        from .serving.client import DEFAULT_PORT, Client
        from .serving.tls import client_context

        token = None
        if token_env is not None:
            token = os.environ.get(token_env)
            if token is None:
                raise click.UsageError(f"--token-env {token_env}: the environment variable {token_env} is not set")
        tls = client_context(tls_ca, tls_cert, tls_key) if (tls_ca or tls_cert or tls_key) else None
        with Client(host or "127.0.0.1", port or DEFAULT_PORT, project=project, token=token, ssl=tls) as client:
            rows = typed_rows(values, info_request_dtypes(client.info()))
            resp = client.get_online_features(refs, feature_service=service, entity_rows=rows,
                                              full_feature_names=full_feature_names, model=model)
    else:
        fs = _store(ctx)
        rows = typed_rows(values, request_dtypes(fs.registry.require()))
        resp = fs.get_online_features(refs, feature_service=service, entity_rows=rows,
                                               full_feature_names=full_feature_names, model=model)
    _print_vector(resp)


def _print_vector(resp: Any) -> None:
    """One table per entity row: each feature's value, status and event timestamp."""
    for entity, row in zip(resp.entity_rows, resp.to_rows(include_metadata=True)):
        t = Table(title=escape(", ".join(f"{k}={v}" for k, v in entity.items())))
        for col in ("feature", "value", "status", "event timestamp"):
            t.add_column(col)
        for name in resp.feature_names:
            cell = row[name]
            ts = cell["event_timestamp"]
            t.add_row(name, escape(repr(cell["value"])), cell["status"], ts.isoformat() if ts else "")
        console.print(t)


def _split(items: tuple[str, ...]) -> list[str] | None:
    out = [f.strip() for item in items for f in item.split(",") if f.strip()]
    return out or None


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: server.host or 127.0.0.1).")
@click.option("--port", default=None, type=int, help=f"TCP port (default: server.port or {SERVER_KEYS['port'][1]}).")
@click.option("--workers", default=None, type=int, help="Worker processes sharing the port (default 1).")
@click.option("--metrics-port", default=None, type=int, help="Prometheus metrics HTTP port (default: none).")
@click.option("--takeover", is_flag=True,
              help="Take the port over from a running server of this repository, which then drains and exits.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without auth tokens (logs a warning).")
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="TLS certificate chain (PEM).")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="TLS private key (PEM).")
@click.option("--tls-client-ca", default=None, type=click.Path(dir_okay=False),
              help="Require client certificates signed by this CA (mutual TLS).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None, metrics_port: int | None,
          takeover: bool, insecure: bool, tls_cert: str | None, tls_key: str | None,
          tls_client_ca: str | None) -> None:
    """Serve online features over the fstore TCP protocol until SIGTERM."""
    from .serving.log import setup_logging
    from .serving.supervisor import serve_repo

    setup_logging()
    serve_repo(ctx.obj, host=host, port=port, workers=workers, metrics_port=metrics_port, takeover=takeover,
               insecure=insecure, tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca)


@main.command()
@click.argument("directory", default="quickstart-repo", type=click.Path(file_okay=False))
@click.option("--customers", default=2000, show_default=True, help="How many customers to generate.")
@click.option("--days", default=30, show_default=True, help="Days of history to generate.")
def quickstart(directory: str, customers: int, days: int) -> None:
    """Make a demo repository with realistic data, apply, ingest and build a training set."""
    from .quickstart import run_quickstart

    run_quickstart(Path(directory), customers=customers, days=days, console=console)


from . import cli_monitor  # noqa: E402,F401  (fstore monitor)
from . import cli_skew  # noqa: E402,F401  (fstore skew)
from . import cli_drift  # noqa: E402,F401  (fstore drift, fstore freshness)
from . import cli_models  # noqa: E402,F401  (fstore model, fstore lineage)
from . import cli_validate  # noqa: E402,F401  (fstore validate)
from . import cli_bench  # noqa: E402,F401  (fstore bench)


if __name__ == "__main__":  # pragma: no cover
    main()
