"""OpenTelemetry for fstore's clients through their ``on_request`` hook (docs/client.md).

Each client call becomes one span, ``fstore.<op>``, that starts when the call started and
ends when it returned (retries included), with the attributes ``fstore.op``,
``fstore.rows``, ``fstore.outcome`` (``ok`` or the error code) and the server's address,
and an error status when the call failed; a histogram ``fstore.client.duration`` (seconds)
records the same. fstore does not depend on OpenTelemetry: install it with
``pip install 'fstore[otel]'`` (opentelemetry-api and -sdk).

Run it against a server (spans printed to the console)::

    python examples/otel_client.py 127.0.0.1 6571
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode


def otel_hook(host: str, port: int, tracer: trace.Tracer | None = None,
              meter: metrics.Meter | None = None) -> Callable[[str, int, float, str], None]:
    """An ``on_request`` hook that records a span and a duration per client call."""
    tracer = tracer or trace.get_tracer("fstore.client")
    meter = meter or metrics.get_meter("fstore.client")
    duration = meter.create_histogram("fstore.client.duration", unit="s",
                                      description="fstore client call time, retries included")

    def on_request(op: str, rows: int, seconds: float, outcome: str) -> None:
        end = time.time_ns()
        attrs: dict[str, Any] = {"fstore.op": op, "fstore.rows": rows, "fstore.outcome": outcome,
                                 "server.address": host, "server.port": port}
        span = tracer.start_span(f"fstore.{op}", kind=SpanKind.CLIENT, start_time=end - int(seconds * 1e9),
                                 attributes=attrs)
        if outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end(end_time=end)
        duration.record(seconds, {"fstore.op": op, "fstore.outcome": outcome})
    return on_request


def main(host: str, port: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    from fstore.client import Client

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    with Client(host, port, on_request=otel_hook(host, port)) as client:
        client.health()
        print(client.info()["project"])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
