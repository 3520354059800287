"""Compiled kernels behind fstore's point-in-time joins and offline-store bucketing.

All three functions release the GIL for their loops, so independent calls (for
example one per bucket) can run in parallel threads.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

def asof_indices(
    view_keys: npt.NDArray[np.int64],  # (n_v, k), C-contiguous, k >= 1
    view_ts: npt.NDArray[np.int64],  # (n_v,)
    view_created: npt.NDArray[np.int64],  # (n_v,)
    entity_keys: npt.NDArray[np.int64],  # (n_e, k), C-contiguous
    entity_ts: npt.NDArray[np.int64],  # (n_e,)
    entity_valid: npt.NDArray[np.uint8] | npt.NDArray[np.bool_],  # (n_e,)
    ttl_us: int,
) -> npt.NDArray[np.int64]:
    """Pick, for every entity row, the feature-view row a training set may use.

    A training row at time ``t`` must only see feature values that existed at
    ``t`` (no label leakage) and, with a ttl, that were not already stale.
    This is the per-bucket core of that join; the caller maps the returned
    positions back to feature columns.

    Contract:

    * Timestamps are int64 microseconds. ``view_created`` uses ``INT64_MIN``
      for a null created timestamp, which therefore orders before every
      non-null one.
    * Precondition on the view: rows with equal key tuple (a row of
      ``view_keys``) are contiguous, and inside such a group rows are sorted by
      ``(ts, created)`` ascending. Groups may come in any order. The kernel
      verifies this in O(n_v) while it builds its index (even when ``n_e`` is
      0) and raises ``ValueError("view rows are not grouped and sorted ...")``
      naming the first offending row, so the caller can sort stably by
      ``(key, ts, created)`` and retry.
    * Entity row ``i`` matches nothing (result -1) if ``entity_valid[i] == 0``
      (a null key) or its key tuple does not occur in the view.
    * Otherwise the candidates are the rows ``j`` of that key group with
      ``entity_ts[i] - ttl_us <= view_ts[j] <= entity_ts[i]``; both bounds
      inclusive, computed without overflow; no lower bound if ``ttl_us <= 0``.
      The winner is the candidate with the greatest ``(view_ts, view_created,
      j)``: newest ts, then newest created, then the last row in storage
      order. Given the precondition that is the last row of the group with
      ``view_ts <= entity_ts[i]``, kept only if it passes the ttl bound.
    * Key tuples are always compared in full; the internal hash only picks
      where to look. Entity rows are independent: duplicates get identical
      answers.

    Returns an int64 array of length ``n_e`` holding row positions into the
    view (0-based), or -1.

    Raises ``ValueError`` for mismatched lengths or key widths, ``k == 0``,
    a wrong dtype, number of dimensions or a non-C-contiguous array (Cython's
    buffer checks), an ungrouped/unsorted view, or more than 2**31 - 1 key
    groups; ``OverflowError`` if ``ttl_us`` does not fit int64;
    ``MemoryError`` if the index cannot be allocated.
    """

def hash_keys(columns: Sequence[pa.Array | pa.ChunkedArray]) -> npt.NDArray[np.uint64]:
    """Hash each row's key tuple to the 64-bit value that decides its on-disk bucket.

    The result is persisted layout: files written today must be found by any
    later version, on any platform, from any language. So the algorithm is
    fixed and specified here exactly (all arithmetic modulo 2**64):

    * Per value, by column type:

      - int64: ``XXH64(seed=0)`` of the value's 8-byte little-endian
        two's-complement encoding (host byte order does not matter).
      - string / large_string: ``XXH64(seed=0)`` of the value's UTF-8 bytes
        (the empty string hashes as ``XXH64(b"") = 0xEF46DB3751D8E999``);
        string and large_string of equal text hash the same.
      - null (bit clear in the validity bitmap, any column type):
        ``NULL_HASH = 0x13198A2E03707344``; bytes under a null slot are
        never read.

      XXH64 is the reference xxHash64 (e.g. ``xxhash.xxh64_intdigest(data,
      seed=0)`` in Python).

    * Per row, folding the columns in the given order::

          fmix64(x) = x ^= x >> 33; x *= 0xFF51AFD7ED558CCD;
                      x ^= x >> 33; x *= 0xC4CEB9FE1A85EC53; x ^= x >> 33
          h = ROW_SEED = 0x243F6A8885A308D3
          for each column c:  h = fmix64((h * 0x9E3779B185EBCA87) ^ v_c)

    Rows are read straight from the Arrow buffers honoring ``Array.offset``,
    and a ChunkedArray is hashed chunk by chunk, so a slice or any chunking of
    the same values gives the same hashes. Columns may be chunked differently
    from each other.

    Raises ``TypeError`` (naming the type) for a column that is not a pyarrow
    Array/ChunkedArray of int64, string or large_string (cast narrower ints
    to int64 first, and decode dictionaries); ``ValueError`` for no columns,
    columns of different lengths, or buffers inconsistent with the array.
    """

def bucket_of(hashes: npt.NDArray[np.uint64], n_buckets: int) -> npt.NDArray[np.int32]:
    """Reduce ``hash_keys`` output to bucket numbers in ``[0, n_buckets)``.

    Exactly ``hashes % n_buckets`` (unsigned), also persisted layout. Plain
    modulo keeps resharding cheap when ``n_buckets`` is a power of two:
    doubling it splits bucket ``b`` into ``b`` and ``b + n_buckets`` and
    moves no row anywhere else. The hash's finalizer already mixes the low
    bits, so modulo has no bias worth a multiply-shift reduction.

    ``hashes`` is a 1-D uint64 array (any stride). Raises ``ValueError`` if
    ``n_buckets`` is not in ``[1, 2**31 - 1]`` or on a wrong dtype/ndim.
    """
