"""See frame_scan.pxd. scan() is the Python face, for tests."""
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset, memcmp, memcpy

__all__ = ["scan", "FIELD_NAMES"]

FIELD_NAMES = ("e", "E", "s", "t", "a", "f", "l", "p", "q", "T", "m", "u", "U", "pu", "b", "B", "A", "X")
DEF MAX_DEPTH = 16


cdef inline const char *skip_ws(const char *p, const char *end) noexcept nogil:
    # venues send no whitespace: one compare says so for anything above ' '
    while p < end and <unsigned char>p[0] <= 32 and (p[0] == b' ' or p[0] == b'\n' or p[0] == b'\r' or p[0] == b'\t'):
        p += 1
    return p


cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil


cdef inline uint64_t special_bytes(uint64_t x) noexcept nogil:
    """Non-zero if a byte of x is '"', '\\', a control or non-ASCII; its lowest set bit is in
    the first such byte (borrows only make false marks above a true one)."""
    cdef uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL
    cdef uint64_t quote = x ^ (ones * 34), backslash = x ^ (ones * 92)
    return (((quote - ones) & ~quote) | ((backslash - ones) & ~backslash)
            | ((x - ones * 0x20) & ~x) | x) & high


cdef inline const char *scan_string(const char *p, const char *end, const char **start,
                                    Py_ssize_t *length) noexcept nogil:
    """p at the opening quote; the byte after the closing one, or NULL (escape, control, end)."""
    cdef unsigned char c
    cdef uint64_t word, special
    p += 1
    start[0] = p
    while end - p >= 8:                     # eight bytes per look while the frame has them
        memcpy(&word, p, 8)
        special = special_bytes(word)
        if special:
            p += __builtin_ctzll(special) >> 3
            if p[0] == b'"':
                length[0] = p - start[0]
                return p + 1
            return NULL
        p += 8
    while p < end:
        c = <unsigned char>p[0]
        if c == 34:                         # '"'
            length[0] = p - start[0]
            return p + 1
        if c == 92 or c < 0x20 or c >= 0x80:    # escapes and non-ASCII: let orjson decide
            return NULL
        p += 1
    return NULL


cdef const char *scan_int(const char *p, const char *end, int64_t *value) noexcept nogil:
    """A non-negative JSON integer; NULL for anything else (fractions, exponents, minus)."""
    cdef uint64_t v = 0
    cdef const char *start = p
    cdef unsigned int d
    while p < end:
        d = <unsigned char>p[0] - 48
        if d >= 10:
            break
        if v > (<uint64_t>9223372036854775807 - d) // 10:
            return NULL
        v = v * 10 + d
        p += 1
    if p == start or (p - start > 1 and start[0] == b'0'):
        return NULL
    if p < end and (p[0] == b'.' or p[0] == b'e' or p[0] == b'E'):
        return NULL
    value[0] = <int64_t>v
    return p


cdef const char *scan_levels(const char *p, const char *end, Py_ssize_t *count) noexcept nogil:
    """p at '[': an array of ["..","..."] pairs; the byte after its ']', or NULL."""
    cdef const char *s
    cdef Py_ssize_t n = 0, length
    p = skip_ws(p + 1, end)
    if p < end and p[0] == b']':
        count[0] = 0
        return p + 1
    while p < end:
        if p[0] != b'[':
            return NULL
        p = skip_ws(p + 1, end)
        if p >= end or p[0] != b'"':
            return NULL
        p = scan_string(p, end, &s, &length)
        if p == NULL:
            return NULL
        p = skip_ws(p, end)
        if p >= end or p[0] != b',':
            return NULL
        p = skip_ws(p + 1, end)
        if p >= end or p[0] != b'"':
            return NULL
        p = scan_string(p, end, &s, &length)
        if p == NULL:
            return NULL
        p = skip_ws(p, end)
        if p >= end or p[0] != b']':
            return NULL
        n += 1
        p = skip_ws(p + 1, end)
        if p >= end:
            return NULL
        if p[0] == b']':
            count[0] = n
            return p + 1
        if p[0] != b',':
            return NULL
        p = skip_ws(p + 1, end)
    return NULL


