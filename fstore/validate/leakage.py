"""Rules L2 (label leakage by name) and L3 (target leakage by value).

Labels are declared on the source that holds them (``labels: [is_fraud]`` on a source),
or named on the command line (``--label COL`` with ``--dataset FILE``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..offline.historical import load_entity_df
from ..repo.names import view_name
from .context import Context
from .findings import ERROR, WARNING, Finding

#: L3 thresholds: a single feature's AUC (either direction) for a binary label, |Spearman| for a numeric one
AUC_LIMIT = 0.99
SPEARMAN_LIMIT = 0.99


def declared_labels(ctx: Context) -> dict[str, str]:
    """label column -> where it was declared (a source, or --label)."""
    out = {col: f"source {name}" for name, src in ctx.sources.items() for col in src.get("labels", [])}
    if ctx.label:
        out.setdefault(ctx.label, "--label")
    return out


def check_label_names(ctx: Context) -> list[Finding]:
    """L2: a feature named as a label; every feature of a view reading a label's source."""
    labels = declared_labels(ctx)
    findings = []
    for view in ctx.views.values():
        name = view_name(view)
        src = ctx.sources.get(view["source"], {})
        for f in view["features"]:
            if f["name"] in labels:
                findings.append(Finding("L2", ERROR, f"feature {name}:{f['name']} has the name of a label "
                                        f"(declared by {labels[f['name']]}): a model would be trained on its "
                                        "own target", view=name, feature=f["name"]))
            elif src.get("labels"):
                findings.append(Finding("L2", ERROR, f"feature {name}:{f['name']} is read from source "
                                        f"{view['source']}, which holds the label(s) {', '.join(src['labels'])}: "
                                        "features and labels from one table leak the outcome", view=name,
                                        feature=f["name"]))
    return findings


def check_label_values(ctx: Context) -> list[Finding]:
    """L3 (with --dataset and --label): a feature column that alone separates the label."""
    if not ctx.dataset or not ctx.label:
        return []
    table = load_entity_df(ctx.dataset)
    if ctx.label not in table.column_names:
        return [Finding("L3", ERROR, f"{ctx.dataset} has no label column {ctx.label!r} "
                                     f"(columns: {', '.join(table.column_names)})")]
    skip = {ctx.label, ctx.config.entity_timestamp_column, *(k for v in ctx.views.values() for k in v["join_keys"])}
    label = table.column(ctx.label)
    findings = []
    for name in table.column_names:
        if name in skip or not _numeric(table.column(name).type):
            continue
        figure = separation(table.column(name), label)
        if figure is None:
            continue
        metric, value, rows = figure
        limit = AUC_LIMIT if metric == "AUC" else SPEARMAN_LIMIT
        if (max(value, 1 - value) if metric == "AUC" else abs(value)) >= limit:
            findings.append(Finding("L3", WARNING, f"feature {name} alone predicts label {ctx.label!r}: "
                                    f"{metric} {value:.4f} over {rows:,} rows (limit {limit}): likely target "
                                    "leakage", feature=name, rows=rows))
    return findings


def separation(feature: pa.ChunkedArray, label: pa.ChunkedArray) -> tuple[str, float, int] | None:
    """("AUC", auc, rows) for a binary label, ("Spearman", rho, rows) for a numeric one, over the
    rows where both are set; None when the figure is undefined (too few rows, a constant)."""
    both = pc.and_(pc.is_valid(feature), pc.is_valid(label))
    x = _floats(feature.filter(both))
    y_col = label.filter(both)
    keep = ~np.isnan(x)
    x = x[keep]
    classes = pc.unique(y_col).to_pylist()
    if len(classes) == 2 or pa.types.is_boolean(label.type):
        if len(classes) < 2:
            return None
        pos = np.asarray(pc.equal(y_col, pa.scalar(max(classes), y_col.type)).to_numpy(zero_copy_only=False))[keep]
        return ("AUC", auc(x, pos), len(x)) if 0 < pos.sum() < len(pos) else None
    if not _numeric(label.type):
        return None
    y = _floats(y_col)[keep]
    rho = spearman(x, y)
    return None if rho is None else ("Spearman", rho, len(x))


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """The ROC AUC of ``score`` for ``positive``, by ranks (Mann-Whitney U / (n_pos * n_neg))."""
    r = ranks(score)
    n_pos = int(positive.sum())
    n_neg = len(score) - n_pos
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho (Pearson's correlation of the ranks); None with fewer than 3 rows or a constant."""
    if len(x) < 3:
        return None
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return None if den == 0 else float((rx * ry).sum() / den)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def _floats(col: Any) -> np.ndarray:
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
