# BLAKE2b (RFC 7693) with an 8-byte digest and no key: the hash of the feature log's
# sampling rule (fstore/_ext/_logbuf.pyx ``sampled``), in C so that deciding a read costs
# no Python call. tests/test_feature_log_decode.py checks it against hashlib.blake2b.

cdef uint64_t[8] B2_IV = [0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                          0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                          0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL]
cdef uint8_t[160] B2_SIGMA = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
    11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4,
    7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8,
    9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13,
    2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9,
    12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11,
    13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10,
    6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5,
    10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]


cdef inline uint64_t _rotr(uint64_t x, int n) noexcept nogil:
    return (x >> n) | (x << (64 - n))


cdef inline void _g(uint64_t* v, int a, int b, int c, int d, uint64_t x, uint64_t y) noexcept nogil:
    v[a] = v[a] + v[b] + x
    v[d] = _rotr(v[d] ^ v[a], 32)
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], 24)
    v[a] = v[a] + v[b] + y
    v[d] = _rotr(v[d] ^ v[a], 16)
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], 63)


cdef void _compress(uint64_t* h, const uint8_t* block, uint64_t t, bint last) noexcept nogil:
    cdef uint64_t v[16]
    cdef uint64_t m[16]
    cdef const uint8_t* s
    cdef int i, r
    memcpy(m, block, 128)  # little-endian words (x86 and ARM as built: little-endian)
    for i in range(8):
        v[i] = h[i]
        v[i + 8] = B2_IV[i]
    v[12] ^= t
    if last:
        v[14] = ~v[14]
    for r in range(12):
        s = &B2_SIGMA[16 * (r % 10)]
        _g(v, 0, 4, 8, 12, m[s[0]], m[s[1]])
        _g(v, 1, 5, 9, 13, m[s[2]], m[s[3]])
        _g(v, 2, 6, 10, 14, m[s[4]], m[s[5]])
        _g(v, 3, 7, 11, 15, m[s[6]], m[s[7]])
        _g(v, 0, 5, 10, 15, m[s[8]], m[s[9]])
        _g(v, 1, 6, 11, 12, m[s[10]], m[s[11]])
        _g(v, 2, 7, 8, 13, m[s[12]], m[s[13]])
        _g(v, 3, 4, 9, 14, m[s[14]], m[s[15]])
    for i in range(8):
        h[i] ^= v[i] ^ v[i + 8]


cdef uint64_t _blake2b_64(const uint8_t* data, Py_ssize_t size) noexcept nogil:
    """The 8-byte BLAKE2b digest of ``data`` read as a big-endian integer."""
    cdef uint64_t h[8]
    cdef uint8_t block[128]
    cdef uint64_t out = 0
    cdef Py_ssize_t done = 0
    cdef int i
    for i in range(8):
        h[i] = B2_IV[i]
    h[0] ^= 0x01010000 ^ 8  # no key, an 8-byte digest
    while size - done > 128:
        _compress(h, data + done, done + 128, False)
        done += 128
    memset(block, 0, 128)
    if size - done:
        memcpy(block, data + done, size - done)
    _compress(h, block, size, True)
    for i in range(8):  # the digest is h[0] little-endian; read it big-endian
        out = (out << 8) | ((h[0] >> (8 * i)) & 0xFF)
    return out


cdef bint _below(uint64_t x, double rate) noexcept nogil:
    """``x < rate * 2**64``, exactly as Python compares an int with that float."""
    cdef double bound = rate * 18446744073709551616.0
    if bound >= 18446744073709551616.0:
        return True
    if not bound > 0.0:  # 0, negative or NaN
        return False
    return x < <uint64_t>ceil(bound)
