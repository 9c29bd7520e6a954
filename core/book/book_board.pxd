# The book board: the top N levels of every instrument's book in shared memory (DESIGN.md §4).
#
# A ring segment of kind TTQ_KIND_BOARD (ring_layout.h): one slot per instrument, handed out
# in order (write_position counts them) and rewritten in place. Each slot is a seqlock: its
# stamp goes odd, the record is written, the stamp goes to the next even value; a reader
# copies the slot and keeps the copy only if the stamp was even and unchanged around it.
#
# Slot record (after the 8-byte stamp), record_size = 48 + depth * 32:
#    0 instrument_id u32    4 n_bids u16    6 n_asks u16
#    8 update_id u64       16 ts_exchange i64   24 ts_pub i64
#   32 flags u32          36 resets u32    40 updates u64
#   48 bids[depth] of (price i64, qty i64), best first; then asks[depth] the same way
from libc.stdint cimport uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memset
from ttquant.core.includes.atomics cimport (
    ttq_load_relaxed_u64, ttq_store_release_u64, ttq_fence_release, ttq_now_ns,
)
from ttquant.core.rings.segment cimport ring_view, RingSegment
from ttquant.core.book.order_book cimport OrderBook

cdef enum:
    BOARD_SYNCED = 1            # the book is in sync with the venue; else it is being rebuilt
    BOARD_HEAD_SIZE = 48
    BOARD_LEVEL_SIZE = 16

cdef struct ttq_book_top:
    uint32_t instrument_id
    uint16_t n_bids
    uint16_t n_asks
    uint64_t update_id
    int64_t ts_exchange
    int64_t ts_pub
    uint32_t flags
    uint32_t resets
    uint64_t updates


cdef inline uint32_t board_depth(const ring_view *r) noexcept nogil:
    return (r.record_size - BOARD_HEAD_SIZE) // (2 * BOARD_LEVEL_SIZE)


cdef inline void board_publish(ring_view *r, uint64_t index, OrderBook book, uint64_t update_id,
                               int64_t ts_exchange, uint32_t flags) noexcept nogil:
    """Write the book's top levels into slot index (the caller holds the writer role)."""
    cdef char *slot = r.slots + index * r.slot_size
    cdef uint64_t *stamp = <uint64_t *>slot
    cdef ttq_book_top *top = <ttq_book_top *>(slot + 8)
    cdef uint32_t depth = board_depth(r)
    cdef int64_t *levels = <int64_t *>(slot + 8 + BOARD_HEAD_SIZE)
    cdef uint64_t s = ttq_load_relaxed_u64(stamp) | 1     # odd: being written
    ttq_store_release_u64(stamp, s)
    ttq_fence_release()         # the odd stamp is visible before any byte of the record
    top.n_bids = <uint16_t>book.copy_top(False, levels, depth)
    top.n_asks = <uint16_t>book.copy_top(True, levels + 2 * depth, depth)
    top.update_id = update_id
    top.ts_exchange = ts_exchange
    top.ts_pub = ttq_now_ns()
    top.flags = flags
    top.updates += 1
    ttq_store_release_u64(stamp, s + 1)


cdef class BookBoardWriter:
    cdef readonly RingSegment segment
    cdef ring_view ring
    cdef dict slots                 # instrument_id -> slot index

    cdef uint64_t slot_index(self, uint32_t instrument_id) except? 0xFFFFFFFFFFFFFFFF
    cpdef publish(self, OrderBook book, uint64_t update_id, int64_t ts_exchange=*, bint synced=*)


cdef class BoardFromTicks:
    cdef readonly BookBoardWriter writer
    cdef dict books                 # instrument_id -> OrderBook
    cdef readonly uint64_t published
