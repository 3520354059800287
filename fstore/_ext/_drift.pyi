"""Compiled passes behind ``fstore drift``'s numeric features (fstore.monitoring.drift_numbers).

Every function takes one column, a pyarrow ``Array`` or ``ChunkedArray`` of int32, int64,
float32, float64 or timestamp (its int64 ticks), and reads its buffers in place: each
chunk's offset honoured, its validity bitmap read only when it has nulls. Each value is
taken as a float64 exactly as numpy's ``astype(np.float64)`` converts it.

A **value** is a slot that is neither null nor NaN; the others are **nulls** (NaN counts
as a null, as the drift rule says). Infinities are values.

The loops run without the GIL, so calls on different columns run in parallel threads.
They allocate nothing per value (``order_statistics`` allocates a histogram and a buffer
for the few buckets it selects in).

Raises ``TypeError`` for another column type, ``ValueError`` for buffers shorter than
their arrays (and for the argument errors named below).
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

Column = pa.Array | pa.ChunkedArray

def scan(column: Column) -> tuple[int, int, float, float | None, float | None]:
    """``(values, nulls, sum, min, max)`` of the column's values.

    ``sum``: blocks of up to 128 values summed by eight interleaved partial sums, the
    block sums added with Neumaier's compensation; its error is within about 20 ulps of
    the sum of ``|v|``, like numpy's pairwise sum (not bit for bit the same). A total that
    is not finite is the plain sum's (``inf``, ``-inf`` or ``nan``, as numpy's). ``min``/``max`` compare with ``<``/``>``, so
    between ``0.0`` and ``-0.0`` the first met wins; ``None`` when there is no value.
    """

def bins(column: Column, edges: npt.ArrayLike, centre: float) -> tuple[npt.NDArray[np.int64], float]:
    """``(counts, spread)``: per value, its bin is the number of ``edges`` it is ``>=``
    (``edges``: at most 15 float64, ascending as ``np.unique`` returns them, NaN last; a
    value is never ``>=`` a NaN edge; the order is not checked; a branchless binary search
    over them padded to 15), so with ``k`` edges
    there are ``k + 1`` counts: bin 0 below ``edges[0]``, bin ``i`` in
    ``[edges[i-1], edges[i])``, bin ``k`` at or above ``edges[-1]``. With no edges, one
    count: the number of values.

    ``spread`` is the sum over the values of ``(v - centre) ** 2``, summed like ``scan``'s
    sum: with ``centre`` the mean, ``sqrt(spread / values)`` is the population std.
    """

def order_statistics(column: Column, ranks: Sequence[int] | npt.NDArray[np.int64], count: int,
                     low: float, high: float) -> npt.NDArray[np.float64]:
    """The values at the 0-based ``ranks`` of the ascending order of the column's values:
    ``np.sort(values)[ranks]``, without a sort.

    ``count``, ``low`` and ``high`` are the column's values, min and max as ``scan``
    returned them. Method: a histogram of at most 2**16 buckets over the values' order-
    preserving 64-bit keys between ``low`` and ``high``, one gather of the values of the
    buckets that hold a rank, and ``std::nth_element`` inside each such bucket only
    (skipped for a bucket of one repeated value); two passes over the column in all.
    ``-0.0`` and ``0.0`` are equal values: which of the two a rank returns is unspecified.

    Raises ``ValueError`` if a rank is outside ``[0, count)``, ``low > high``, or the
    column's values between ``low`` and ``high`` are not ``count`` (the arguments are not
    the column's ``scan``).
    """
