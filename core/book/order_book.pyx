"""Python face of order_book.pxd: snapshots, levels, top of book, the whole book as arrays."""
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memmove

import numpy as np

__all__ = ["OrderBook", "BID", "ASK"]

BID, ASK = 0, 1
cdef Py_ssize_t INITIAL_LEVELS = 256
cdef Py_ssize_t NEAR_HOLE = 32     # entries looked at either side of an insert for a removed level's


cdef int side_place(book_side *s, Py_ssize_t capacity) except -1 nogil:
    """Move the levels to the middle of fresh room of `capacity` slots (more than count)."""
    cdef int64_t *price = <int64_t *>malloc(capacity * sizeof(int64_t))
    cdef int64_t *qty = <int64_t *>malloc(capacity * sizeof(int64_t))
    if price == NULL or qty == NULL:
        free(price)
        free(qty)
        with gil:
            raise MemoryError("order book side")
    cdef Py_ssize_t front = (capacity - s.count) // 2
    if s.count:
        memcpy(price + front, s.price, s.count * sizeof(int64_t))
        memcpy(qty + front, s.qty, s.count * sizeof(int64_t))
    free(s.price_room)
    free(s.qty_room)
    s.price_room, s.qty_room, s.capacity = price, qty, capacity
    s.price, s.qty = price + front, qty + front
    return 0


cdef void side_recentre(book_side *s) noexcept nogil:
    """The same room, the levels moved to its middle."""
    cdef Py_ssize_t front = (s.capacity - s.count) // 2
    memmove(s.price_room + front, s.price, s.count * sizeof(int64_t))
    memmove(s.qty_room + front, s.qty, s.count * sizeof(int64_t))
    s.price, s.qty = s.price_room + front, s.qty_room + front


cdef void side_compact(book_side *s) noexcept nogil:
    """Drop the removed entries (quantity 0), the levels keeping their order and first slot."""
    cdef Py_ssize_t k, j = 0
    for k in range(s.count):
        if s.qty[k]:
            s.price[j] = s.price[k]
            s.qty[j] = s.qty[k]
            j += 1
    s.count = j


cdef int side_set(book_side *s, int64_t price, int64_t qty) except -1 nogil:
    """Set the quantity at price (0 removes the level); returns a level_change."""
    cdef Py_ssize_t i = side_search(s, price)
    cdef bint present = i < s.count and s.price[i] == price
    cdef Py_ssize_t free_below, free_above
    if qty == 0:
        if not present or s.qty[i] == 0:
            return LEVEL_UNCHANGED
        s.live -= 1
        s.qty[i] = 0
        if i == s.count - 1:            # the best: it goes, with the removed entries under it
            while s.count and s.qty[s.count - 1] == 0:
                s.count -= 1
        elif i == 0:                    # the deepest: the same from below
            while s.count and s.qty[0] == 0:
                s.price += 1
                s.qty += 1
                s.count -= 1
        elif s.count - s.live > 64 and s.count - s.live > s.live:
            side_compact(s)
        return LEVEL_REMOVED
    if present:
        if s.qty[i] == qty:
            return LEVEL_UNCHANGED
        if s.qty[i] == 0:               # a removed level's price again: nothing moves
            s.live += 1
        s.qty[i] = qty
        return LEVEL_SET
    # a removed level's entry close by takes the shift: only the entries between move
    cdef Py_ssize_t j, lo = i - NEAR_HOLE if i > NEAR_HOLE else 0
    cdef Py_ssize_t hi = i + NEAR_HOLE if i + NEAR_HOLE < s.count else s.count
    if s.live < s.count:
        for j in range(i, hi):
            if s.qty[j] == 0:           # shift [i, j) up one into it
                memmove(s.price + i + 1, s.price + i, (j - i) * sizeof(int64_t))
                memmove(s.qty + i + 1, s.qty + i, (j - i) * sizeof(int64_t))
                s.price[i], s.qty[i] = price, qty
                s.live += 1
                return LEVEL_SET
        for j in range(i - 1, lo - 1, -1):
            if s.qty[j] == 0:           # shift (j, i) down one into it
                memmove(s.price + j, s.price + j + 1, (i - 1 - j) * sizeof(int64_t))
                memmove(s.qty + j, s.qty + j + 1, (i - 1 - j) * sizeof(int64_t))
                s.price[i - 1], s.qty[i - 1] = price, qty
                s.live += 1
                return LEVEL_SET
    free_below = s.price - s.price_room
    free_above = s.capacity - free_below - s.count
    if (i < s.count - i and free_below == 0) or (i >= s.count - i and free_above == 0):
        # room runs out on the cheap side: recentre while at least a third is free (each
        # recentre then buys count/4 cheap inserts), else double the room
        if 3 * (s.capacity - s.count) >= s.capacity:
            side_recentre(s)
        else:
            side_place(s, 2 * s.capacity)
    if i < s.count - i:                 # the deeper levels move down one
        memmove(s.price - 1, s.price, i * sizeof(int64_t))
        memmove(s.qty - 1, s.qty, i * sizeof(int64_t))
        s.price -= 1
        s.qty -= 1
    else:
        memmove(s.price + i + 1, s.price + i, (s.count - i) * sizeof(int64_t))
        memmove(s.qty + i + 1, s.qty + i, (s.count - i) * sizeof(int64_t))
    s.price[i] = price
    s.qty[i] = qty
    s.count += 1
    s.live += 1
    return LEVEL_SET


