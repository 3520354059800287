"""The engine's SparkSession: one per process, made from ``offline_store.spark``.

``master`` null means ``local[N]`` with this machine's cores. fstore's own settings come
first and a user's ``conf`` overrides them: times are compared as UTC microseconds (so
the session time zone only matters for what Spark shows), Arrow carries every batch
between the JVM and Python, and the console progress bar is off (fstore draws its own).
On a cluster the executors need fstore (and pyarrow) installed in the Python that
``spark.pyspark.python`` names: ingest's tasks type rows with fstore's own code.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any

DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
}

_lock = threading.Lock()


def master_url(settings: dict[str, Any]) -> str:
    return settings.get("master") or f"local[{os.cpu_count() or 1}]"


def spark_session(settings: dict[str, Any]) -> Any:
    """The process's SparkSession, made on first use with ``settings`` (offline_store.spark).
    A session already running is reused as it is: Spark allows one per process."""
    from pyspark.sql import SparkSession

    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        builder = SparkSession.builder.master(master_url(settings)).appName(settings.get("app_name") or "fstore")
        conf = {**DEFAULT_CONF, **(_local_conf() if master_url(settings).startswith("local") else {}),
                **{k: _text(v) for k, v in (settings.get("conf") or {}).items()}}
        if master_url(settings).startswith("local"):  # SparkContext reads the workers' Python from here
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        return session


def _local_conf() -> dict[str, str]:
    """A local master's Python workers run this interpreter (and so this fstore), and the
    driver listens on the loopback interface only."""
    return {"spark.pyspark.python": sys.executable, "spark.pyspark.driver.python": sys.executable,
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
