"""The online store: the newest row of every entity in LMDB, the writers that fill it
(materialize, bulk load, push, gc) and the reads that serve it (plans, responses).

Above fstore.offline (materialize reads it), below fstore.serving (docs/architecture.md).
``fstore.online.response`` imports neither LMDB nor pyarrow: the network clients use it.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "OnlineStore": ".store",
    "OnlineResponse": ".response", "OnlinePlan": ".response", "Status": ".response",
    "OnlineService": ".service",
    "WriteResult": ".materialize", "materialize": ".materialize", "bulk_load": ".bulk", "gc": ".bulk",
    "build_plan": ".plan",
    "view_status": ".status", "Consumed": ".consumed",
    "push_group": ".push",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
