"""``fstore drift`` and ``fstore freshness`` (registered on the ``fstore`` group by cli.py).

Both exit 1 when something needs attention (a feature at ``alert``; a view in breach),
so that cron and CI can act on them; a ``warn`` level exits 0.
"""
from __future__ import annotations

import json
import sys

import click
from rich.markup import escape
from rich.table import Table

from .cli_group import main, open_store
from .cli_output import console, when

_STYLE = {"ok": "green", "warn": "yellow", "alert": "bold red"}


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


@main.command()
@click.option("--service", "-s", required=True, help="The feature service whose features to compare.")
@click.option("--reference", "reference", default=None, type=click.Path(dir_okay=False),
              help="A training set file built by fstore (Parquet, CSV, Arrow, Feather).")
@click.option("--reference-window", nargs=2, default=None, metavar="START END",
              help="Or: the offline rows with an event time in [START, END] (ISO 8601).")
@click.option("--since", default=None, help="Start of the current window (ISO 8601; default: unbounded).")
@click.option("--until", default=None, help="End of the current window (ISO 8601; default: unbounded).")
@click.option("--current", type=click.Choice(["logs", "offline"]), default="logs", show_default=True,
              help="The current window: the served-feature logs, or the offline store's rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (docs/monitoring.md, Drift).")
@click.option("--html", "html_out", default=None, type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML report with both histograms per feature.")
@click.option("--model", default=None, help="Current logs: only the reads that named this model (NAME or NAME:N).")
@click.pass_context
def drift(ctx: click.Context, service: str, reference: str | None, reference_window: tuple[str, str] | None,
          since: str | None, until: str | None, current: str, as_json: bool, html_out: str | None,
          model: str | None) -> None:
    """PSI, null rates and statistics of a service's features: reference vs current; exit 1 on an alert."""
    result = open_store(ctx).drift(service, reference=reference, reference_window=reference_window or None,
                               since=since, until=until, current=current, model=model)
    if html_out:
        from .monitoring.report import write_html
        write_html(result, html_out)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
    else:
        _print_drift(result, html_out)
    sys.exit(1 if result.level == "alert" else 0)


def _print_drift(result: object, html_out: str | None) -> None:
    doc = result.to_json()  # type: ignore[attr-defined]
    t = Table(title=f"drift of {escape(doc['service'])}: {doc['reference']['kind']} ({doc['reference']['rows']} rows) "
                    f"vs {doc['current']['kind']} ({doc['current']['rows']} rows)")
    for col in ("feature", "PSI", "level", "null ref", "null cur", "mean ref", "mean cur", "min / max cur"):
        t.add_column(col, overflow="fold")
    for f in doc["features"]:
        minmax = f"{_num(f['min_cur'])} / {_num(f['max_cur'])}" if "min_cur" in f else ""
        t.add_row(escape(f["feature"]), _num(f["psi"]), f"[{_STYLE[f['level']]}]{f['level']}[/]",
                  _num(f["null_rate_ref"]), _num(f["null_rate_cur"]), _num(f.get("mean_ref")),
                  _num(f.get("mean_cur")), minmax)
    console.print(t)
    for skip in doc.get("skipped", []):
        console.print(f"not compared: {escape(skip['feature'])} (request view {escape(skip['view'])}): "
                      f"{escape(skip['why'])}")
    if html_out:
        console.print(f"report written to {escape(html_out)}")


@main.command("freshness")
@click.option("--all", "all_views", is_flag=True, help="List every view, not only those in breach.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (docs/monitoring.md, Freshness).")
@click.pass_context
def freshness_(ctx: click.Context, all_views: bool, as_json: bool) -> None:
    """Views whose newest data (online, offline) is older than their freshness_sla; exit 1 on a breach."""
    result = open_store(ctx).freshness()
    doc = result.to_json(all_views)
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        t = Table(title=f"freshness at {when(doc['now'])}: {doc['breached']} in breach")
        for col in ("view", "store", "freshness SLA", "newest event", "age", "breached"):
            t.add_column(col, overflow="fold")
        for c in doc["views"]:
            age = "-" if c["age_seconds"] is None else f"{c['age_seconds']:.0f} s"
            t.add_row(c["view"], c["store"], c["freshness_sla"] or "none", when(c["newest_event"]), age,
                      "[bold red]yes[/]" if c["breached"] else "no")
        console.print(t)
    sys.exit(1 if doc["breached"] else 0)