cdef void side_clear(book_side *s) noexcept nogil:
    s.count = s.live = 0
    side_recentre(s)


cdef class OrderBook:
    """Exact book of one instrument; prices and quantities are raw fixed point."""

    def __cinit__(self, uint32_t instrument_id=0):
        self.instrument_id = instrument_id
        self.bids.is_ask = False
        self.asks.is_ask = True
        side_place(&self.bids, INITIAL_LEVELS)
        side_place(&self.asks, INITIAL_LEVELS)

    def __dealloc__(self):
        free(self.bids.price_room)
        free(self.bids.qty_room)
        free(self.asks.price_room)
        free(self.asks.qty_room)

    cdef int set_level(self, bint is_ask, int64_t price, int64_t qty) except -1 nogil:
        return side_set(self.side(is_ask), price, qty)

    cdef bint is_crossed(self) noexcept nogil:
        return (self.bids.count and self.asks.count
                and self.bids.price[self.bids.count - 1] >= self.asks.price[self.asks.count - 1])

    cdef Py_ssize_t copy_top(self, bint is_ask, int64_t *out, Py_ssize_t depth) noexcept nogil:
        """The best `depth` levels as (price, qty) pairs, best first; returns how many."""
        cdef book_side *s = self.side(is_ask)
        cdef Py_ssize_t n = 0, k = s.count - 1
        while n < depth and k >= 0:
            if s.qty[k]:                # a removed level's entry is skipped
                out[2 * n] = s.price[k]
                out[2 * n + 1] = s.qty[k]
                n += 1
            k -= 1
        return n

    def set(self, int side, int64_t price, int64_t qty):
        """Set one level (qty 0 removes it); returns 0 unchanged, 1 set, 2 removed."""
        if qty < 0:
            raise ValueError(f"negative quantity {qty}")
        return self.set_level(side == ASK, price, qty)

    def clear(self):
        side_clear(&self.bids)
        side_clear(&self.asks)
        self.last_update_id = 0

    def load(self, bids, asks, uint64_t last_update_id=0):
        """Replace the book with a snapshot: two (n, 2) int64 arrays of (price, qty)."""
        self.clear()
        for side, levels in ((BID, bids), (ASK, asks)):
            for price, qty in np.asarray(levels, dtype=np.int64).reshape(-1, 2):
                if qty < 0:
                    raise ValueError(f"negative quantity {qty} at {price}")
                if qty:
                    self.set_level(side == ASK, price, qty)
        self.last_update_id = last_update_id

    def best(self, int side):
        """(price, qty) of the best level of a side, or None when the side is empty."""
        cdef book_side *s = self.side(side == ASK)
        if s.count == 0:
            return None
        return s.price[s.count - 1], s.qty[s.count - 1]

    def top(self, Py_ssize_t depth):
        """(bids, asks): (n, 2) int64 arrays of the best `depth` levels, best first."""
        bids = np.empty((min(depth, self.bids.live), 2), np.int64)
        asks = np.empty((min(depth, self.asks.live), 2), np.int64)
        cdef int64_t[:, ::1] b = bids, a = asks
        if b.shape[0]:
            self.copy_top(False, &b[0, 0], depth)
        if a.shape[0]:
            self.copy_top(True, &a[0, 0], depth)
        return bids, asks

    def levels(self, int side):
        """Every level of a side as an (n, 2) array, best first."""
        return self.top(self.side(side == ASK).live)[side]

    @property
    def crossed(self):
        return bool(self.is_crossed())

    @property
    def depth(self):
        """(bid levels, ask levels)."""
        return self.bids.live, self.asks.live

    def __repr__(self):
        bb, ba = self.best(BID), self.best(ASK)
        return (f"OrderBook({self.instrument_id}, bid={bb}, ask={ba}, levels={self.depth}, "
                f"update={self.last_update_id})")
