"""``fstore validate``: the validation gates (docs/validation.md); exits 1 on any error finding."""
from __future__ import annotations

import json
import sys

import click
from rich.markup import escape

from .cli_group import main
from .cli_output import console


@main.command()
@click.option("--json", "as_json", is_flag=True, help='Print {"ok": ..., "findings": [...]} (docs/validation.md).')
@click.option("--sample", type=click.IntRange(1), default=200, show_default=True,
              help="Entity rows per view for the point-in-time self-test (PIT).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the PIT sample.")
@click.option("--dataset", type=click.Path(dir_okay=False), default=None,
              help="A training set (Parquet or CSV) to check for target leakage (L3); needs --label.")
@click.option("--label", default=None, help="The label column of --dataset.")
@click.option("--rule", "rules", multiple=True, help="Run only this rule (repeatable): SCHEMA, PIT, L1..L4.")
@click.pass_context
def validate(ctx: click.Context, as_json: bool, sample: int, seed: int, dataset: str | None, label: str | None,
             rules: tuple[str, ...]) -> None:
    """Check definitions and offline data: point-in-time correctness, leakage, hygiene."""
    from .validate.run import validate_repository

    report = validate_repository(ctx.obj, sample=sample, seed=seed, dataset=dataset, label=label,
                                 rules=list(rules) or None)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report)
    if not report.ok:
        sys.exit(1)


def _print(report) -> None:
    for f in report.findings:
        color = "red" if f.severity == "error" else "yellow"
        console.print(f"[{color}]{f.severity}[/{color}] [bold]{f.rule}[/bold] {escape(f.message)}",
                      highlight=False, soft_wrap=True)
    errors = sum(f.severity == "error" for f in report.findings)
    warnings = len(report.findings) - errors
    verdict = "[green]ok[/green]" if report.ok else "[red]failed[/red]"
    console.print(f"validate {verdict}: {errors} error(s), {warnings} warning(s); rules {', '.join(report.rules)}",
                  highlight=False)
