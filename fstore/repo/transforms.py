"""Batch transformations of a feature view: parsing, the stored record, and whether ingest
may run one incrementally (docs/transformations.md, "SQL and Python transformations").

A view's ``transform`` is either ``{sql: "SELECT ... FROM source"}``, run by DuckDB over the
source read as Arrow (the table ``source``), or a Python function from a pyarrow Table to a
pyarrow Table: ``{python: NAME}`` in YAML, ``transform=fn`` in Python definitions.

The registry stores ``{"sql": text, "row_wise": bool}`` or ``{"python": {function, file,
source_sha256}, "row_wise": bool}`` (fstore.repo.functions). ``row_wise`` decides the ingest
mode: a row-wise transformation runs on new and changed source files alone (incremental),
any other recomputes the view's whole history (full).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..errors import InvalidDefinition
from .functions import declare, find_declared, row_wise as fn_row_wise

#: the name of the source's table in a SQL transformation
SOURCE_TABLE = "source"
#: the ingest modes, as ``fstore plan`` and ``fstore ingest --json`` spell them
INCREMENTAL, FULL, PLAIN = "incremental", "full", "plain"


def parse_transform(value: Any, *, obj: str) -> tuple[dict[str, Any] | None, Callable[..., Any] | None]:
    """A view's ``transform`` as written: (``{"sql": text}`` or ``{"python": name}``, the
    function when given as one). Checked for shape only; ``resolve`` completes it."""
    if value is None:
        return None, None
    if callable(value):
        return {"python": getattr(value, "__name__", repr(value))}, value
    if isinstance(value, dict) and len(value) == 1:
        (kind, body), = value.items()
        if kind == "sql" and isinstance(body, str) and body.strip():
            return {"sql": body.strip()}, None
        if kind == "python" and callable(body):
            return {"python": getattr(body, "__name__", repr(body))}, body
        if kind == "python" and isinstance(body, str) and body.strip():
            return {"python": body.strip()}, None
    if isinstance(value, dict) and set(value) <= {"sql", "python", "row_wise"} and "row_wise" in value:
        raise InvalidDefinition("row_wise is declared on the function (@transformation(row_wise=True)); "
                                "for SQL it is read from the statement", obj=obj, field="transform")
    raise InvalidDefinition(f"expected {{sql: \"SELECT ... FROM {SOURCE_TABLE}\"}} or {{python: function_name}}, "
                            f"got {value!r}", obj=obj, field="transform")


def resolve(written: dict[str, Any], fn: Callable[..., Any] | None, root: Path, files: list[Path],
            *, obj: str) -> dict[str, Any]:
    """The registry record of a transformation: SQL with its row-wise verdict, or the function
    found (given, or by name in the Python definition ``files``) as a stored reference."""
    if "sql" in written:
        return {"sql": written["sql"], "row_wise": sql_row_wise(written["sql"], obj=obj)[0]}
    if fn is None:
        fn = find_declared(written["python"], files, root, obj=obj, field="transform.python")
    return {"python": declare(fn, root, obj=obj, field="transform.python"), "row_wise": fn_row_wise(fn)}


def ingest_mode(view: dict[str, Any]) -> tuple[str, str]:
    """(mode, why) of a view record's ingest: plain (no transformation), incremental or full."""
    t = view.get("transform")
    if not t:
        return PLAIN, "no transformation: source columns are read as they are"
    if "sql" in t:
        ok, why = sql_row_wise(t["sql"], obj=f"feature_view {view['name']}")
        return (INCREMENTAL if ok else FULL), f"SQL {why}"
    name = t["python"]["function"]
    if t.get("row_wise"):
        return INCREMENTAL, f"Python function {name} is declared row-wise: only new and changed source files are read"
    return FULL, (f"Python function {name} is not declared row-wise (@transformation(row_wise=True)): "
                  "every ingest recomputes the whole history")


