"""What a validation rule reports: findings, and the report of one run (its JSON is a contract,
docs/validation.md)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ERROR = "error"
WARNING = "warning"


@dataclass
class Finding:
    """One problem a rule found. ``rule`` is the rule's stable id (PIT, L1..L4, SCHEMA);
    ``rows`` counts the offline or dataset rows concerned, when rows are."""

    rule: str
    severity: str
    message: str
    view: str | None = None
    feature: str | None = None
    rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in ("rule", "severity", "view", "feature", "message", "rows")}


@dataclass
class Report:
    """Every finding of one run; ``ok`` is False when any is an error (the CLI then exits 1)."""

    findings: list[Finding] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)  # the rules that ran, in order

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [f.to_dict() for f in self.findings]}