cdef inline const char *scan_key(const char *p, const char *end, const char **key,
                                 Py_ssize_t *key_len) noexcept nogil:
    """p at a member's '"': reads `"key" :`; the first byte of its value, or NULL."""
    if p >= end or p[0] != b'"':
        return NULL
    p = scan_string(p, end, key, key_len)
    if p == NULL:
        return NULL
    p = skip_ws(p, end)
    if p >= end or p[0] != b':':
        return NULL
    p = skip_ws(p + 1, end)
    return p if p < end else NULL


cdef const char *skip_value(const char *p, const char *end) noexcept nogil:
    """Any JSON value the fast path does not use, checked as strictly as orjson checks it
    (the frame is published from this scan); NULL if it is not plain enough to skip."""
    cdef const char *s
    cdef Py_ssize_t length
    cdef char closer[MAX_DEPTH]         # what closes each open container: '}' or ']'
    cdef int depth = 0
    cdef int64_t ignored
    while True:
        p = skip_ws(p, end)                 # at a value
        if p >= end:
            return NULL
        if p[0] == b'{' or p[0] == b'[':
            if depth == MAX_DEPTH:
                return NULL
            closer[depth] = b'}' if p[0] == b'{' else b']'
            depth += 1
            p = skip_ws(p + 1, end)
            if p >= end:
                return NULL
            if p[0] != closer[depth - 1]:   # not empty: its first member or element
                if closer[depth - 1] == b'}':
                    p = scan_key(p, end, &s, &length)
                    if p == NULL:
                        return NULL
                continue
            depth -= 1
            p += 1
        elif p[0] == b'"':
            p = scan_string(p, end, &s, &length)
            if p == NULL:
                return NULL
        elif p[0] == b't' and end - p >= 4 and memcmp(p, b"true", 4) == 0:
            p += 4
        elif p[0] == b'f' and end - p >= 5 and memcmp(p, b"false", 5) == 0:
            p += 5
        elif p[0] == b'n' and end - p >= 4 and memcmp(p, b"null", 4) == 0:
            p += 4
        else:
            p = scan_int(p, end, &ignored)      # strict: a float makes the whole frame fall back
            if p == NULL:
                return NULL
        while True:                         # after a value: close containers, or the next one
            p = skip_ws(p, end)
            if depth == 0:
                return p
            if p >= end:
                return NULL
            if p[0] == closer[depth - 1]:
                depth -= 1
                p += 1
                continue
            if p[0] != b',':
                return NULL
            p = skip_ws(p + 1, end)
            if closer[depth - 1] == b'}':
                p = scan_key(p, end, &s, &length)
                if p == NULL:
                    return NULL
            break


cdef inline int field_index(const char *k, Py_ssize_t n) noexcept nogil:
    if n == 1:
        c = k[0]
        if c == b'e': return F_e
        if c == b'E': return F_E
        if c == b's': return F_s
        if c == b't': return F_t
        if c == b'a': return F_a
        if c == b'f': return F_f
        if c == b'l': return F_l
        if c == b'p': return F_p
        if c == b'q': return F_q
        if c == b'T': return F_T
        if c == b'm': return F_m
        if c == b'u': return F_u
        if c == b'U': return F_U
        if c == b'b': return F_b
        if c == b'B': return F_B
        if c == b'A': return F_A
        if c == b'X': return F_X
    elif n == 2 and k[0] == b'p' and k[1] == b'u':
        return F_pu
    return -1


cdef inline const char *next_member(const char *p, const char *end, bint *closed) noexcept nogil:
    """p after a member's value: past the ',' to the next key, or past the object's '}'
    (*closed set); NULL if neither follows."""
    p = skip_ws(p, end)
    if p >= end:
        return NULL
    if p[0] == b'}':
        closed[0] = True
        return p + 1
    if p[0] != b',':
        return NULL
    return skip_ws(p + 1, end)


