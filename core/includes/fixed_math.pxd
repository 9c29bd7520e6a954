# Declarations of fixed_math.h: 128-bit products of raw prices and quantities.
from libc.stdint cimport int64_t

cdef extern from "fixed_math.h" nogil:
    int64_t ttq_mul_div(int64_t a, int64_t b, int64_t m, int64_t d)
    int ttq_beyond_ppm(int64_t a, int64_t ref, int64_t ppm)
