"""Rule SCHEMA: the checks ``fstore plan`` runs (definitions against each other, the sources'
real columns and what is applied), as findings."""
from __future__ import annotations

from ..errors import DefinitionErrors, FstoreError, InvalidDefinition
from .context import Context
from .findings import ERROR, WARNING, Finding

RULE = "SCHEMA"


def check_schema(ctx: Context) -> list[Finding]:
    """One error per definition problem plan reports, a warning per plan warning; an error
    when nothing is applied yet (the other rules read the applied registry)."""
    findings: list[Finding] = []
    try:
        plan = ctx.registry.plan()
    except DefinitionErrors as exc:
        findings += [_finding(e) for e in exc.errors]
    except InvalidDefinition as exc:
        findings.append(_finding(exc))
    except FstoreError as exc:
        findings.append(Finding(RULE, ERROR, str(exc)))
    else:
        findings += [Finding(RULE, WARNING, w) for w in plan.warnings]
    if ctx.doc is None:
        findings.append(Finding(RULE, ERROR, "nothing is applied yet: run `fstore apply` (and `fstore ingest`) "
                                             "so the data rules have a registry to read"))
    return findings


def _finding(exc: InvalidDefinition) -> Finding:
    view = exc.obj.split(" ", 1)[1] if exc.obj and exc.obj.startswith("feature_view ") else None
    feature = None
    if exc.field and exc.field.startswith("features[") and "]" in exc.field:
        feature = exc.field[len("features["):exc.field.index("]")]
    return Finding(RULE, ERROR, str(exc), view=view, feature=feature)
