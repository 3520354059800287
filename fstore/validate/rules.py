"""The registry of validation rules: stable id -> ``module:function`` taking a Context and
returning findings. A new rule is one function in its own module and one line here; rules
run in this order (SCHEMA first: the others read the applied registry)."""
from __future__ import annotations

import importlib
from typing import Callable

from .context import Context
from .findings import Finding

Rule = Callable[[Context], list[Finding]]

RULES: dict[str, str] = {
    "SCHEMA": "fstore.validate.schema:check_schema",
    "PIT": "fstore.validate.pit:check_pit",
    "L1": "fstore.validate.late:check_late",
    "L2": "fstore.validate.leakage:check_label_names",
    "L3": "fstore.validate.leakage:check_label_values",
    "L4": "fstore.validate.hygiene:check_hygiene",
}


def load_rule(rule_id: str) -> Rule:
    """The function of a rule id."""
    module, _, name = RULES[rule_id].partition(":")
    return getattr(importlib.import_module(module), name)
