"""The Spark engine: the offline engine for work past one machine (``offline_store:
{engine: spark}``). It reads and writes the same offline layout as the local engine and
gives the same results; the work partitions by entity-key bucket (docs/scaling.md).

Part of the offline layer; pyspark is imported only when the engine is made.
"""
from ..._lazy import lazy_exports

_EXPORTS = {"SparkEngine": ".engine", "spark_session": ".session"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
