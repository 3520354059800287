"""The quickstart repository's text: fstore.yaml, the YAML definitions and the Python file of
its functions (fstore.quickstart writes them and the generated data beside them).

Two services: ``fraud_v1`` reads stored features only (so it keeps the compiled serving path),
``pricing_v1`` shows the three kinds of transformation of docs/transformations.md on the same
trips: a SQL view (a derived column), windowed aggregations (7d fares per driver) and a
request-time feature (the requested trip's distance times a fetched feature).
"""
from __future__ import annotations

FSTORE_YAML = "project: rides\n"

DEFS_YAML = """\
entities:
  - name: customer
    join_keys: [customer_id]
    description: A rider with a payment card on file
  - name: driver
    join_keys: [driver_id]
sources:
  - name: customer_stats_src
    path: data/customer_stats.parquet
    timestamp_field: event_timestamp
    created_timestamp_field: created_timestamp
  - name: trips_src
    path: data/trips/*.csv
    timestamp_field: ts
feature_views:
  - name: customer_stats
    version: 1
    entities: [customer]
    source: customer_stats_src
    ttl: 7d
    owner: risk-team@example.com
    freshness_sla: 1h
    as_of: created_timestamp   # its late corrections reach training sets only once created
    description: Rolling customer spend statistics
    tags: {team: risk}
    features:
      - {name: avg_amount_7d, dtype: float64, default: 0.0}
      - {name: txn_count_7d, dtype: int64}
      - {name: segment, dtype: string}
  - name: customer_driver
    version: 1
    entities: [customer, driver]
    source: trips_src
    ttl: 90d
    owner: marketplace@example.com
    features:
      - {name: trips_together, dtype: int64, default: 0}
  - name: driver_trips             # a SQL transformation: a derived column, cancelled trips left out
    version: 1
    entities: [driver]
    source: trips_src
    ttl: 7d
    owner: marketplace@example.com
    description: The fare per km of the driver's latest completed trip
    transform:
      sql: SELECT driver_id, ts, fare / distance_km AS fare_per_km FROM source WHERE distance_km > 0
    features:
      - {name: fare_per_km, dtype: float64}
  - name: driver_fares             # windowed aggregations over the trips, per driver
    version: 1
    entities: [driver]
    source: trips_src
    ttl: 7d
    owner: marketplace@example.com
    description: The driver's fares in the last 7 days
    aggregations:
      - {column: fare, function: sum, window: 7d, name: fares_7d}
      - {column: fare, function: count, window: 7d, name: trips_7d}
    features:
      - {name: fares_7d, default: 0.0}
request_views:
  - name: quote                    # computed at read time: features/pricing.py
    function: quote_fare
    request: {trip_km: float64}    # a field of the request (a column of the training entity rows)
    inputs: ["driver_trips:fare_per_km"]
    features:
      - {name: quoted_fare, dtype: float64}
feature_services:
  - name: fraud_v1
    features: [customer_stats:avg_amount_7d, customer_stats:txn_count_7d, customer_driver]
  - name: pricing_v1
    features: [driver_trips:fare_per_km, driver_fares, quote]
"""

PRICING_PY = '''\
"""Request-time features of the quickstart (features/defs.yaml, request_views)."""
import pyarrow.compute as pc


def quote_fare(cols):
    """The requested trip's price at the driver's latest rate: null where the driver has none."""
    return {"quoted_fare": pc.multiply(cols["trip_km"], cols["fare_per_km"])}
'''
