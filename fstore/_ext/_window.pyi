"""Compiled kernels of windowed aggregations (fstore.offline.windows, fstore.offline.tiles).

Keys are (n, k) C-contiguous int64 matrices (string keys as codes of one dictionary shared
by every argument of a call); times are int64 UTC microseconds; ``created`` times use
NO_TIME (-2**63) where a source has none. Values are int64 or float64, the same type in
every value argument of one call; ``valid`` is 0 where a value is null (or NaN) and is
then ignored. All loops release the GIL, so buckets can be processed in threads.
"""

import numpy as np
import numpy.typing as npt

Values = npt.NDArray[np.int64] | npt.NDArray[np.float64]

def build_tiles(
    keys: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], created: npt.NDArray[np.int64],
    values: Values, valid: npt.NDArray[np.uint8], grain: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Values, npt.NDArray[np.int64], Values, Values, Values,
           npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Partial aggregates of events sorted by (key, event time), one per (key, tile).

    A tile is [s, s + grain) with s a multiple of grain (floor, so times before 1970 too).
    Returns (first event index of the tile, for its key; tile start; sum; count of valid
    values; min; max; last; last's event time; last's created time). min/max/last are 0
    and the times NO_TIME where count is 0. ``last`` is the valid value with the newest
    (event time, created time), a full tie going to the larger value. ValueError when the
    events are not sorted.
    """

def window_aggregate(
    ev_keys: npt.NDArray[np.int64], ev_ts: npt.NDArray[np.int64], ev_created: npt.NDArray[np.int64],
    ev_values: Values, ev_valid: npt.NDArray[np.uint8],
    tile_keys: npt.NDArray[np.int64], tile_start: npt.NDArray[np.int64], tile_sum: Values,
    tile_count: npt.NDArray[np.int64], tile_min: Values, tile_max: Values, tile_last: Values,
    tile_last_ts: npt.NDArray[np.int64], tile_last_created: npt.NDArray[np.int64],
    q_keys: npt.NDArray[np.int64], q_ts: npt.NDArray[np.int64], q_valid: npt.NDArray[np.uint8],
    window: int, grain: int,
) -> tuple[Values, npt.NDArray[np.int64], Values, Values, Values]:
    """(sum, count, min, max, last) per query row over the valid values whose event time is
    in (t - window, t]: the tiles wholly inside the window (several tiles of one (key,
    start), e.g. from several ingest runs, all count) plus the events of the partial tiles
    at both edges. The tiles must be built with ``grain`` from exactly the events given.
    min/max/last are 0 where count is 0; rows with q_valid 0 get count 0. ValueError when
    events or tiles are not sorted by (key, time).
    """

def newest_in_window(
    ev_keys: npt.NDArray[np.int64], ev_ts: npt.NDArray[np.int64], q_keys: npt.NDArray[np.int64],
    q_ts: npt.NDArray[np.int64], q_valid: npt.NDArray[np.uint8], window: int,
) -> npt.NDArray[np.int64]:
    """The newest event time in (t - window, t] per query row (every event, whatever its
    values), NO_TIME where there is none: what a ttl is compared with."""

def valid_until(
    ev_keys: npt.NDArray[np.int64], ev_ts: npt.NDArray[np.int64], q_keys: npt.NDArray[np.int64],
    q_ts: npt.NDArray[np.int64], q_valid: npt.NDArray[np.uint8], windows: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Per query row, the first time its aggregates as of t can differ from the value at t:
    the oldest event in a window leaving it (oldest + window) or the key's next event after
    t; INT64_MAX when neither exists (and where q_valid is 0)."""