def sql_row_wise(sql: str, *, obj: str) -> tuple[bool, str]:
    """Whether a SQL transformation computes each output row from one source row, decided from
    DuckDB's parsed statement (``json_serialize_sql``), and why. Anything that looks at other
    rows (aggregate, window, DISTINCT, ORDER BY/LIMIT, a join, a subquery, WITH, UNION) is not."""
    import duckdb

    con = duckdb.connect()
    try:
        doc = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
        if doc.get("error"):
            raise InvalidDefinition(f"the SQL does not parse: {doc.get('error_message')}", obj=obj,
                                    field="transform.sql")
        if len(doc["statements"]) != 1:
            raise InvalidDefinition("the SQL must be exactly one SELECT statement", obj=obj, field="transform.sql")
        aggregates = {r[0] for r in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'aggregate'").fetchall()}
    finally:
        con.close()
    reason = _not_row_wise(doc["statements"][0]["node"], aggregates | {"count_star"})
    if reason:
        return False, f"{reason}: every ingest recomputes the whole history"
    return True, "is row-wise (no aggregate, window, DISTINCT, ORDER BY/LIMIT, join or subquery): " \
                 "only new and changed source files are read"


def _not_row_wise(node: dict[str, Any], aggregates: set[str]) -> str | None:
    """Why a parsed SELECT looks at more than one source row, or None when it does not."""
    if node.get("type") != "SELECT_NODE":
        return f"combines queries ({node.get('setop_type', node.get('type'))})"
    if node.get("cte_map", {}).get("map"):
        return "uses WITH"
    for mod in node.get("modifiers", []):
        return {"DISTINCT_MODIFIER": "uses DISTINCT", "ORDER_MODIFIER": "uses ORDER BY",
                "LIMIT_MODIFIER": "uses LIMIT"}.get(mod["type"], f"uses {mod['type']}")
    if node.get("group_expressions") or node.get("group_sets"):
        return "groups rows (GROUP BY)"
    if node.get("having") is not None or node.get("qualify") is not None:
        return "filters groups (HAVING/QUALIFY)"
    table = node.get("from_table", {})
    if table.get("type") != "BASE_TABLE" or table.get("table_name", "").lower() != SOURCE_TABLE:
        kind = {"JOIN": "joins tables", "SUBQUERY": "reads a subquery"}.get(table.get("type"), "")
        return kind or f"reads from {table.get('table_name') or table.get('type')}, not only {SOURCE_TABLE}"
    return _expr_reason([node.get("select_list"), node.get("where_clause")], aggregates)


def _expr_reason(value: Any, aggregates: set[str]) -> str | None:
    if isinstance(value, list):
        return next((r for v in value if (r := _expr_reason(v, aggregates))), None)
    if not isinstance(value, dict):
        return None
    cls = value.get("class")
    if cls == "WINDOW":
        return f"uses a window function ({value.get('function_name')})"
    if cls == "SUBQUERY":
        return "uses a subquery"
    if cls == "FUNCTION" and value.get("function_name") in aggregates:
        return f"uses an aggregate ({value.get('function_name')})"
    return next((r for v in value.values() if (r := _expr_reason(v, aggregates))), None)


def transform_change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    """How an applied version's transformation changed (None: it did not)."""
    if old == new:
        return None
    if not old or not new:
        return f"transformation {'added' if new else 'removed'}"
    if "sql" in old and "sql" in new:
        return f"SQL {old['sql']!r} -> {new['sql']!r}"
    if "python" in old and "python" in new and old["python"]["function"] == new["python"]["function"]:
        if old["python"]["source_sha256"] != new["python"]["source_sha256"]:
            return f"the source of function {new['python']['function']} changed"
        return f"row_wise: {old.get('row_wise')} -> {new.get('row_wise')}"
    return f"{describe(old)} -> {describe(new)}"


def describe(t: dict[str, Any] | None) -> str:
    if not t:
        return "none"
    return f"SQL {t['sql']!r}" if "sql" in t else f"Python function {t['python']['function']}"
