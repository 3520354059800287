# cython: language_level=3
"""fstore bench's load generator: one OS thread per Worker drives its connections with raw
non-blocking sockets and epoll, with the GIL released for the whole run.

Everything costly is done before, in Python: the connections are opened and greeted, and
the requests are packed into one buffer of frames (``frames`` and their ``offsets``), which
the loop sends in turn, patching each frame's request id in place (``id_offset``: a
uint32 written as MessagePack's 0xce form by the packer). Per reply the loop parses the
minimum: the frame's length, ``[id, ok, result]``, and the ``status`` bin of an ok result
(the value statuses: the hit rate) or the ``code`` of an error map. For Redis (RESP) it
counts, per key of a GET/MGET reply, a value as PRESENT and a nil as NOT_FOUND, each key
weighing ``weights[j]`` values (the features stored in that key's blob).

Closed loop (``rate`` 0): each connection sends, waits for the reply, records, sends the
next. Open loop (``rate`` requests/s over the worker's connections): request k is due at
start + k / rate; it goes out on an idle connection, else pipelined on the least busy one,
and its latency runs from that due time, so a stall of the server (or of this loop) is
counted in full rather than hidden (coordinated omission). Replies to requests due before
``warmup_ns`` are not recorded. The run ends at ``end_ns``, at ``stop()``, or when every
connection is gone: a connection closed by the server, or whose oldest request waited
longer than ``timeout_ns``, is dropped and its requests counted as errors (UNREACHABLE,
TIMEOUT), so a dead or hung server ends the run with errors, never a hang.
"""
import numpy as np

from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memmove, strlen
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from fstore._ext._constants cimport NOT_FOUND, PRESENT
from fstore._ext._hdr cimport C_SUB_BITS as SUB_BITS, C_TIMELINE_SUB_BITS as TIMELINE_SUB_BITS, bucket_count, bucket_of
from fstore._ext._replies cimport mp_reply, resp_reply

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    int shutdown(int fd, int how)
    enum:
        MSG_NOSIGNAL
        SHUT_RDWR

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from *:
    """
    #include <sys/syscall.h>
    #include <sys/epoll.h>
    #include <unistd.h>
    #include <errno.h>
    #include <time.h>
    /* epoll_wait with a timeout in nanoseconds: epoll_pwait2 (Linux 5.11) where the kernel has
       it, else epoll_wait in whole milliseconds rounded up (an open loop then sends in bursts). */
    static int fstore_have_pwait2 = 1;
    static int fstore_epoll_wait_ns(int ep, struct epoll_event *ev, int n, long long ns) {
    #ifdef SYS_epoll_pwait2
        if (fstore_have_pwait2) {
            struct timespec ts;
            ts.tv_sec = ns / 1000000000LL;
            ts.tv_nsec = ns % 1000000000LL;
            long r = syscall(SYS_epoll_pwait2, ep, ev, n, &ts, NULL, 0);
            if (r >= 0 || errno != ENOSYS) return (int)r;
            fstore_have_pwait2 = 0;
        }
    #endif
        return epoll_wait(ep, ev, n, (int)((ns + 999999LL) / 1000000LL));
    }
    """
    int fstore_epoll_wait_ns(int ep, epoll_event* ev, int n, long long ns) nogil

cdef enum:
    FSTORE = 0
    REDIS = 1
    MAX_CODES = 32
    CODE_LEN = 48
    MIN_ROOM = 65536          # free bytes a read buffer has before each recv
    TICK_NS = 10000000        # at least every 10 ms: look at the stop flag and the timeouts

PROTOCOLS = {"fstore": FSTORE, "redis": REDIS}


cdef struct Conn:
    int fd
    bint alive
    bint out_armed
    uint8_t* rbuf
    Py_ssize_t rcap, rlo, rhi
    uint8_t* wbuf
    Py_ssize_t wcap, wlo, whi
    int64_t* due            # per ring slot: the request's due time (latency from it), -1 when free
    int64_t* sent           # per ring slot: when it was written (a timeout runs from it)
    uint32_t* ids           # per ring slot: its request id
    uint32_t next_id
    uint32_t oldest
    int inflight


