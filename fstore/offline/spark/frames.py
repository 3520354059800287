"""The offline store's parts as Spark DataFrames, with what the exact-tie rule needs.

Every engine breaks an exact tie (same keys, event time and created time) the local way:
the later run wins, then the later row of its part (fstore.offline.newest, the kernel's
"storage order"). So each row read here carries its run number (``__run``, from its
part's path) and its place in the part (``__pos``, Parquet's row index), and its bucket
(``__bucket``). Times are compared as int64 UTC microseconds; a null created time is
``NULL_CREATED``, older than any other, as in the compiled kernel.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from ...repo.definitions import DTYPES
from ..casting import TS_TYPE
from ..layout import CREATED_TS, EVENT_TS, KEY_TYPES, UNIT
from ..parts import PART_PATTERN

RUN, POS, BUCKET, EV, CR = "__run", "__pos", "__bucket", "__ev", "__cr"
NULL_CREATED = -(2**63)


def read_stored(spark: Any, view: dict[str, Any], paths: list[Path], columns: list[str]) -> Any:
    """The rows of ``paths`` (parts of one view) as stored: keys, event and created time,
    ``columns``, and each row's run, place in its part and bucket. Rows with a null key
    are left out: they can never be joined."""
    from pyspark.sql import functions as F

    keys = view["join_keys"]
    # file: URIs, as a cluster's default file system may be another (the store is a shared mount)
    df = spark.read.schema(_spark_schema(view)).parquet(*["file://" + str(Path(p).absolute()) for p in paths])
    path = F.col("_metadata.file_path")
    df = df.select(
        *dict.fromkeys([*keys, EVENT_TS, CREATED_TS, *columns]),
        F.regexp_extract(path, PART_PATTERN, 2).cast("long").alias(RUN),
        F.col("_metadata.row_index").alias(POS),
        F.regexp_extract(path, PART_PATTERN, 1).cast("int").alias(BUCKET),
    )
    for k in keys:
        df = df.where(F.col(k).isNotNull())
    return df


def read_parts(spark: Any, view: dict[str, Any], paths: list[Path], features: list[str]) -> Any:
    """``read_stored`` with the times as ``__ev`` and ``__cr`` (microseconds, a null created
    time as NULL_CREATED) in place of the stored columns, for comparisons."""
    from pyspark.sql import functions as F

    df = read_stored(spark, view, paths, features)
    return df.select(
        *view["join_keys"],
        F.unix_micros(F.col(EVENT_TS)).alias(EV),
        F.coalesce(F.unix_micros(F.col(CREATED_TS)), F.lit(NULL_CREATED)).alias(CR),
        RUN, POS, BUCKET, *dict.fromkeys(features),
    )


def _spark_schema(view: dict[str, Any]) -> Any:
    """The Spark schema of the stored columns (every part has them), so that no file is
    opened to infer it."""
    from pyspark.sql.pandas.types import from_arrow_schema

    fields = [pa.field(k, KEY_TYPES[view["key_dtypes"][k]]) for k in view["join_keys"]]
    fields += [pa.field(EVENT_TS, TS_TYPE), pa.field(CREATED_TS, TS_TYPE), pa.field(UNIT, pa.int32())]
    fields += [pa.field(f["name"], DTYPES[f["dtype"]]) for f in view["features"]]
    return from_arrow_schema(pa.schema(fields))


def bucket_partitions(spark: Any, n_buckets: int) -> int:
    """Tasks of a stage partitioned by bucket: the session's shuffle partitions, never more
    than there are buckets (a bucket is the unit of work: one key's rows are never split)."""
    return max(1, min(int(spark.conf.get("spark.sql.shuffle.partitions")), n_buckets))


def to_arrow(df: Any) -> pa.Table:
    """A DataFrame collected to the driver as Arrow (no pandas on the way)."""
    return df.toArrow()
