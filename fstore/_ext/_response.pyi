"""The compiled fields of an online response (no LMDB, no pyarrow: the clients use it too)."""

from typing import Any, TypeVar

class ResponseBase:
    """The fields of an online response, set from C by ``_online.read``."""

    entity_rows: Any
    plan: Any
    _values: Any
    _raw_status: Any
    _raw_ts: Any
    _flat: bool

def columns_dict(key_columns: list[str], entity_rows: list[dict[str, Any]], names: list[str],
                 values: list[Any]) -> dict[str, list[Any]]:
    """{join key: [values], ..., feature: [values], ...} of a flat response."""

_R = TypeVar("_R", bound=ResponseBase)

def make_response(cls: type[_R], entity_rows: list[dict[str, Any]], plan: Any, values: Any,
                  status: bytes | bytearray | None, ts: bytes | bytearray | None) -> _R:
    """A response of class ``cls`` with feature-major ``values``, built without ``__init__``."""
