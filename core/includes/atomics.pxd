# Declarations of atomics.h: atomics, futex and clocks for the hot paths.
from libc.stdint cimport uint32_t, uint64_t, int64_t

cdef extern from "atomics.h" nogil:
    uint64_t ttq_load_acquire_u64(const uint64_t *p)
    uint64_t ttq_load_relaxed_u64(const uint64_t *p)
    void ttq_store_release_u64(uint64_t *p, uint64_t v)
    void ttq_store_relaxed_u64(uint64_t *p, uint64_t v)
    uint64_t ttq_fetch_add_u64(uint64_t *p, uint64_t v)
    int64_t ttq_load_relaxed_i64(const int64_t *p)
    void ttq_store_relaxed_i64(int64_t *p, int64_t v)
    uint32_t ttq_load_acquire_u32(const uint32_t *p)
    uint32_t ttq_load_relaxed_u32(const uint32_t *p)
    uint32_t ttq_fetch_add_u32(uint32_t *p, uint32_t v)
    uint32_t ttq_fetch_sub_u32(uint32_t *p, uint32_t v)
    void ttq_fence_acquire()
    void ttq_fence_release()
    void ttq_fence_seq_cst()
    void ttq_cpu_relax()
    int ttq_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns)
    int ttq_futex_wake(uint32_t *addr)
    int64_t ttq_now_ns()
    int64_t ttq_coarse_now_ns()
    int64_t ttq_monotonic_ns()
