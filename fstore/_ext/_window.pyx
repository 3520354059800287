# cython: language_level=3
"""Compiled core of windowed aggregations: tiles built at ingest, windows answered per row.

A window (t - w, t] is answered from the pre-aggregated tiles that lie wholly inside it
plus the raw events of the two partial tiles at its edges, so the work per training row
is two binary searches, at most w/grain tiles and at most two tiles' worth of events,
never a scan of the key's history. The exact contracts live in _window.pyi.
"""

from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint8_t

import numpy as np

ctypedef fused num:
    int64_t
    double

cdef int64_t NO_TIME = INT64_MIN


cdef inline int64_t floor_div(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int key_cmp(const int64_t* a, const int64_t* b, Py_ssize_t k) noexcept nogil:
    """Compare two key rows of width k (raw pointers: a memoryview argument would cost an
    atomic reference count per call in the binary searches)."""
    cdef Py_ssize_t c
    for c in range(k):
        if a[c] < b[c]:
            return -1
        if a[c] > b[c]:
            return 1
    return 0


cdef inline Py_ssize_t lower_bound(const int64_t* keys, const int64_t* ts, Py_ssize_t n,
                                   const int64_t* qk, int64_t x, Py_ssize_t k) noexcept nogil:
    """The first index whose (key, ts) >= (qk, x); n if none."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    cdef int c
    while lo < hi:
        mid = (lo + hi) >> 1
        c = key_cmp(keys + mid * k, qk, k)
        if c < 0 or (c == 0 and ts[mid] < x):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline const int64_t* rows_ptr(const int64_t[:, ::1] m):
    return NULL if m.shape[0] == 0 else &m[0, 0]


cdef inline const int64_t* vec_ptr(const int64_t[::1] v):
    return NULL if v.shape[0] == 0 else &v[0]


cdef inline bint newer(int64_t ts, int64_t cr, num v, int64_t bts, int64_t bcr, num bv) noexcept nogil:
    """(ts, cr, v) beats the best so far: newer event time, then created time, then the larger value."""
    if ts != bts:
        return ts > bts
    if cr != bcr:
        return cr > bcr
    return v > bv


def _check_sorted(const int64_t[:, ::1] keys, const int64_t[::1] ts, str what):
    cdef Py_ssize_t i, n = ts.shape[0], k = keys.shape[1]
    cdef const int64_t* kp = rows_ptr(keys)
    cdef int c
    cdef bint bad = False
    with nogil:
        for i in range(1, n):
            c = key_cmp(kp + (i - 1) * k, kp + i * k, k)
            if c > 0 or (c == 0 and ts[i - 1] > ts[i]):
                bad = True
                break
    if bad:
        raise ValueError(f"{what} are not sorted by (key, time)")


def build_tiles(const int64_t[:, ::1] keys, const int64_t[::1] ts, const int64_t[::1] created,
                const num[::1] values, const uint8_t[::1] valid, int64_t grain):
    """Partial aggregates per (key, tile) of events sorted by (key, event time)."""
    cdef Py_ssize_t n = ts.shape[0], k = keys.shape[1], i, m = 0
    if grain <= 0:
        raise ValueError("grain must be positive")
    _check_sorted(keys, ts, "events")
    dtype = np.int64 if num is int64_t else np.float64
    first_np = np.empty(n, dtype=np.int64)
    start_np = np.empty(n, dtype=np.int64)
    count_np = np.zeros(n, dtype=np.int64)
    sum_np = np.zeros(n, dtype=dtype)
    min_np = np.zeros(n, dtype=dtype)
    max_np = np.zeros(n, dtype=dtype)
    last_np = np.zeros(n, dtype=dtype)
    lts_np = np.full(n, NO_TIME, dtype=np.int64)
    lcr_np = np.full(n, NO_TIME, dtype=np.int64)
    cdef int64_t[::1] first = first_np, start = start_np, count = count_np, lts = lts_np, lcr = lcr_np
    cdef num[::1] s = sum_np, mn = min_np, mx = max_np, last = last_np
    cdef int64_t tile
    cdef num v
    cdef const int64_t* kp = rows_ptr(keys)
    with nogil:
        for i in range(n):
            tile = floor_div(ts[i], grain) * grain
            if m == 0 or tile != start[m - 1] or key_cmp(kp + i * k, kp + first[m - 1] * k, k) != 0:
                first[m] = i
                start[m] = tile
                m += 1
            if not valid[i]:
                continue
            v = values[i]
            if count[m - 1] == 0:
                mn[m - 1] = v
                mx[m - 1] = v
            else:
                if v < mn[m - 1]:
                    mn[m - 1] = v
                if v > mx[m - 1]:
                    mx[m - 1] = v
            if count[m - 1] == 0 or newer(ts[i], created[i], v, lts[m - 1], lcr[m - 1], last[m - 1]):
                last[m - 1] = v
                lts[m - 1] = ts[i]
                lcr[m - 1] = created[i]
            s[m - 1] += v
            count[m - 1] += 1
    return (first_np[:m], start_np[:m], sum_np[:m], count_np[:m], min_np[:m], max_np[:m], last_np[:m],
            lts_np[:m], lcr_np[:m])


def window_aggregate(const int64_t[:, ::1] ev_keys, const int64_t[::1] ev_ts, const int64_t[::1] ev_created,
                     const num[::1] ev_values, const uint8_t[::1] ev_valid,
                     const int64_t[:, ::1] tile_keys, const int64_t[::1] tile_start, const num[::1] tile_sum,
                     const int64_t[::1] tile_count, const num[::1] tile_min, const num[::1] tile_max, const num[::1] tile_last,
                     const int64_t[::1] tile_last_ts, const int64_t[::1] tile_last_created,
                     const int64_t[:, ::1] q_keys, const int64_t[::1] q_ts, const uint8_t[::1] q_valid,
                     int64_t window, int64_t grain):
    """sum, count, min, max and last of the valid values with event time in (t - window, t]."""
    cdef Py_ssize_t n_e = ev_ts.shape[0], n_t = tile_start.shape[0], n_q = q_ts.shape[0]
    cdef Py_ssize_t k = ev_keys.shape[1], q, i, a, b, c, d
    if window <= 0 or grain <= 0:
        raise ValueError("window and grain must be positive")
    if tile_keys.shape[1] != k or q_keys.shape[1] != k:
        raise ValueError("key widths differ")
    _check_sorted(ev_keys, ev_ts, "events")
    _check_sorted(tile_keys, tile_start, "tiles")
    dtype = np.int64 if num is int64_t else np.float64
    sum_np = np.zeros(n_q, dtype=dtype)
    count_np = np.zeros(n_q, dtype=np.int64)
    min_np = np.zeros(n_q, dtype=dtype)
    max_np = np.zeros(n_q, dtype=dtype)
    last_np = np.zeros(n_q, dtype=dtype)
    cdef num[::1] s = sum_np, mn = min_np, mx = max_np, last = last_np
    cdef int64_t[::1] count = count_np
    cdef int64_t lo_t, hi_t, full_lo, full_hi, bts, bcr, cnt
    cdef num v, acc, vmin, vmax, best
    cdef Py_ssize_t[4] ranges
    cdef int r
    cdef const int64_t* ekp = rows_ptr(ev_keys)
    cdef const int64_t* etp = vec_ptr(ev_ts)
    cdef const int64_t* tkp = rows_ptr(tile_keys)
    cdef const int64_t* tsp = vec_ptr(tile_start)
    cdef const int64_t* qkp = rows_ptr(q_keys)
    cdef const int64_t* qrow
    with nogil:
        for q in range(n_q):
            if not q_valid[q]:
                continue
            hi_t = q_ts[q]
            lo_t = hi_t - window  # exclusive
            qrow = qkp + q * k
            full_lo = floor_div(lo_t + grain, grain) * grain  # first tile start > lo_t
            full_hi = floor_div(hi_t + 1, grain) * grain      # tiles ending at or before hi_t + 1
            a = lower_bound(ekp, etp, n_e, qrow, lo_t + 1, k)
            d = lower_bound(ekp, etp, n_e, qrow, hi_t + 1, k)
            cnt = 0
            acc = 0
            vmin = 0
            vmax = 0
            best = 0
            bts = NO_TIME
            bcr = NO_TIME
            if full_lo < full_hi:
                b = lower_bound(ekp, etp, n_e, qrow, full_lo, k)
                c = lower_bound(ekp, etp, n_e, qrow, full_hi, k)
                # whole tiles [full_lo, full_hi): duplicates of a (key, tile) from several runs add up
                i = lower_bound(tkp, tsp, n_t, qrow, full_lo, k)
                while i < n_t and tile_start[i] < full_hi and key_cmp(tkp + i * k, qrow, k) == 0:
                    if tile_count[i] > 0:
                        if cnt == 0:
                            vmin = tile_min[i]
                            vmax = tile_max[i]
                        else:
                            if tile_min[i] < vmin:
                                vmin = tile_min[i]
                            if tile_max[i] > vmax:
                                vmax = tile_max[i]
                        if cnt == 0 or newer(tile_last_ts[i], tile_last_created[i], tile_last[i], bts, bcr, best):
                            best = tile_last[i]
                            bts = tile_last_ts[i]
                            bcr = tile_last_created[i]
                        acc += tile_sum[i]
                        cnt += tile_count[i]
                    i += 1
            else:
                b = d
                c = d
            ranges[0] = a
            ranges[1] = b
            ranges[2] = c
            ranges[3] = d
            for r in range(0, 4, 2):
                for i in range(ranges[r], ranges[r + 1]):
                    if not ev_valid[i]:
                        continue
                    v = ev_values[i]
                    if cnt == 0:
                        vmin = v
                        vmax = v
                    else:
                        if v < vmin:
                            vmin = v
                        if v > vmax:
                            vmax = v
                    if cnt == 0 or newer(ev_ts[i], ev_created[i], v, bts, bcr, best):
                        best = v
                        bts = ev_ts[i]
                        bcr = ev_created[i]
                    acc += v
                    cnt += 1
            s[q] = acc
            count[q] = cnt
            mn[q] = vmin
            mx[q] = vmax
            last[q] = best
    return sum_np, count_np, min_np, max_np, last_np


def newest_in_window(const int64_t[:, ::1] ev_keys, const int64_t[::1] ev_ts, const int64_t[:, ::1] q_keys,
                     const int64_t[::1] q_ts, const uint8_t[::1] q_valid, int64_t window):
    """The newest event time in (t - window, t] per row (any event, null values included); NO_TIME if none."""
    cdef Py_ssize_t n_e = ev_ts.shape[0], n_q = q_ts.shape[0], k = ev_keys.shape[1], q, a, d
    if q_keys.shape[1] != k:
        raise ValueError("key widths differ")
    _check_sorted(ev_keys, ev_ts, "events")
    out_np = np.full(n_q, NO_TIME, dtype=np.int64)
    cdef int64_t[::1] out = out_np
    cdef const int64_t* ekp = rows_ptr(ev_keys)
    cdef const int64_t* etp = vec_ptr(ev_ts)
    cdef const int64_t* qkp = rows_ptr(q_keys)
    with nogil:
        for q in range(n_q):
            if not q_valid[q]:
                continue
            a = lower_bound(ekp, etp, n_e, qkp + q * k, q_ts[q] - window + 1, k)
            d = lower_bound(ekp, etp, n_e, qkp + q * k, q_ts[q] + 1, k)
            if d > a:
                out[q] = ev_ts[d - 1]
    return out_np


def valid_until(const int64_t[:, ::1] ev_keys, const int64_t[::1] ev_ts, const int64_t[:, ::1] q_keys,
                const int64_t[::1] q_ts, const uint8_t[::1] q_valid, const int64_t[::1] windows):
    """Per row, until when its aggregates as of t are exact (INT64_MAX: no event can change them).

    An aggregate over (t - w, t] changes when its oldest event leaves the window (at oldest
    + w) or when the key's next event after t enters it; the earliest of these over the
    view's windows. Rows with q_valid 0 get INT64_MAX.
    """
    cdef Py_ssize_t n_e = ev_ts.shape[0], n_q = q_ts.shape[0], k = ev_keys.shape[1], nw = windows.shape[0]
    cdef Py_ssize_t q, a, d, w
    cdef int64_t until
    if q_keys.shape[1] != k:
        raise ValueError("key widths differ")
    _check_sorted(ev_keys, ev_ts, "events")
    out_np = np.full(n_q, INT64_MAX, dtype=np.int64)
    cdef int64_t[::1] out = out_np
    cdef const int64_t* ekp = rows_ptr(ev_keys)
    cdef const int64_t* etp = vec_ptr(ev_ts)
    cdef const int64_t* qkp = rows_ptr(q_keys)
    with nogil:
        for q in range(n_q):
            if not q_valid[q]:
                continue
            d = lower_bound(ekp, etp, n_e, qkp + q * k, q_ts[q] + 1, k)
            until = INT64_MAX
            if d < n_e and key_cmp(ekp + d * k, qkp + q * k, k) == 0:
                until = ev_ts[d]  # the next event enters every window
            for w in range(nw):
                a = lower_bound(ekp, etp, n_e, qkp + q * k, q_ts[q] - windows[w] + 1, k)
                if d > a and ev_ts[a] + windows[w] < until:
                    until = ev_ts[a] + windows[w]
            out[q] = until
    return out_np
