"""Locust load test of the feature server, built on fstore's real blocking client.

Locust's custom-client pattern: each request is timed here and reported to
``environment.events.request`` so Locust's statistics and charts see it.

    fstore -r REPO serve --port 6570 &
    locust -f loadtests/locustfile.py --headless -u 20 -r 10 -t 30s \\
        --fstore-port 6570 --fstore-service fraud_v1 --fstore-entities 1000

Options (also as environment variables FSTORE_*): the server's host and port, the
feature service to read, how many entity ids exist (ids 1..N are drawn at random),
the batch size, and the view to push to (no pushes when empty).
"""
from __future__ import annotations

import random
import time
from typing import Any

from locust import User, between, events, task

from fstore.client import Client


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--fstore-port", type=int, default=6570, env_var="FSTORE_PORT")
    parser.add_argument("--fstore-service", default="fraud_v1", env_var="FSTORE_SERVICE")
    parser.add_argument("--fstore-entities", type=int, default=1000, env_var="FSTORE_ENTITIES")
    parser.add_argument("--fstore-batch", type=int, default=100, env_var="FSTORE_BATCH")
    parser.add_argument("--fstore-push-view", default="", env_var="FSTORE_PUSH_VIEW")
    parser.add_argument("--fstore-keys", default="customer_id,driver_id", env_var="FSTORE_KEYS",
                        help="the join key columns of the service, comma-separated")


class FeatureServerUser(User):
    """An inference service: mostly single lookups, some batches, a few pushes."""

    wait_time = between(0.0, 0.002)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        host = (self.host or "127.0.0.1").replace("tcp://", "").split(":")[0]
        self.client = Client(host, opts.fstore_port, timeout=2.0, pool_size=1)
        self.keys = [k for k in opts.fstore_keys.split(",") if k]
        self.opts = opts

    def on_stop(self) -> None:
        self.client.close()

    def _row(self) -> dict[str, int]:
        return {k: random.randint(1, self.opts.fstore_entities) for k in self.keys}

    def _timed(self, name: str, fn: Any, size: int) -> None:
        start = time.perf_counter()
        exc = None
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported to Locust
            exc = e
        events.request.fire(request_type="fstore", name=name, response_time=(time.perf_counter() - start) * 1000,
                            response_length=size, exception=exc, context={})

    @task(10)
    def get_one(self) -> None:
        row = self._row()
        self._timed("GET 1", lambda: self.client.get_online_features(
            feature_service=self.opts.fstore_service, entity_rows=[row]), 1)

    @task(2)
    def get_batch(self) -> None:
        rows = [self._row() for _ in range(self.opts.fstore_batch)]
        self._timed(f"GET {len(rows)}", lambda: self.client.get_online_features(
            feature_service=self.opts.fstore_service, entity_rows=rows), len(rows))

    @task(1)
    def push(self) -> None:
        view = self.opts.fstore_push_view
        if not view:
            return
        info = self._view_info(view)
        if info is None:
            return
        row: dict[str, Any] = {k: random.randint(1, self.opts.fstore_entities) for k in info["join_keys"]}
        row[info["ts"]] = int(time.time() * 1e6)
        if info["created"]:
            row[info["created"]] = row[info["ts"]]
        for f in info["features"]:
            row[f["name"]] = _sample(f["dtype"])
        self._timed("PUSH 1", lambda: self.client.push(view, [row]), 1)

    def _view_info(self, view: str) -> dict[str, Any] | None:
        if not hasattr(self, "_views"):
            self._views = {f"{v['name']}": v for v in self.client.info()["views"]}
        v = self._views.get(view)
        if v is None:
            return None
        return {"join_keys": v["join_keys"], "features": v["features"], "ts": v["timestamp_field"],
                "created": v["created_timestamp_field"]}


def _sample(dtype: str) -> Any:
    if dtype.startswith("int"):
        return random.randint(0, 100)
    if dtype.startswith("float"):
        return random.random() * 100
    if dtype == "bool":
        return random.random() < 0.5
    return f"v{random.randint(0, 9)}"
