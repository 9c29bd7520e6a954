# cython: language_level=3
"""LatencyTrace: see latency_trace.pxd."""
from libc.stdint cimport int64_t

import numpy as np

__all__ = ["LatencyTrace"]


cdef class LatencyTrace:
    def __init__(self, Py_ssize_t width, Py_ssize_t capacity):
        cdef int64_t[:, ::1] view
        self.array = np.empty((max(capacity, 1), width), np.int64)
        self.array.fill(0)          # every page touched now: no page fault on the order path
        view = self.array
        self.data, self.width, self.capacity, self.length = &view[0, 0], width, view.shape[0], 0

    @property
    def rows(self):
        """The rows recorded so far."""
        return self.array[:self.length]