cdef inline int64_t _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


cdef int _room(uint8_t** buf, Py_ssize_t* cap, Py_ssize_t* lo, Py_ssize_t* hi, Py_ssize_t need,
               Py_ssize_t grown) noexcept nogil:
    """Make ``need`` bytes free after ``hi`` in a connection's buffer (read or write): first by
    moving the unconsumed bytes [lo, hi) to the front, else by growing it to ``grown`` bytes.
    -1 when memory ran out (the buffer is left as it was)."""
    cdef uint8_t* p
    if cap[0] - hi[0] >= need:
        return 0
    if lo[0]:
        memmove(buf[0], buf[0] + lo[0], hi[0] - lo[0])
        hi[0] -= lo[0]
        lo[0] = 0
    if cap[0] - hi[0] >= need:
        return 0
    p = <uint8_t*>realloc(buf[0], grown)
    if p == NULL:
        return -1
    buf[0], cap[0] = p, grown
    return 0


cdef class Worker:
    """One thread's share of a run: its connections (greeted, non-blocking fds), its frames,
    and what it measured. ``run`` blocks (without the GIL) until the run ends."""

    cdef Conn* conns
    cdef int nconns, live, proto, id_offset, rr
    cdef uint32_t mask
    cdef bytes frames_ref
    cdef const uint8_t* frames
    cdef int64_t* offsets
    cdef Py_ssize_t nframes, cursor
    cdef int32_t* weights
    cdef Py_ssize_t nweights
    cdef int64_t* hist
    cdef int64_t* tl_counts
    cdef int64_t* tl_hist
    cdef Py_ssize_t nb, ntl, seconds
    cdef int64_t statuses[8]
    cdef char codes[MAX_CODES][CODE_LEN]
    cdef int64_t code_counts[MAX_CODES]
    cdef int ncodes
    cdef int64_t start_ns, warmup_ns, end_ns, timeout_ns
    cdef double rate
    cdef volatile int stopping
    cdef int ep
    cdef public int64_t sent, completed, ok, failed, max_ns, lost

    def __cinit__(self, list fds, bytes frames, offsets, str protocol="fstore", int id_offset=-1,
                  weights=None, int max_inflight=1, double seconds=1.0):
        cdef Py_ssize_t i
        cdef uint32_t ring = 1, j
        cdef Conn* c
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        if len(offsets) < 2 or offsets[0] != 0 or offsets[len(offsets) - 1] != len(frames):
            raise ValueError("offsets must run from 0 to len(frames), one more than the frames")
        while ring < <uint32_t>max(max_inflight, 1):
            ring <<= 1
        self.proto, self.id_offset, self.mask = PROTOCOLS[protocol], id_offset, ring - 1
        self.frames_ref = frames
        self.frames = <const uint8_t*>(<char*>frames)
        self.nframes = len(offsets) - 1
        self.offsets = <int64_t*>malloc(len(offsets) * sizeof(int64_t))
        w = list(weights or [1])
        self.nweights = len(w)
        self.weights = <int32_t*>malloc(self.nweights * sizeof(int32_t))
        self.nb, self.ntl = bucket_count(SUB_BITS), bucket_count(TIMELINE_SUB_BITS)
        self.seconds = max(<Py_ssize_t>seconds + 1, 1)
        self.hist = <int64_t*>calloc(self.nb, sizeof(int64_t))
        self.tl_counts = <int64_t*>calloc(self.seconds, sizeof(int64_t))
        self.tl_hist = <int64_t*>calloc(self.seconds * self.ntl, sizeof(int64_t))
        self.nconns = len(fds)
        self.conns = <Conn*>calloc(max(self.nconns, 1), sizeof(Conn))
        if not (self.offsets and self.weights and self.hist and self.tl_counts and self.tl_hist and self.conns):
            raise MemoryError()
        for i in range(len(offsets)):
            self.offsets[i] = offsets[i]
            if i and not 0 <= self.offsets[i] - self.offsets[i - 1] <= (1 << 30):
                raise ValueError("offsets must not decrease")
        for i in range(self.nweights):
            self.weights[i] = w[i]
        for i in range(self.nconns):
            c = &self.conns[i]
            c.fd, c.alive, c.next_id, c.oldest = fds[i], 1, 1, 1
            c.rcap, c.wcap = 2 * MIN_ROOM, 4096
            c.rbuf, c.wbuf = <uint8_t*>malloc(c.rcap), <uint8_t*>malloc(c.wcap)
            c.due, c.ids = <int64_t*>malloc(ring * sizeof(int64_t)), <uint32_t*>malloc(ring * sizeof(uint32_t))
            c.sent = <int64_t*>malloc(ring * sizeof(int64_t))
            if not (c.rbuf and c.wbuf and c.due and c.ids and c.sent):
                raise MemoryError()
            for j in range(ring):
                c.due[j] = -1
        self.live = self.nconns
        self.ep = -1

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.conns:
            for i in range(self.nconns):
                free(self.conns[i].rbuf)
                free(self.conns[i].wbuf)
                free(self.conns[i].due)
                free(self.conns[i].sent)
                free(self.conns[i].ids)
            free(self.conns)
        free(self.offsets)
        free(self.weights)
        free(self.hist)
        free(self.tl_counts)
        free(self.tl_hist)

    def run(self, int64_t start_ns, int64_t warmup_ns, int64_t end_ns, double rate=0.0,
            int64_t timeout_ns=10_000_000_000):
        """Drive the connections from ``start_ns`` to ``end_ns`` (time.monotonic_ns clock);
        ``rate`` > 0: an open loop at that many requests/s, else a closed loop."""
        cdef int rc
        if self.nframes == 0:
            raise ValueError("no frames to send")
        self.start_ns, self.warmup_ns, self.end_ns = start_ns, warmup_ns, end_ns
        self.rate, self.timeout_ns = rate, timeout_ns
        with nogil:
            rc = self._loop()
        if rc != 0:
            raise OSError(-rc, f"load generator: epoll failed ({-rc})")

    def stop(self):
        """End ``run`` at its next tick (within 10 ms); callable from another thread."""
        self.stopping = 1

    def result(self):
        """What was measured: the histogram (ns, _hdr.SUB_BITS), the per-second counts and
        histograms (TIMELINE_SUB_BITS) from the end of the warm-up, statuses, errors."""
        cdef Py_ssize_t i
        hist = np.array(<int64_t[:self.nb]>self.hist, dtype=np.int64)
        tl_counts = np.array(<int64_t[:self.seconds]>self.tl_counts, dtype=np.int64)
        tl_hist = np.array(<int64_t[:self.seconds * self.ntl]>self.tl_hist, dtype=np.int64).reshape(
            self.seconds, self.ntl)
        errors = {self.codes[i][:strlen(self.codes[i])].decode("utf-8", "replace"): self.code_counts[i]
                  for i in range(self.ncodes)}
        return {"hist": hist, "timeline_counts": tl_counts, "timeline_hist": tl_hist,
                "statuses": [self.statuses[i] for i in range(8)], "errors": errors, "sent": self.sent,
                "completed": self.completed, "ok": self.ok, "failed": self.failed, "max_ns": self.max_ns,
                "lost_connections": self.lost}

    # ---- the loop (no GIL) ------------------------------------------------------------

    cdef int _loop(self) noexcept nogil:
        cdef epoll_event ev
        cdef epoll_event* events = <epoll_event*>malloc(max(self.nconns, 1) * sizeof(epoll_event))
        cdef int i, n, rc = 0
        cdef int64_t now, wait, k = 0, due, last_check
        cdef bint blocked
        cdef Conn* c
        cdef double interval = 1e9 / self.rate if self.rate > 0 else 0
        if events == NULL:
            return -12
        self.ep = epoll_create1(EPOLL_CLOEXEC)
        if self.ep < 0:
            free(events)
            return -errno
        for i in range(self.nconns):
            ev.events = EPOLLIN | EPOLLRDHUP
            ev.data.u32 = i
            if epoll_ctl(self.ep, EPOLL_CTL_ADD, self.conns[i].fd, &ev) < 0:
                self._kill(&self.conns[i], b"UNREACHABLE")
        due = self.start_ns
        last_check = _now()
        while not self.stopping and self.live > 0:
            now = _now()
            if now >= self.end_ns:
                break
            if self.rate <= 0:  # closed loop: every idle connection sends its next request
                for i in range(self.nconns):
                    c = &self.conns[i]
                    if c.alive and c.inflight == 0:
                        now = _now()
                        self._enqueue(c, now, now)
                        self._flush(c)
                wait = TICK_NS
            else:
                blocked = 0
                while due <= now and due < self.end_ns:
                    c = self._pick()
                    if c == NULL:
                        blocked = 1  # every connection is at max_inflight: the backlog keeps its due times
                        break
                    self._enqueue(c, due, now)
                    k += 1
                    due = self.start_ns + <int64_t>(k * interval)
                for i in range(self.nconns):
                    c = &self.conns[i]
                    if c.alive and c.whi > c.wlo and not c.out_armed:
                        self._flush(c)
                wait = TICK_NS if blocked else due - now
            if now - last_check >= TICK_NS:
                self._check_timeouts(now)
                last_check = now
            wait = min(wait, self.end_ns - now, <int64_t>TICK_NS)
            n = fstore_epoll_wait_ns(self.ep, events, max(self.nconns, 1), max(wait, 0))
            if n < 0:
                if errno == EINTR:
                    continue
                rc = -errno
                break
            for i in range(n):
                c = &self.conns[events[i].data.u32]
                if c.alive and events[i].events & EPOLLOUT:
                    self._flush(c)
                if c.alive and events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP):
                    self._on_readable(c)
                if c.alive and self.rate <= 0 and c.inflight == 0 and not self.stopping:
                    now = _now()
                    if now < self.end_ns:
                        self._enqueue(c, now, now)
                        self._flush(c)
        self._end_timeouts(_now())
        close(self.ep)
        self.ep = -1
        free(events)
        return rc

    cdef Conn* _pick(self) noexcept nogil:
        """An idle live connection (round robin), else the least busy one below max_inflight."""
        cdef Conn* best = NULL
        cdef Conn* c
        cdef int k
        for k in range(self.nconns):
            c = &self.conns[(self.rr + k) % self.nconns]
            if not c.alive:
                continue
            if c.inflight == 0:
                self.rr = (self.rr + k + 1) % self.nconns
                return c
            if <uint32_t>(c.next_id - c.oldest) <= self.mask and (best == NULL or c.inflight < best.inflight):
                best = c
        self.rr = (self.rr + 1) % max(self.nconns, 1)
        return best

    cdef void _enqueue(self, Conn* c, int64_t due, int64_t now) noexcept nogil:
        """Append the next frame to the connection's output, with a fresh request id."""
        cdef uint32_t rid = c.next_id, slot = rid & self.mask
        cdef int64_t a = self.offsets[self.cursor], size = self.offsets[self.cursor + 1] - a
        cdef uint8_t* p
        c.next_id += 1
        if c.next_id == 0:  # 0 is reserved by the protocol
            c.next_id = 1
        self.cursor += 1
        if self.cursor == self.nframes:
            self.cursor = 0
        if _room(&c.wbuf, &c.wcap, &c.wlo, &c.whi, size, 2 * c.wcap + size) < 0:
            self._kill(c, b"OUT_OF_MEMORY")
            return
        p = c.wbuf + c.whi
        memcpy(p, self.frames + a, size)
        if self.id_offset >= 0:
            p += self.id_offset
            p[0], p[1], p[2], p[3] = (rid >> 24) & 0xFF, (rid >> 16) & 0xFF, (rid >> 8) & 0xFF, rid & 0xFF
        c.whi += size
        if c.inflight == 0:
            c.oldest = rid
        c.due[slot], c.sent[slot], c.ids[slot] = due, now, rid
        c.inflight += 1
        self.sent += 1

    cdef void _flush(self, Conn* c) noexcept nogil:
        """Write what the connection has pending; arm EPOLLOUT for the rest."""
        cdef ssize_t n
        cdef epoll_event ev
        while c.wlo < c.whi:
            n = send(c.fd, c.wbuf + c.wlo, c.whi - c.wlo, MSG_NOSIGNAL)
            if n > 0:
                c.wlo += n
            elif n < 0 and errno == EINTR:
                continue
            elif n < 0 and (errno == EAGAIN):
                if not c.out_armed:
                    ev.events, ev.data.u32 = EPOLLIN | EPOLLRDHUP | EPOLLOUT, c - self.conns
                    epoll_ctl(self.ep, EPOLL_CTL_MOD, c.fd, &ev)
                    c.out_armed = 1
                return
            else:
                self._kill(c, b"UNREACHABLE")
                return
        c.wlo = c.whi = 0
        if c.out_armed:
            ev.events, ev.data.u32 = EPOLLIN | EPOLLRDHUP, c - self.conns
            epoll_ctl(self.ep, EPOLL_CTL_MOD, c.fd, &ev)
            c.out_armed = 0

    cdef void _on_readable(self, Conn* c) noexcept nogil:
        """Read until the socket is drained and handle every complete reply."""
        cdef ssize_t n
        cdef Py_ssize_t room
        while c.alive:
            if _room(&c.rbuf, &c.rcap, &c.rlo, &c.rhi, MIN_ROOM, 2 * c.rcap) < 0:
                self._kill(c, b"OUT_OF_MEMORY")
                return
            room = c.rcap - c.rhi
            n = recv(c.fd, c.rbuf + c.rhi, room, 0)
            if n > 0:
                c.rhi += n
                if self.proto == FSTORE:
                    self._fstore_replies(c, _now())
                else:
                    self._redis_replies(c, _now())
                if n < room:
                    return
            elif n == 0:
                self._kill(c, b"UNREACHABLE")
                return
            elif errno == EINTR:
                continue
            elif errno == EAGAIN:
                return
            else:
                self._kill(c, b"UNREACHABLE")
                return

    cdef void _fstore_replies(self, Conn* c, int64_t now) noexcept nogil:
        cdef const uint8_t* p
        cdef const uint8_t* field
        cdef Py_ssize_t size, field_len, i
        cdef uint64_t rid
        cdef int ok
        cdef uint32_t slot
        while c.alive and c.rhi - c.rlo >= 4:
            p = c.rbuf + c.rlo
            size = (<Py_ssize_t>p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]
            if size == 0 or size > (1 << 30):
                self._kill(c, b"BAD_REPLY")
                return
            if c.rhi - c.rlo < 4 + size:
                return
            c.rlo += 4 + size
            if mp_reply(p + 4, p + 4 + size, &rid, &ok, &field, &field_len) < 0:
                self._kill(c, b"BAD_REPLY")
                return
            if rid == 0 and not ok:  # an error tied to no request: the server closes the connection
                self._count(field, field_len, b"BAD_REPLY")
                continue
            slot = <uint32_t>rid & self.mask
            if rid > <uint64_t>0xFFFFFFFFU or c.due[slot] < 0 or c.ids[slot] != rid:
                self._count(NULL, 0, b"BAD_REPLY")
                continue
            if self._complete(c, slot, now, ok):
                if not ok:
                    self._count(field, field_len, b"BAD_REPLY")
                elif field != NULL:
                    for i in range(field_len):
                        self.statuses[field[i] & 7] += 1
        if c.rlo == c.rhi:
            c.rlo = c.rhi = 0

    cdef void _redis_replies(self, Conn* c, int64_t now) noexcept nogil:
        cdef Py_ssize_t n
        cdef int64_t present, missing
        cdef const uint8_t* err
        cdef Py_ssize_t err_len
        while c.alive and c.rhi > c.rlo:
            present = missing = 0
            err = NULL
            n = resp_reply(c.rbuf + c.rlo, c.rbuf + c.rhi, self.weights, self.nweights,
                           &present, &missing, &err, &err_len)
            if n == 0:
                return
            if n < 0:
                self._kill(c, b"BAD_REPLY")
                return
            c.rlo += n
            if c.inflight == 0:
                self._count(NULL, 0, b"BAD_REPLY")
                continue
            if self._complete(c, c.oldest & self.mask, now, err == NULL):
                if err != NULL:
                    self._count(err, err_len, b"BAD_REPLY")
                else:
                    self.statuses[<int>PRESENT] += present
                    self.statuses[<int>NOT_FOUND] += missing
        if c.rlo == c.rhi:
            c.rlo = c.rhi = 0

    cdef bint _complete(self, Conn* c, uint32_t slot, int64_t now, bint ok) noexcept nogil:
        """Free the request's slot; record its latency when it was due after the warm-up
        (True then: the caller counts its statuses or error)."""
        cdef int64_t due = c.due[slot], lat, sec
        c.due[slot] = -1
        c.inflight -= 1
        self.completed += 1
        if c.inflight == 0:
            c.oldest = c.next_id
        else:
            while c.due[c.oldest & self.mask] < 0:
                c.oldest += 1
                if c.oldest == 0:
                    c.oldest = 1
        if due < self.warmup_ns:
            return 0
        if not ok:
            self.failed += 1
            return 1
        lat = now - due
        if lat < 0:
            lat = 0
        self.ok += 1
        if lat > self.max_ns:
            self.max_ns = lat
        self.hist[bucket_of(lat, SUB_BITS)] += 1
        sec = (now - self.warmup_ns) // 1000000000
        if sec >= self.seconds:
            sec = self.seconds - 1
        self.tl_counts[sec] += 1
        self.tl_hist[sec * self.ntl + bucket_of(lat, TIMELINE_SUB_BITS)] += 1
        return 1

    cdef void _check_timeouts(self, int64_t now) noexcept nogil:
        cdef int i
        cdef Conn* c
        for i in range(self.nconns):
            c = &self.conns[i]
            if c.alive and c.inflight and now - c.sent[c.oldest & self.mask] > self.timeout_ns:
                self._kill(c, b"TIMEOUT")

    cdef void _end_timeouts(self, int64_t now) noexcept nogil:
        """At the end: requests still waiting past the timeout are errors (all of them when no
        reply ever came: a server that hangs from the start); younger ones were cut by the end."""
        cdef int i
        cdef uint32_t j
        cdef Conn* c
        for i in range(self.nconns):
            c = &self.conns[i]
            if not c.alive:
                continue
            for j in range(self.mask + 1):
                if c.due[j] >= 0 and (now - c.sent[j] > self.timeout_ns or self.completed == 0):
                    self._count(NULL, 0, b"TIMEOUT")

    cdef void _kill(self, Conn* c, const char* code) noexcept nogil:
        """Drop a connection: each request in flight on it (at least one) is an error ``code``."""
        cdef int k
        if not c.alive:
            return
        for k in range(max(c.inflight, 1)):
            self._count(NULL, 0, code)
        c.alive = 0
        c.inflight = 0
        self.live -= 1
        self.lost += 1
        if self.ep >= 0:
            epoll_ctl(self.ep, EPOLL_CTL_DEL, c.fd, NULL)
        shutdown(c.fd, SHUT_RDWR)

    cdef void _count(self, const uint8_t* code, Py_ssize_t n, const char* fallback) noexcept nogil:
        """One more error of ``code`` (the reply's; ``fallback`` when it gave none)."""
        cdef int i
        if code == NULL or n <= 0:
            code, n = <const uint8_t*>fallback, strlen(fallback)
        if n >= CODE_LEN:
            n = CODE_LEN - 1
        for i in range(self.ncodes):
            if <Py_ssize_t>strlen(self.codes[i]) == n and memcmp(self.codes[i], code, n) == 0:
                self.code_counts[i] += 1
                return
        i = self.ncodes if self.ncodes < MAX_CODES else MAX_CODES - 1  # the last slot takes any overflow
        if i == self.ncodes:
            memcpy(self.codes[i], code, n)
            self.codes[i][n] = 0
            self.ncodes += 1
        self.code_counts[i] += 1
