# Binance order-book sync: REST snapshot + buffered depth diffs, by the documented rules.
#
# spot:    drop diffs with u <= lastUpdateId; the first applied must have
#          U <= lastUpdateId+1 <= u; then every U == previous u + 1.
# futures: drop diffs with u < lastUpdateId; the first applied must have
#          U <= lastUpdateId <= u; then every pu == previous u.
# Anything else is a gap: the book is dropped, the diff is kept as the first to replay, and
# the caller fetches a new snapshot. Diffs carry absolute quantities, so replaying one the
# snapshot already holds is harmless.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from ttquant.core.book.order_book cimport OrderBook

cdef enum sync_rule:
    RULE_SPOT = 1
    RULE_FUTURES = 2

cdef enum diff_result:
    DIFF_APPLIED = 0            # the book moved (changes() says how)
    DIFF_BUFFERED = 1           # no snapshot yet: kept for replay
    DIFF_STALE = 2              # older than the book: dropped, as the rules say
    DIFF_GAP = 3                # an update id is missing: the book is invalid until a new snapshot
    DIFF_BAD = 4                # a level that is not a price/quantity: dropped (a gap follows)
    DIFF_SNAPSHOT_MISMATCH = 5  # the first diff after a snapshot does not cover it: another snapshot

cdef enum snapshot_result:
    SNAPSHOT_SYNCED = 0         # book valid, buffered diffs replayed
    SNAPSHOT_TOO_OLD = 1        # the buffered diffs start after it: fetch another
    SNAPSHOT_GAP = 2            # a buffered diff did not follow on: fetch another
    SNAPSHOT_BAD = 3            # a level that is not a price/quantity
    SNAPSHOT_LOADED = 4         # loaded, but no buffered diff proved it fits: the next diff decides


cdef struct level_update:
    int64_t price
    int64_t qty
    uint32_t is_ask


cdef class BookSync:
    cdef readonly OrderBook book
    cdef readonly int rule
    cdef readonly bint synced               # a snapshot is loaded and diffs are being applied
    cdef readonly bint verified             # ...and a diff has proved the snapshot fits the stream
    cdef readonly int price_precision
    cdef readonly int qty_precision
    cdef readonly uint64_t update_id        # u of the last diff applied (or the snapshot's id)
    cdef bint first_after_snapshot
    cdef list pending                       # (U, u, pu, bids, asks) awaiting a snapshot
    cdef readonly Py_ssize_t max_pending
    cdef level_update *levels               # parsed levels of the diff being applied
    cdef Py_ssize_t levels_capacity
    cdef readonly Py_ssize_t n_changes      # levels of the last diff that changed the book
    # counters
    cdef readonly uint64_t applied, stale, gaps, bad, snapshots, pending_dropped, snapshot_mismatches

    cdef int ensure_levels(self, Py_ssize_t n) except -1
    cdef int check_diff(self, uint64_t first_id, uint64_t last_id, uint64_t prev_id) noexcept
    cdef int apply_diff(self, uint64_t last_id, Py_ssize_t n) except -1
    cdef int parse_levels(self, list bids, list asks) except -1
    cdef int apply_parsed(self, Py_ssize_t n) except -1
    cdef int on_diff_c(self, uint64_t first_id, uint64_t last_id, uint64_t prev_id,
                       list bids, list asks) except -1
