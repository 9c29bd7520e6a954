# Declarations of ring_layout.h; the diagram and every offset are documented there.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

cdef extern from "ring_layout.h" nogil:
    const uint64_t TTQ_RING_MAGIC
    const uint32_t TTQ_LAYOUT_VERSION
    const uint32_t TTQ_HEADER_SIZE
    const uint32_t TTQ_LINE
    const uint32_t TTQ_SLOT_ALIGN
    const uint32_t TTQ_STAMP_SIZE
    const uint32_t TTQ_KIND_BROADCAST
    const uint32_t TTQ_KIND_SPSC
    const uint32_t TTQ_KIND_BOARD
    const long TTQ_LOCK_WRITER
    const long TTQ_LOCK_READER

    ctypedef struct ttq_ring_header:
        uint64_t magic
        uint32_t layout_version
        uint32_t ring_kind
        uint32_t record_type
        uint32_t record_size
        uint32_t slot_size
        uint32_t capacity
        uint64_t segment_size
        int64_t created_ns
        uint64_t write_position
        uint64_t writer_epoch
        int64_t writer_pid
        int64_t heartbeat_ns
        int64_t writer_attached_ns
        uint64_t rejected_full
        uint64_t wakeups
        uint32_t writer_fences
        uint64_t read_position
        uint64_t reader_epoch
        int64_t reader_pid
        int64_t reader_heartbeat_ns
        uint32_t wake_word

    uint64_t ttq_stamp_writing(uint64_t position)
    uint64_t ttq_stamp_done(uint64_t position)
    uint32_t ttq_slot_size_for(uint32_t record_size)
