# One mapped ring segment: the header, the slots, and who holds which role.
from libc.stdint cimport uint32_t, uint64_t, int64_t
from ttquant.core.includes.ring_layout cimport ttq_ring_header


# What a hot loop needs of a mapped ring, in one place; copied into each writer and reader.
cdef struct ring_view:
    ttq_ring_header *header
    char *slots
    uint64_t mask               # capacity - 1: index = position & mask
    uint64_t capacity
    uint32_t slot_size
    uint32_t record_size
    bint writer_fences          # writers only: StoreLoad fence before looking for sleepers


cdef class RingSegment:
    cdef readonly str name
    cdef readonly bint read_only
    cdef object _shm            # posix_ipc.SharedMemory, kept for its fd
    cdef int fd
    cdef char *base
    cdef size_t size
    cdef ttq_ring_header *header
    cdef bint holds_writer
    cdef bint holds_reader
    cdef bint writer_fences
    cdef object __weakref__

    cdef ring_view view(self)
    cdef int _map(self) except -1
    cpdef acquire_writer(self)
    cpdef acquire_reader(self)
    cpdef close(self)
    cdef void _forget_roles(self) noexcept


# Borrow a contiguous buffer of whole records (numpy array of the record dtype, bytearray...);
# returns the record count. The caller releases view with PyBuffer_Release.
cdef Py_ssize_t get_record_buffer(object records, Py_buffer *view, uint32_t record_size,
                                  bint writable) except -1
cdef int64_t timeout_to_ns(object timeout) except? -2


# The usual way in for writers and readers: attach, or create when asked (capacity None:
# the existing ring's, else default_capacity).
cdef RingSegment open_ring(str name, uint32_t ring_kind, object record_type, object capacity,
                           object record_size, bint create, int mode, object group,
                           uint64_t default_capacity)


# Broadcast rings only (their readers go by stamps; an SPSC writer restarts at write_position).
# A writer killed between a slot's final stamp and the position store left one complete
# record past write_position: keep it (never publish that position twice). Returns the
# position the attaching writer continues from, and wakes anyone asleep on the kept record.
cdef uint64_t recover_write_position(ring_view *r) noexcept nogil
