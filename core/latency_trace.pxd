# Rows of int64 timestamps kept per order for latency reports (the gateway's intake, a live
# strategy's order entry): allocated and touched up front, so recording a row on the order
# path is a pointer bump and no page fault.
from libc.stdint cimport int64_t


cdef class LatencyTrace:
    cdef readonly object array              # int64 (capacity, width)
    cdef int64_t *data
    cdef Py_ssize_t width, length, capacity

    cdef inline int64_t *next_row(self) noexcept:
        """The next row to fill, or NULL when the trace is full."""
        if self.length == self.capacity:
            return NULL
        self.length += 1
        return self.data + (self.length - 1) * self.width
