/* Atomics, futex and clocks for the ring hot paths.
 *
 * Cython has no atomics of its own; these are thin static inline wrappers over the GCC
 * __atomic builtins, declared to Cython in atomics.pxd. Everything here is nogil-safe and
 * allocation-free.
 */
#ifndef TTQ_ATOMICS_H
#define TTQ_ATOMICS_H

#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <linux/membarrier.h>

static inline uint64_t ttq_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t ttq_load_relaxed_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void ttq_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void ttq_store_relaxed_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t ttq_fetch_add_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
/* Counters read by tools: atomic, but no ordering needed. */
static inline void ttq_count_u64(uint64_t *p) { __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }

static inline int64_t ttq_load_relaxed_i64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void ttq_store_relaxed_i64(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

static inline uint32_t ttq_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t ttq_load_relaxed_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint32_t ttq_fetch_or_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t ttq_exchange_u32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }

/* Seqlock fences: a reader copies the payload, then fences before re-reading the stamp. */
static inline void ttq_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void ttq_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
/* StoreLoad: a writer's published stamp must be visible before it reads the wake word. */
static inline void ttq_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
/* Keeps the compiler from moving loads above stores; the CPU may still (membarrier covers it). */
static inline void ttq_compiler_barrier(void) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

/* Asymmetric fence (as userspace RCU does): a writer process registers once and then needs no
 * StoreLoad fence per publish; a reader about to sleep runs a barrier on every CPU running a
 * registered process instead. 1 on success. */
static inline int ttq_membarrier_register_writer(void)
{
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}
static inline int ttq_membarrier_available(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED);
}
static inline void ttq_membarrier_writers(void)
{
    syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
}

static inline void ttq_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* Shared (not FUTEX_PRIVATE) futex: waiters and wakers live in different processes. */
static inline int ttq_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, addr, FUTEX_WAIT, expected, tsp, NULL, 0);
    return rc == 0 ? 0 : errno;
}

static inline int ttq_futex_wake(uint32_t *addr)
{
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static inline int64_t ttq_clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
/* Wall-clock ns: every record timestamp (DESIGN §3). */
static inline int64_t ttq_now_ns(void) { return ttq_clock_ns(CLOCK_REALTIME); }
/* Cheap wall clock (tick resolution) for heartbeats. */
static inline int64_t ttq_coarse_now_ns(void) { return ttq_clock_ns(CLOCK_REALTIME_COARSE); }
/* Monotonic ns: durations, spin budgets and timeouts. */
static inline int64_t ttq_monotonic_ns(void) { return ttq_clock_ns(CLOCK_MONOTONIC); }

#endif
