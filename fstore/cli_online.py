"""The commands of the online store and the server: materialize, materialize-incremental,
load, push, gc, get (in process or over the network) and serve.

Apart from fstore.cli (the repository and the offline store): these write, read or serve
the online store. Each parses its arguments and calls one library function.
"""
from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .cli_group import main, open_store, split_list
from .cli_output import console, err_console, print_writes as _print_writes, warn_null_keys as _warn_null_keys
from .cli_values import info_request_dtypes, raw_rows, typed_rows
from .config import SERVER_KEYS
from .progress import RichReporter
from .repo.request_time import request_dtypes
from .repo.resolve import require_one

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
    _print_writes(open_store(ctx).materialize(start, end, split_list(views), progress=RichReporter(err_console),
                                          allow_future=allow_future), "materialize")


@main.command("materialize-incremental")
@click.argument("end", default="now")
@click.option("--views", multiple=True, help="Views to materialize (NAME or NAME_vN).")
@_ALLOW_FUTURE
@click.pass_context
def materialize_incremental(ctx: click.Context, end: str, views: tuple[str, ...], allow_future: bool) -> None:
    """Write every row ingested since each view's last materialization, whatever its event time,
    up to END (ISO 8601, default 'now'); rows dated after END wait for a later run."""
    _print_writes(open_store(ctx).materialize_incremental(end, split_list(views), progress=RichReporter(err_console),
                                                      allow_future=allow_future), "materialize-incremental")


@main.command()
@click.argument("view")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def load(ctx: click.Context, view: str, files: tuple[str, ...]) -> None:
    """Bulk-load Parquet/CSV FILES straight into VIEW's online store, all or nothing."""
    result = open_store(ctx).load(view, list(files), progress=RichReporter(err_console))
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
    result = open_store(ctx).push_files(view, list(files), offline=offline, progress=RichReporter(err_console))
    console.print(f"{result.view}: {result.rows_written:,} of {result.rows_read:,} row(s) written online "
                  "(a row no newer than the stored one is not)"
                  + (f"; {result.rows_read:,} appended to the offline store" if result.offline else ""))
    _warn_null_keys([result])


@main.command()
@click.option("--views", multiple=True, help="Views to clean (default: all with a ttl).")
@click.pass_context
def gc(ctx: click.Context, views: tuple[str, ...]) -> None:
    """Delete online rows older than their view's ttl, in small transactions."""
    for view, n in open_store(ctx).gc(split_list(views)).items():
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
    refs = split_list(features)
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
        fs = open_store(ctx)
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
