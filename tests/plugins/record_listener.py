"""Served-read listeners loaded by a real server in tests (``server.listeners`` in fstore.yaml).

``record`` appends each event, decoded, as a JSON line to $FSTORE_TEST_EVENTS; ``explode``
raises on every event (a listener must never fail a read).
"""
from __future__ import annotations

import json
import os

from fstore.monitoring.events import ServedRead


def _plain(v):
    if isinstance(v, bytes):
        return v.hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def record(event: ServedRead) -> None:
    doc = {"time_us": event.time_us, "request_id": event.request_id, "path": event.path, "worker": event.worker,
           "service": event.service, "features": event.features, "registry_version": event.registry_version,
           "caller_request_id": event.caller_request_id, "client": event.client, "rows": event.rows,
           "seconds": event.seconds, "model": event.model,
           "names": event.feature_names, "entities": event.entity_columns(),
           "values": [[_plain(v) for v in col] for col in event.value_columns()],
           "statuses": [[s.name for s in col] for col in event.status_columns()],
           "timestamps": event.timestamp_columns()}
    with open(os.environ["FSTORE_TEST_EVENTS"], "a") as f:
        f.write(json.dumps(doc) + "\n")


def explode(event: ServedRead) -> None:
    raise RuntimeError("this listener always fails")
