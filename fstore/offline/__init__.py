"""The offline store and its engines: raw data loaded into per-view Parquet history,
point-in-time correct training sets, and dataset lineage.

Above fstore.repo, below fstore.online (docs/architecture.md). An engine (``OfflineEngine``)
is the small interface behind which ingest and joins run; the local one is the default.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "OfflineStore": ".store", "IngestResult": ".store", "LogRun": ".log",
    "OfflineEngine": ".engine", "LocalEngine": ".engine", "make_engine": ".engines",
    "Loader": ".loaders", "SourceUnit": ".loaders", "get_loader": ".loaders",
    "get_historical_features": ".historical", "load_entity_df": ".historical",
    "dataset_lineage": ".datasets", "write_lineage": ".datasets", "write_dataset": ".datasets",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
