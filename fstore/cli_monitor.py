"""``fstore monitor``: the checks on a schedule, their latest results on /metrics (or in a textfile)."""
from __future__ import annotations

import sys

import click

from .cli_group import main
from rich.markup import escape

from .cli_output import err_console
# not the exporter: importing prometheus_client here would break ``fstore serve``'s multiprocess metrics
from .monitoring.checks import BUILTIN_CHECKS, DEFAULT_HOST, DEFAULT_INTERVAL, DEFAULT_PORT, DEFAULT_WINDOW


@main.command()
@click.option("--check", "checks", multiple=True, metavar="NAME|MODULE:CALLABLE",
              help=f"A check to run (repeatable; default: {', '.join(BUILTIN_CHECKS)}).")
@click.option("--interval", default=DEFAULT_INTERVAL, show_default=True, help="Time between runs of the checks.")
@click.option("--window", default=DEFAULT_WINDOW, show_default=True,
              help="How far back skew and drift look at each run.")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address /metrics listens on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port /metrics listens on.")
@click.option("--once", is_flag=True, help="Run the checks once, print the metrics (or write --textfile) and exit; "
              "exit code 1 if a check failed.")
@click.option("--textfile", type=click.Path(dir_okay=False),
              help="With --once: write the metrics to this file (node_exporter's textfile collector).")
@click.pass_context
def monitor(ctx: click.Context, checks: tuple[str, ...], interval: str, window: str, host: str, port: int,
            once: bool, textfile: str | None) -> None:
    """Run the monitoring checks on a schedule and serve their latest results as Prometheus metrics."""
    from .monitoring import exporter

    names = list(checks) or list(BUILTIN_CHECKS)
    if textfile is not None and not once:
        raise click.UsageError("--textfile needs --once (run it from cron; the long-running monitor serves /metrics)")
    if not once:
        exporter.setup_logging()
        exporter.serve_monitor(ctx.obj, names, interval, window, host, port)
        return
    text, failures = exporter.run_once(ctx.obj, names, window, textfile)
    click.echo(text, nl=False)
    for message in failures:
        err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1 if failures else 0)
