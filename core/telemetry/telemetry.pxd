# One process's telemetry segment: a board-kind ring segment (core/rings) of TELEMETRY records,
# one record per group. The names, labels and kinds live in the records, so any reader decodes
# any writer's segment. Each value has one writing thread; readers take a moment's view.
#
# Group record (2192 bytes, one 2240-byte slot with its stamp):
#    0 kind(u32)  4 count(u32)  8 scale(i32)  12 reserved(u32)
#   16 labels   char[112]   "k=v,k=v": the group's labels (slot 0, kind INFO: the process's)
#  128 names    char[1024]  counters/gauges: count NUL-terminated names, each "name" or
#                           "name{k=v,...}"; histogram: its name
# 1152 values   u64[130]    counters: u64; gauges: i64 at 10**-scale; histogram: [0] count,
#                           [1] sum, [2 + b] bucket b (ttq_hist_bucket), in 10**scale seconds
from libc.stdint cimport uint32_t, uint64_t, int32_t

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

cdef enum:
    TELEMETRY_INFO = 0
    TELEMETRY_COUNTERS = 1
    TELEMETRY_GAUGES = 2
    TELEMETRY_HISTOGRAM = 3
    TELEMETRY_LABEL_BYTES = 112
    TELEMETRY_NAME_BYTES = 1024
    TELEMETRY_VALUES = 130
    TELEMETRY_MAX_VALUES = 128          # counters or gauges in one group
    TTQ_HIST_BUCKETS = 128
    TTQ_HIST_SUB_BITS = 2                   # 4 buckets per power of two: 25 % wide at most

cdef struct telemetry_group:
    uint32_t kind
    uint32_t count
    int32_t scale
    uint32_t reserved
    char labels[TELEMETRY_LABEL_BYTES]
    char names[TELEMETRY_NAME_BYTES]
    uint64_t values[TELEMETRY_VALUES]


# Log-linear buckets: 0..7 exact, then 4 per power of two; the last bucket holds the overflow.
cdef inline int ttq_hist_bucket(uint64_t v) noexcept nogil:
    if v < 8:
        return <int>v
    cdef int e = 63 - __builtin_clzll(<unsigned long long>v)
    cdef int b = 8 + ((e - 3) << TTQ_HIST_SUB_BITS) + <int>((v >> (e - TTQ_HIST_SUB_BITS)) & 3)
    return b if b < TTQ_HIST_BUCKETS else TTQ_HIST_BUCKETS - 1


# A histogram's values (count, sum, buckets); plain adds: one writing thread per histogram.
cdef inline void ttq_hist_observe(uint64_t *hist, uint64_t v) noexcept nogil:
    hist[0] += 1
    hist[1] += v
    hist[2 + ttq_hist_bucket(v)] += 1


# A histogram of a telemetry segment, for writers that observe from Python or keep its pointer.
cdef class Histogram:
    cdef uint64_t *hist
    cdef readonly object values             # numpy uint64[TELEMETRY_VALUES] in the segment
    cpdef observe(self, uint64_t value)
