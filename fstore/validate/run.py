"""Running the validation gates over one repository (``fstore validate``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config import RepoConfig
from ..errors import InvalidArgument
from ..offline.engines import make_engine
from ..repo.registry import Registry
from .context import Context
from .findings import Report
from .rules import RULES, load_rule


def validate_repository(repo_path: str | Path = ".", *, sample: int = 200, seed: int = 0,
                        dataset: str | None = None, label: str | None = None,
                        rules: Sequence[str] | None = None) -> Report:
    """Every rule's findings (``rules``: only those ids). The data rules read the applied
    registry and the offline store; SCHEMA checks the definitions as ``fstore plan`` does."""
    if (dataset is None) != (label is None):
        raise InvalidArgument("give --dataset and --label together (the L3 check needs both)")
    if sample < 1:
        raise InvalidArgument(f"sample must be at least 1, got {sample}")
    unknown = [r for r in rules or () if r not in RULES]
    if unknown:
        raise InvalidArgument(f"unknown rule {unknown[0]!r}; known: {', '.join(RULES)}")
    config = RepoConfig.load(repo_path)
    engine = make_engine(config)
    registry = Registry(config, engine.source_schema)
    ctx = Context(config, engine, registry, registry.load(), sample=sample, seed=seed, dataset=dataset, label=label)
    report = Report()
    for rule_id in rules or RULES:
        report.rules.append(rule_id)
        report.findings += load_rule(rule_id)(ctx)
    return report
