# One instrument's order book at exact int64 prices and quantities (DESIGN.md §4).
#
# Each side is a pair of sorted C arrays (price, qty) with the best level LAST: bids
# ascending, asks descending; a binary search finds a price's place. The arrays have free
# room at both ends, so an insert moves the shorter part: the levels above it, or the ones
# below (a venue diff touches levels deep in the book as often as near the top). A level
# removed inside the book stays as an entry of quantity 0 (its price tends to come back, and
# then nothing moves) until such entries outnumber the levels; the best and the deepest entry
# are always levels.
from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef struct book_side:
    int64_t *price              # the deepest level; price[count - 1] is the best
    int64_t *qty                # 0: a removed level kept in place (see side_set); never the first or last
    Py_ssize_t count            # entries, removed ones included
    Py_ssize_t live             # levels (entries with a quantity)
    int64_t *price_room         # the allocations price and qty point into
    int64_t *qty_room
    Py_ssize_t capacity         # slots in each allocation
    bint is_ask


cdef enum level_change:
    LEVEL_UNCHANGED = 0         # removing an absent level, or the same quantity again
    LEVEL_SET = 1               # a new level, or a new quantity at an existing one
    LEVEL_REMOVED = 2


cdef inline bint side_before(const book_side *s, int64_t a, int64_t b) noexcept nogil:
    """a sorts before b on this side (further from the top of the book)."""
    return a > b if s.is_ask else a < b


DEF TOP_WALK = 16


cdef extern from *:
    void __builtin_prefetch(const void *addr) nogil


cdef inline Py_ssize_t side_search(const book_side *s, int64_t price) noexcept nogil:
    """Index of the first level not before price (== count if all are before it)."""
    # a fifth of a diff's levels are within the best 16: a short walk down from the top;
    # below that a branch-free halving with both next probes prefetched (diff prices land
    # anywhere in a deep book: a branchy search mispredicts every other step, and this one
    # would otherwise wait on each load in turn)
    cdef const int64_t *a = s.price
    cdef Py_ssize_t base = 0, n = s.count, half, i
    if n <= TOP_WALK or not side_before(s, price, a[n - TOP_WALK]):
        i = n
        while i > 0 and not side_before(s, a[i - 1], price):
            i -= 1
        return i
    n -= TOP_WALK
    if s.is_ask:
        while n > 1:
            half = n >> 1
            __builtin_prefetch(a + base + (half >> 1))
            __builtin_prefetch(a + base + half + (half >> 1))
            base += half & -<Py_ssize_t>(a[base + half] > price)
            n -= half
        return base + <Py_ssize_t>(a[base] > price)
    while n > 1:
        half = n >> 1
        __builtin_prefetch(a + base + (half >> 1))
        __builtin_prefetch(a + base + half + (half >> 1))
        base += half & -<Py_ssize_t>(a[base + half] < price)
        n -= half
    return base + <Py_ssize_t>(a[base] < price)


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
