/* Ring segment layout: the one place it is written down (DESIGN.md §2).
 *
 * A ring is one POSIX shared-memory segment /ttq.<venue>.<kind>[.<owner>]:
 *
 *   offset  +--------------------------------------------------------------------+
 *        0  | identity line    magic, layout version, kind, record type/size,     |
 *           |                  slot size, capacity        (written once, at create)|
 *      128  | write line       write_position             (writer; readers poll)  |
 *      256  | writer line      epoch, pid, heartbeat, counters           (writer) |
 *      384  | read line        read_position, reader pid/heartbeat  (SPSC reader) |
 *      512  | wake line        wake_word: futex word, bit 0 = a reader may sleep   |
 *      640  | reserved, zero                                                      |
 *     4096  +--------------------------------------------------------------------+
 *           | slot 0   | stamp u64 | record (record_size bytes) | pad to slot_size |
 *           | slot 1   | ...                                                      |
 *           | slot capacity-1                                                     |
 *           +--------------------------------------------------------------------+
 *
 * "Position" is the monotonic 64-bit count of records ever written; "index" is
 * position & (capacity - 1), the slot it lands in. The two are never mixed.
 *
 * Slot stamp (a per-slot seqlock, written last with release order):
 *   0            the slot was never written
 *   2*p + 1      the writer is writing position p (odd: torn, do not trust the payload)
 *   2*p + 2      position p is complete
 * A broadcast reader at position p that finds a stamp above 2*p + 2 was lapped.
 * A board slot is rewritten in place: its stamp goes odd, then to the next even value.
 *
 * Lines are 128 bytes apart so the adjacent-line prefetcher never couples two writers.
 * Broadcast readers write nothing but the wake line; the SPSC reader owns the read line.
 * A dead sleeper leaves at most bit 0 set: the next publish clears it with one wasted wake.
 */
#ifndef TTQ_RING_LAYOUT_H
#define TTQ_RING_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define TTQ_RING_MAGIC        0x31474E4952515454ULL  /* "TTQRING1" little-endian */
#define TTQ_LAYOUT_VERSION    1u
#define TTQ_HEADER_SIZE       4096u
#define TTQ_LINE              128u
#define TTQ_SLOT_ALIGN        64u
#define TTQ_STAMP_SIZE        8u

#define TTQ_KIND_BROADCAST    1u
#define TTQ_KIND_SPSC         2u
#define TTQ_KIND_BOARD        3u   /* slots rewritten in place: one per instrument, each a
                                      seqlock (odd stamp while writing); write_position
                                      counts the slots handed out (core/book/book_board) */

typedef struct ttq_ring_header {
    /* identity line ------------------------------------------------------------- 0 */
    uint64_t magic;              /*   0  TTQ_RING_MAGIC; anything else is not a ring      */
    uint32_t layout_version;     /*   8  TTQ_LAYOUT_VERSION of the process that created it */
    uint32_t ring_kind;          /*  12  TTQ_KIND_BROADCAST, _SPSC or _BOARD              */
    uint32_t record_type;        /*  16  record type id of the payload (records.pxd)     */
    uint32_t record_size;        /*  20  payload bytes per record                         */
    uint32_t slot_size;          /*  24  stamp + record rounded up to TTQ_SLOT_ALIGN      */
    uint32_t capacity;           /*  28  slots; a power of two                            */
    uint64_t segment_size;       /*  32  TTQ_HEADER_SIZE + capacity * slot_size           */
    int64_t  created_ns;         /*  40  wall clock when the segment was created          */
    uint8_t  _pad_identity[80];  /*  48  .. 128                                           */

    /* write line ---------------------------------------------------------------- 128 */
    uint64_t write_position;     /* 128  next position the writer will publish            */
    uint8_t  _pad_write[120];    /* 136  .. 256: nothing else may share this hot line     */

    /* writer line --------------------------------------------------------------- 256 */
    uint64_t writer_epoch;       /* 256  bumped on every writer attach                    */
    int64_t  writer_pid;         /* 264  pid of the last writer to attach                 */
    int64_t  heartbeat_ns;       /* 272  writer's last sign of life, wall clock ns        */
    int64_t  writer_attached_ns; /* 280  wall clock of the last writer attach             */
    uint64_t rejected_full;      /* 288  SPSC pushes refused because the ring was full    */
    uint64_t wakeups;            /* 296  futex wakes the writer issued                    */
    uint32_t writer_fences;      /* 304  1: the writer fences every publish; 0: it relies */
                                 /*      on sleepers' membarrier (atomics.h)               */
    uint8_t  _pad_writer[76];    /* 308  .. 384                                           */

    /* read line (SPSC) ---------------------------------------------------------- 384 */
    uint64_t read_position;      /* 384  next position the SPSC reader will consume       */
    uint64_t reader_epoch;       /* 392  bumped on every SPSC reader attach               */
    int64_t  reader_pid;         /* 400  pid of the last SPSC reader to attach            */
    int64_t  reader_heartbeat_ns;/* 408  SPSC reader's last sign of life                  */
    uint8_t  _pad_read[96];      /* 416  .. 512                                           */

    /* wake line ----------------------------------------------------------------- 512 */
    uint32_t wake_word;          /* 512  futex word: bit 0 set by a reader about to sleep, */
                                 /*      cleared (and the count in bits 1.. bumped) by the */
                                 /*      writer when it wakes them                          */
    uint8_t  _pad_wake[124];     /* 516  .. 640                                           */

    uint8_t  _reserved[TTQ_HEADER_SIZE - 640]; /* 640 .. 4096: zero; room to grow      */
} ttq_ring_header;

_Static_assert(sizeof(ttq_ring_header) == TTQ_HEADER_SIZE, "ring header is one 4 KiB page");
_Static_assert(offsetof(ttq_ring_header, write_position) == 128, "write line");
_Static_assert(offsetof(ttq_ring_header, writer_epoch) == 256, "writer line");
_Static_assert(offsetof(ttq_ring_header, read_position) == 384, "read line");
_Static_assert(offsetof(ttq_ring_header, wake_word) == 512, "wake line");

/* Writer lock byte and SPSC reader lock byte: open-file-description locks (F_OFD_SETLK)
 * on the segment's fd, released by the kernel when the holder dies. */
#define TTQ_LOCK_WRITER 0
#define TTQ_LOCK_READER 1

static inline uint64_t ttq_stamp_writing(uint64_t position) { return 2 * position + 1; }
static inline uint64_t ttq_stamp_done(uint64_t position) { return 2 * position + 2; }

static inline uint32_t ttq_slot_size_for(uint32_t record_size)
{
    return (TTQ_STAMP_SIZE + record_size + TTQ_SLOT_ALIGN - 1) & ~(TTQ_SLOT_ALIGN - 1);
}

#endif
