"""``fstore model`` (register, list, describe, promote, lineage) and ``fstore lineage``."""
from __future__ import annotations

import json
from typing import Any, Callable

import click
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from .cli_group import main, open_store
from .cli_output import console
from .repo.models import PROMOTE_STAGES, parse_model_ref, parse_scalar


def _pairs(items: tuple[str, ...], what: str) -> dict[str, Any]:
    """``k=v`` arguments as a dict; a value that reads as a number is stored as one."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--{what} {item!r}: write it as name=value")
        out[key] = parse_scalar(value)
    return out


@main.group()
def model() -> None:
    """The model registry: which training set each model version was trained on, and its stage."""


@model.command()
@click.argument("name")
@click.option("--dataset", required=True, type=click.Path(dir_okay=False),
              help="A training set built by `fstore build-dataset` (its .lineage.json is read).")
@click.option("--service", default=None, help="The feature service the model is served with (default: the dataset's).")
@click.option("--artifact", default=None, help="Where the trained model is (a URI).")
@click.option("--metric", "metrics", multiple=True, help="name=value (repeatable).")
@click.option("--param", "params", multiple=True, help="name=value (repeatable).")
@click.option("--description", default="", help="What this version is.")
@click.option("--mlflow-run", default=None, metavar="RUN_ID",
              help="Take the artifact URI, params and metrics from this MLflow run and tag it with "
                   "fstore's lineage (pip install 'fstore[mlflow]').")
@click.option("--mlflow-tracking-uri", default=None, metavar="URI",
              help="Where the run is (default: MLFLOW_TRACKING_URI, else mlflow's default).")
@click.option("--json", "as_json", is_flag=True, help="Print the new version's record as JSON.")
@click.pass_context
def register(ctx: click.Context, name: str, dataset: str, service: str | None, artifact: str | None,
             metrics: tuple[str, ...], params: tuple[str, ...], description: str,
             mlflow_run: str | None, mlflow_tracking_uri: str | None, as_json: bool) -> None:
    """Register a new version of model NAME, trained on the training set FILE."""
    if mlflow_tracking_uri and not mlflow_run:
        raise click.UsageError("--mlflow-tracking-uri needs --mlflow-run")
    rec = open_store(ctx).models.register(name, dataset, service=service, artifact=artifact,
                                      metrics=_pairs(metrics, "metric"), params=_pairs(params, "param"),
                                      description=description, mlflow_run=mlflow_run,
                                      mlflow_tracking_uri=mlflow_tracking_uri)
    if as_json:
        click.echo(json.dumps({"name": name, "model": name, **rec}, indent=1))
        return
    console.print(f"registered {escape(name)}:{rec['version']} (stage none), trained on {escape(rec['dataset'])} "
                  f"through service {escape(rec['service'])}", highlight=False, soft_wrap=True)
    if rec.get("mlflow"):
        console.print(f"tagged MLflow run {escape(rec['mlflow']['run_id'])} with its lineage (fstore.*)",
                      highlight=False, soft_wrap=True)


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: every model with all its versions.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List the registered models and their versions."""
    models = open_store(ctx).models.list()
    if as_json:
        click.echo(json.dumps(models, indent=1))
        return
    t = Table(title="models")
    for col in ("model", "version", "stage", "service", "dataset", "registered at"):
        t.add_column(col, overflow="fold")
    for m in models:
        for r in m["versions"]:
            t.add_row(m["name"], str(r["version"]), r["stage"], r["service"], r["dataset"], r["registered_at"][:19])
    console.print(t)


