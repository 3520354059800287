"""The ``fstore`` command group itself (``main``) and what every command module shares:
the repository option, fstore's errors printed as one red line, the store of the
repository given.

Apart from fstore.cli so that the command modules (fstore.cli and the cli_* beside it)
all import the group from below and fstore.cli imports them to register their commands:
no module imports the one that imports it.
"""
from __future__ import annotations

import sys
from typing import Any

import click
from rich.markup import escape

from .cli_output import err_console
from .errors import DefinitionErrors, FstoreError
from .feature_store import FeatureStore

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


def open_store(ctx: click.Context) -> FeatureStore:
    """The FeatureStore of the repository the command was given (``--repo``)."""
    return FeatureStore(ctx.obj)


def split_list(items: tuple[str, ...]) -> list[str] | None:
    """A repeatable option's values, each may be comma-separated; None when none was given."""
    out = [f.strip() for item in items for f in item.split(",") if f.strip()]
    return out or None
