"""A broadcast ring read in unbroken runs of positions, for the recorder.

BroadcastReader.poll_into may jump over what the writer overwrote in the middle of a batch,
and then which record came after the jump is not known; a journal file must know each
record's position, so here a batch stops at a jump and the next one starts after it.
"""
from libc.stdint cimport uint64_t
from cpython.buffer cimport PyBuffer_Release

from ttquant.core.rings.broadcast cimport BroadcastReader, broadcast_read
from ttquant.core.rings.segment cimport get_record_buffer

__all__ = ["read_run"]


def read_run(BroadcastReader reader, records):
    """Copy up to len(records) records that sit at consecutive positions into records (a
    contiguous array of the ring's dtype); returns (count, position of the first)."""
    if reader.cursor.ring.header == NULL:
        raise ValueError(f"reader of {reader.segment.name} is closed")
    cdef Py_buffer view
    cdef Py_ssize_t n = get_record_buffer(records, &view, reader.cursor.ring.record_size, True)
    cdef Py_ssize_t i = 0
    cdef char *dst = <char *>view.buf
    cdef size_t size = reader.cursor.ring.record_size
    cdef uint64_t first = reader.cursor.position, lost
    try:
        with nogil:
            while i < n:
                lost = reader.cursor.lost
                if not broadcast_read(&reader.cursor, dst + i * size):
                    break
                if reader.cursor.lost != lost:      # the reader jumped to the oldest record
                    if i:
                        reader.cursor.position -= 1     # it starts the next run: read it again
                        break
                    first = reader.cursor.position - 1
                i += 1
    finally:
        PyBuffer_Release(&view)
    return i, first
