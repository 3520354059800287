"""Rule L1, late-arriving data: the offline layer finds the late rows
(fstore.offline.late.late_rows, docs/validation.md "L1"); this turns them into findings."""
from __future__ import annotations

from .context import Context
from .findings import Finding


def check_late(ctx: Context) -> list[Finding]:
    """An error per ingested view version (joined on event time) with rows created later than
    their event time by more than the view's max_delay (else its freshness_sla)."""
    from ..offline.late import late_rows

    return [Finding(rule=f["rule"], severity=f["severity"], message=f["message"], view=f["view"],
                    feature=f["feature"], rows=f["rows"])
            for view in ctx.ingested() for f in late_rows(ctx.engine.store, view)]
