"""``fstore skew``: served values against the offline store and the model's own log."""
from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .cli_group import main, open_store
from .cli_output import console, err_console

_AGAINST = ("offline", "logged", "both")


@main.command()
@click.option("--service", required=True, help="The feature service whose logged reads to check.")
@click.option("--since", default=None, help="Start of the window (ISO 8601 or relative: now-1h). "
                                            "Default: the first logged read.")
@click.option("--until", default=None, help="End of the window (ISO 8601 or relative). Default: now.")
@click.option("--against", type=click.Choice(_AGAINST), default=None,
              help="offline, logged (the model-received log) or both. Default: both when the service has a "
                   "model-received log, else offline.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (docs/monitoring.md, Skew).")
@click.option("--max-mismatch-rate", type=click.FloatRange(0, 1), default=None,
              help="Exit 1 when any feature's mismatch rate is above this (default: report only).")
@click.option("--examples", type=click.IntRange(0), default=5, show_default=True,
              help="Mismatching rows shown per feature and comparison.")
@click.option("--model", default=None, help="Only the reads that named this model (NAME, or NAME:N).")
@click.pass_context
def skew(ctx: click.Context, service: str, since: str | None, until: str | None, against: str | None,
         as_json: bool, max_mismatch_rate: float | None, examples: int, model: str | None) -> None:
    """Compare what a feature service served with what training sees (and what the model got)."""
    from .monitoring.skew import worst_rate

    report = open_store(ctx).skew(service, since, until, against, examples, model=model)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print(report)
    if max_mismatch_rate is not None and worst_rate(report) > max_mismatch_rate:
        err_console.print(f"[red]skew:[/red] a feature's mismatch rate {worst_rate(report):.4%} is above "
                          f"--max-mismatch-rate {max_mismatch_rate:.4%}", highlight=False)
        sys.exit(1)


def _print(report: dict[str, Any]) -> None:
    console.print(f"skew of service [bold]{escape(report['service'])}[/bold], "
                  f"{report['since']} .. {report['until']}", highlight=False)
    for comp in report["comparisons"]:
        if not comp["rows"]:
            err_console.print(f"[yellow]warning:[/yellow] no logged rows to compare against {comp['against']} "
                              "in this window", highlight=False)
        table = Table(title=f"served vs {comp['against']}: {comp['rows']:,} rows")
        for name in ("feature", "rows", "mismatches", "rate", "mean |diff|", "max |diff|", "reasons"):
            table.add_column(name, justify="left" if name in ("feature", "reasons") else "right")
        for f in comp["features"]:
            reasons = ", ".join(f"{k} {v:,}" for k, v in f.get("reasons", {}).items())
            table.add_row(escape(f["feature"]), f"{f['rows']:,}", f"{f['mismatches']:,}", f"{f['mismatch_rate']:.4%}",
                          _num(f["mean_abs_diff"]), _num(f["max_abs_diff"]), escape(reasons))
        console.print(table)
        for e in comp["examples"]:
            console.print(f"  {escape(e['feature'])} {escape(json.dumps(e['entity']))} at {e['request_time']}: "
                          f"served {escape(json.dumps(e['served']))} ({e['served_status']}), expected "
                          f"{escape(json.dumps(e['expected']))}: {e['reason']}", highlight=False, soft_wrap=True)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"