@model.command()
@click.argument("ref", metavar="NAME[:N]")
@click.option("--json", "as_json", is_flag=True, help="Print the version's record as JSON.")
@click.pass_context
def describe(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one model version (default: the newest)."""
    name, version = parse_model_ref(ref)
    rec = open_store(ctx).models.get(name, version)
    if as_json:
        click.echo(json.dumps(rec, indent=1))
        return
    for key, value in rec.items():
        text = value if isinstance(value, str) else json.dumps(value)
        console.print(f"[bold]{key}[/bold]: {escape(str(text))}", highlight=False, soft_wrap=True)


@model.command()
@click.argument("ref", metavar="NAME:N")
@click.option("--stage", required=True, type=click.Choice(PROMOTE_STAGES))
@click.pass_context
def promote(ctx: click.Context, ref: str, stage: str) -> None:
    """Move a model version to a stage; one in production archives the one there."""
    name, version = parse_model_ref(ref)
    if version is None:
        raise click.UsageError(f"{ref!r}: name the version, NAME:N")
    rec = open_store(ctx).models.promote(name, version, stage)
    console.print(f"{escape(name)}:{rec['version']} is now {stage}", highlight=False)


@model.command("lineage")
@click.argument("ref", metavar="NAME[:N]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/models.md).")
@click.option("--dot", is_flag=True, help="Print Graphviz dot text.")
@click.pass_context
def model_lineage(ctx: click.Context, ref: str, as_json: bool, dot: bool) -> None:
    """Model version -> training set -> feature service -> view versions -> sources and files."""
    _show(open_store(ctx).model_lineage(ref), as_json, dot, _model_dot, _model_tree)


@main.command()
@click.argument("target", metavar="VIEW_OR_SOURCE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/models.md).")
@click.option("--dot", is_flag=True, help="Print Graphviz dot text.")
@click.pass_context
def lineage(ctx: click.Context, target: str, as_json: bool, dot: bool) -> None:
    """What reads a view or source: feature services, training sets and model versions."""
    _show(open_store(ctx).lineage(target), as_json, dot, _up_dot, _up_tree)


def _show(doc: dict[str, Any], as_json: bool, dot: bool, to_dot: Callable[[dict[str, Any]], str],
          to_tree: Callable[[dict[str, Any]], Tree]) -> None:
    """A lineage document as JSON, Graphviz dot text or a tree (both lineage commands)."""
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    elif dot:
        click.echo(to_dot(doc))
    else:
        console.print(to_tree(doc))


def _model_tree(doc: dict[str, Any]) -> Tree:
    ts = doc["training_set"]
    root = Tree(escape(f"model {doc['model']}:{doc['version']} ({doc['stage']})"))
    data = root.add(escape(f"training set {ts['file']}: {ts['rows']} rows, sha256 {ts['sha256'][:12]}, "
                           f"entities sha256 {(ts['entities_sha256'] or '-')[:12]}, built {ts['built_at']}"))
    svc = data.add(escape(f"feature service {doc['service']}"))
    for rv in doc.get("request_views", []):  # computed at read time: function, request fields, inputs
        fn = rv["function"]
        node = svc.add(escape(f"request view {rv['name']}: function {fn['function']} in {fn.get('file', '-')} "
                              f"sha256 {fn.get('source_sha256', '-')[:12]}"))
        node.add(escape(f"request {', '.join(f'{k}: {d}' for k, d in rv['request'].items()) or '-'}; "
                        f"inputs {', '.join(rv['inputs']) or '-'}"))
    for v in doc["views"]:
        node = svc.add(escape(f"view {v['view']} (offline fingerprint {v.get('offline_fingerprint') or '-'})"
                              + (f", read by {', '.join(v['read_by'])}" if v.get("read_by") else "")))
        for src in v["sources"]:
            s = node.add(escape(f"source {src['name']}: {src['path']}"))
            for f in src["files"]:
                s.add(escape(f"file {f['file']} fingerprint {f['fingerprint']} ({f['rows']} rows, run {f['run']})"))
            for r in src["ingest_runs"]:
                s.add(escape(f"ingest run {r['id']} at {r['at']}: {r['rows']} rows"))
    return root


def _up_tree(doc: dict[str, Any]) -> Tree:
    kind = "source" if "source" in doc else "view"
    root = Tree(escape(f"{kind} {doc[kind]}"))
    for label, items in (("views", doc.get("views", [])), ("feature services", doc["services"]),
                         ("training sets", doc["datasets"])):
        branch = root.add(label)
        for item in items:
            branch.add(escape(item))
    models = root.add("model versions")
    for m in doc["models"]:
        models.add(escape(f"{m['name']}:{m['version']} ({m['stage']}) through {m['service']}"))
    return root


def _q(text: Any) -> str:
    return json.dumps(str(text))


def _model_dot(doc: dict[str, Any]) -> str:
    model = f"model {doc['model']}:{doc['version']}\\n{doc['stage']}"
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];",
             f"  {_q('model')} [label={_q(model)}];",
             f"  {_q('dataset')} [label={_q('training set ' + doc['dataset'])}];",
             f"  {_q('service')} [label={_q('service ' + doc['service'])}];",
             f"  {_q('model')} -> {_q('dataset')};", f"  {_q('dataset')} -> {_q('service')};"]
    for rv in doc.get("request_views", []):
        lines.append(f"  {_q('service')} -> {_q('request view ' + rv['name'])};")
        for ref in rv["inputs"]:
            lines.append(f"  {_q('request view ' + rv['name'])} -> {_q('view ' + ref.split(':')[0])};")
    for v in doc["views"]:
        lines.append(f"  {_q('view ' + v['view'])};")
        lines.append(f"  {_q('service')} -> {_q('view ' + v['view'])};")
        for src in v["sources"]:
            lines.append(f"  {_q('view ' + v['view'])} -> {_q('source ' + src['name'])};")
    lines.append("}")
    return "\n".join(lines)


def _up_dot(doc: dict[str, Any]) -> str:
    kind = "source" if "source" in doc else "view"
    top = f"{kind} {doc[kind]}"
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];", f"  {_q(top)};"]
    for v in doc.get("views", []):
        lines.append(f"  {_q(top)} -> {_q('view ' + v)};")
    for s in doc["services"]:
        lines.append(f"  {_q(top)} -> {_q('service ' + s)};")
    for m in doc["models"]:
        node = f"model {m['name']}:{m['version']} ({m['stage']})"
        lines.append(f"  {_q('service ' + m['service'])} -> {_q('dataset ' + m['dataset'])};")
        lines.append(f"  {_q('dataset ' + m['dataset'])} -> {_q(node)};")
    lines.append("}")
    return "\n".join(lines)
