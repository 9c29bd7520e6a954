# A strict, allocation-free reader of Binance combined-stream frames for the hot message types.
#
# It walks {"stream":"...","data":{...}} once and records where each field of `data` is; it
# understands only what Binance sends on the hot path (ASCII keys and strings without escapes,
# integers, true/false, arrays of [price, qty] string pairs, one nested object "k"). Anything
# else makes it answer SCAN_FALLBACK, and the frame takes the orjson path, which also gives
# the exact drop reason. So the fast path never has to be right about malformed input.
from libc.stdint cimport int64_t, uint64_t, uint8_t

cdef enum:
    SCAN_OK = 0
    SCAN_FALLBACK = 1

    # value kinds
    V_NONE = 0
    V_STRING = 1
    V_INT = 2
    V_BOOL = 3
    V_LEVELS = 4                # an array of [string, string] pairs
    V_OTHER = 5                 # present but of a kind the fast path does not use

    # the fields of data the fast path uses
    F_e = 0
    F_E
    F_s
    F_t
    F_a                         # aggTrade id (int), bookTicker ask (string), depth asks (levels)
    F_f
    F_l
    F_p
    F_q
    F_T
    F_m
    F_u
    F_U
    F_pu
    F_b
    F_B
    F_A
    F_X
    F_COUNT

cdef struct scan_value:
    uint8_t kind
    const char *ptr             # strings: the bytes between the quotes; levels: the '[' of the array
    Py_ssize_t len              # strings: byte length; levels: how many pairs
    int64_t integer             # ints and bools

cdef struct frame_scan:
    scan_value field[F_COUNT]


cdef int scan_frame(const char *s, Py_ssize_t n, frame_scan *out) noexcept nogil

# Walk the pairs of a V_LEVELS value in order: *cursor starts at its ptr; 1 per pair read.
cdef int next_level(const char **cursor, const char *end, const char **price, Py_ssize_t *price_len,
                    const char **qty, Py_ssize_t *qty_len) noexcept nogil
