"""``fstore bench``: an SLA benchmark of a running server (docs/benchmarks.md, "fstore bench").

Exit status: 0 when the SLA is met or none is set, 1 when it is missed, 2 when the bench
could not run (a bad argument, no keys, the server unreachable: one line naming host:port)
or the server answered no request (connections lost, requests timed out).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .cli_group import main, split_list
from .cli_output import console, err_console
from .errors import FstoreError


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


@main.command()
@click.option("--host", default=None, help="The server's address (default: server.host of fstore.yaml, or 127.0.0.1).")
@click.option("--port", default=None, type=int, help="The server's port (default: server.port of fstore.yaml).")
@click.option("--service", default=None, help="Ask for this feature service.")
@click.option("--features", multiple=True, help="Or these features: view:feature or view (repeatable or comma-separated).")
@click.option("--model", default=None, help="Or this model's service: NAME (its production version) or NAME:N.")
@click.option("--entities", default=1, show_default=True, type=int, help="Entity rows per request.")
@click.option("--connections", default=32, show_default=True, type=int, help="Connections, split among the threads.")
@click.option("--duration", default=10.0, show_default=True, type=float, help="Seconds measured (after the warm-up).")
@click.option("--warmup", default=1.0, show_default=True, type=float, help="Seconds driven first and not measured.")
@click.option("--rate", default=None, type=float,
              help="An open loop at this many requests/s in all (latency from each request's due time); "
                   "default: a closed loop.")
@click.option("--keys", "keys_file", default=None, type=click.Path(dir_okay=False),
              help="A Parquet file of entity keys (columns named as the join keys), asked in file order; "
                   "default: keys drawn at random from the online store.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the keys drawn from the online store.")
@click.option("--threads", default=1, show_default=True, type=int, help="Load generator threads (one per core given).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (docs/benchmarks.md).")
@click.option("--html", "html_out", default=None, type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML page: latency over time and percentiles.")
@click.option("--redis", default=None, metavar="HOST:PORT",
              help="Bench this Redis server instead, like for like: the rows the run asks for are copied into it "
                   "from the online store, then read with GET (one key) or MGET.")
@click.option("--sla-p99-ms", default=None, type=float, help="SLA: p99 latency at most this many ms (overrides "
                                                               "the service's sla.p99_ms).")
@click.option("--sla-min-rps", default=None, type=float, help="SLA: at least this many requests/s (overrides the "
                                                                "service's sla.min_rps).")
@click.option("--token-env", default=None, metavar="NAME",
              help="The auth token is in this environment variable (never a secret in argv).")
@click.option("--tls-ca", default=None, type=click.Path(dir_okay=False),
              help="A TLS server (refused: the load generator speaks plain TCP; see docs/benchmarks.md).")
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="With --tls-ca: a client certificate.")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="With --tls-cert: its key.")
@click.option("--timeout", default=10.0, show_default=True, type=float,
              help="Seconds a request may wait; past it its connection is dropped and counted as TIMEOUT.")
@click.pass_context
def bench(ctx: click.Context, host: str | None, port: int | None, service: str | None, features: tuple[str, ...],
          model: str | None, entities: int, connections: int, duration: float, warmup: float, rate: float | None,
          keys_file: str | None, seed: int, threads: int, as_json: bool, html_out: str | None, redis: str | None,
          sla_p99_ms: float | None, sla_min_rps: float | None, token_env: str | None, tls_ca: str | None,
          tls_cert: str | None, tls_key: str | None, timeout: float) -> None:
    """Benchmark a running server (or Redis, like for like) against an SLA; exit 1 when it is missed."""
    from .bench import run

    token = None
    if token_env is not None:
        token = os.environ.get(token_env)
        if token is None:
            _fail(f"--token-env {token_env}: the environment variable {token_env} is not set")
    tls = "tls" if (tls_ca or tls_cert or tls_key) else None
    try:
        result = run(ctx.obj, host=host, port=port, service=service, features=split_list(features), model=model,
                     entities=entities, connections=connections, duration=duration, warmup=warmup, rate=rate,
                     keys=keys_file, threads=threads, redis=redis, token=token, tls=tls, sla_p99_ms=sla_p99_ms,
                     sla_min_rps=sla_min_rps, seed=seed, timeout=timeout)
    except (FstoreError, ConnectionError, OSError) as exc:
        _fail(str(exc))
        return
    if html_out:
        from .bench import write_html
        write_html(result, html_out)
    doc = result.to_json()
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        _print(doc, html_out)
    if result.unanswered:
        _fail(f"the {doc['system']} server at {doc['target']} answered no request: {_errors(doc['errors'])}")
    sys.exit(1 if result.met is False else 0)


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1e3:.3f} ms"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in errors.items()) or "none"


def _print(doc: dict[str, Any], html_out: str | None) -> None:
    what = doc["service"] or doc["model"] or ", ".join(doc["features"] or [])
    t = Table(title=f"fstore bench: {doc['system']} at {doc['target']}, {escape(str(what))}", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    lat = doc["latency_us"]
    loop = "closed loop" if doc["loop"] == "closed" else f"open loop at {doc['rate']:,.0f} req/s"
    total = sum(doc["statuses"].values())
    rows = [
        ("load", f"{loop}, {doc['connections']} connection(s), {doc['entities_per_request']} entity row(s) per "
                 f"request, {doc['generator']}"),
        ("measured", f"{doc['duration_s']:.2f} s after {doc['warmup_s']:g} s of warm-up"),
        ("requests", f"{doc['requests']:,} ok ({doc['rps']:,.0f} req/s, {doc['rows_per_s']:,.0f} rows/s)"),
        ("latency", f"p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}  "
                    f"p99.9 {_ms(lat['p999'])}  max {_ms(lat['max'])}"),
        ("errors", _errors(doc["errors"])),
        ("statuses", ", ".join(f"{k} {v:,}" for k, v in doc["statuses"].items() if v) +
         (f" (hit rate {doc['hit_rate']:.1%})" if total else "none")),
        ("server CPU", "unknown (not found on this machine)" if doc["server_cpu_us_per_request"] is None
         else f"{doc['server_cpu_us_per_request']:.1f} us per request"),
        ("generator CPU", "-" if doc["generator_cpu_us_per_request"] is None
         else f"{doc['generator_cpu_us_per_request']:.1f} us per request"),
    ]
    sla = doc["sla"]
    if sla["met"] is None:
        rows.append(("SLA", "none set"))
    else:
        bounds = ", ".join(b for b in (f"p99 <= {sla['p99_ms']:g} ms" if sla["p99_ms"] is not None else "",
                                       f">= {sla['min_rps']:,.0f} req/s" if sla["min_rps"] is not None else "") if b)
        verdict = "[green]met[/green]" if sla["met"] else f"[red]missed[/red]: {escape('; '.join(sla['missed']))}"
        rows.append(("SLA", f"{escape(bounds)} ({sla['source']}): {verdict}"))
    for k, v in rows:
        t.add_row(k, v if k == "SLA" else escape(v))
    console.print(t)
    for note in doc["notes"]:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    if html_out:
        console.print(f"report written to {escape(html_out)}")
