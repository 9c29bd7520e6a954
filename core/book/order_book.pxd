# One instrument's order book at exact int64 prices and quantities (DESIGN.md §4).
#
# Each side is a pair of sorted C arrays (price, qty) with the best level LAST: bids
# ascending, asks descending. Venue diffs land near the top of the book, so an insert or
# delete moves only the few levels above it; a binary search finds the place.
from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef struct book_side:
    int64_t *price
    int64_t *qty
    Py_ssize_t count
    Py_ssize_t capacity
    bint is_ask


cdef enum level_change:
    LEVEL_UNCHANGED = 0         # removing an absent level, or the same quantity again
    LEVEL_SET = 1               # a new level, or a new quantity at an existing one
    LEVEL_REMOVED = 2


cdef inline bint side_before(const book_side *s, int64_t a, int64_t b) noexcept nogil:
    """a sorts before b on this side (further from the top of the book)."""
    return a > b if s.is_ask else a < b


cdef inline Py_ssize_t side_search(const book_side *s, int64_t price) noexcept nogil:
    """Index of the first level not before price (== count if all are before it)."""
    cdef Py_ssize_t lo = 0, hi = s.count, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if side_before(s, s.price[mid], price):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef int side_set(book_side *s, int64_t price, int64_t qty) except -1 nogil
cdef void side_clear(book_side *s) noexcept nogil


cdef class OrderBook:
    cdef book_side bids
    cdef book_side asks
    cdef readonly uint32_t instrument_id
    cdef public uint64_t last_update_id

    cdef inline book_side *side(self, bint is_ask) noexcept nogil:
        return &self.asks if is_ask else &self.bids

    cdef int set_level(self, bint is_ask, int64_t price, int64_t qty) except -1 nogil
    cdef bint is_crossed(self) noexcept nogil
    cdef Py_ssize_t copy_top(self, bint is_ask, int64_t *out, Py_ssize_t depth) noexcept nogil