cdef const char *scan_data(const char *p, const char *end, frame_scan *out) noexcept nogil:
    """p at the '{' of data; fills out; the byte after its '}', or NULL."""
    cdef const char *key
    cdef Py_ssize_t key_len
    cdef int i
    cdef scan_value *v
    cdef bint closed = False
    p = skip_ws(p + 1, end)
    if p < end and p[0] == b'}':
        return p + 1
    while p < end:
        p = scan_key(p, end, &key, &key_len)
        if p == NULL:
            return NULL
        i = field_index(key, key_len)
        if i < 0:
            p = skip_value(p, end)
        else:
            v = &out.field[i]
            if v.kind != V_NONE:
                return NULL                 # a repeated key: orjson's rules, not ours
            if p[0] == b'"':
                v.kind = V_STRING
                p = scan_string(p, end, &v.ptr, &v.len)
            elif p[0] == b'[' and (i == F_a or i == F_b):
                v.kind = V_LEVELS
                v.ptr = p
                p = scan_levels(p, end, &v.len)
            elif p[0] == b't' and end - p >= 4 and memcmp(p, b"true", 4) == 0:
                v.kind = V_BOOL
                v.integer = 1
                p += 4
            elif p[0] == b'f' and end - p >= 5 and memcmp(p, b"false", 5) == 0:
                v.kind = V_BOOL
                v.integer = 0
                p += 5
            elif <unsigned char>p[0] - 48 < 10:
                v.kind = V_INT
                p = scan_int(p, end, &v.integer)
            else:
                v.kind = V_OTHER
                p = skip_value(p, end)
        if p == NULL:
            return NULL
        p = next_member(p, end, &closed)
        if p == NULL or closed:
            return p
    return NULL


cdef int scan_frame(const char *s, Py_ssize_t n, frame_scan *out) noexcept nogil:
    cdef const char *p = s
    cdef const char *end = s + n
    cdef const char *key
    cdef Py_ssize_t key_len
    cdef bint seen_stream = False, seen_data = False, closed = False
    memset(out, 0, sizeof(frame_scan))
    p = skip_ws(p, end)
    if p >= end or p[0] != b'{':
        return SCAN_FALLBACK
    p = skip_ws(p + 1, end)
    while p < end:
        p = scan_key(p, end, &key, &key_len)
        if p == NULL:
            return SCAN_FALLBACK
        if key_len == 6 and memcmp(key, b"stream", 6) == 0 and not seen_stream and p[0] == b'"':
            seen_stream = True
            p = scan_string(p, end, &key, &key_len)
        elif key_len == 4 and memcmp(key, b"data", 4) == 0 and not seen_data and p[0] == b'{':
            seen_data = True
            p = scan_data(p, end, out)
        else:
            return SCAN_FALLBACK
        if p == NULL:
            return SCAN_FALLBACK
        p = next_member(p, end, &closed)
        if p == NULL:
            return SCAN_FALLBACK
        if closed:
            return SCAN_OK if skip_ws(p, end) == end and seen_data else SCAN_FALLBACK
    return SCAN_FALLBACK


cdef int next_level(const char **cursor, const char *end, const char **price, Py_ssize_t *price_len,
                    const char **qty, Py_ssize_t *qty_len) noexcept nogil:
    """The next pair of an array scan_levels already checked: no validation needed again."""
    cdef const char *p = cursor[0]
    while p < end and p[0] != b'"':
        p += 1
    p = scan_string(p, end, price, price_len)
    while p < end and p[0] != b'"':
        p += 1
    p = scan_string(p, end, qty, qty_len)
    cursor[0] = p
    return 1


def scan(bytes frame):
    """{field: value} of what the fast path saw in data, or None when it would fall back."""
    cdef frame_scan out
    if scan_frame(frame, len(frame), &out) != SCAN_OK:
        return None
    result = {}
    cdef int i
    cdef const char *cursor
    cdef const char *end = <const char *>frame + len(frame)
    cdef const char *ps
    cdef const char *qs
    cdef Py_ssize_t pl, ql, _
    for i in range(F_COUNT):
        v = out.field[i]
        if v.kind == V_STRING:
            result[FIELD_NAMES[i]] = v.ptr[:v.len].decode()
        elif v.kind == V_INT:
            result[FIELD_NAMES[i]] = v.integer
        elif v.kind == V_BOOL:
            result[FIELD_NAMES[i]] = bool(v.integer)
        elif v.kind == V_LEVELS:
            cursor = v.ptr
            levels = []
            for _ in range(v.len):
                next_level(&cursor, end, &ps, &pl, &qs, &ql)
                levels.append([ps[:pl].decode(), qs[:ql].decode()])
            result[FIELD_NAMES[i]] = levels
        elif v.kind == V_OTHER:
            result[FIELD_NAMES[i]] = ...
    return result
