/* Exact fixed-point products for risk and accounting: price_raw * qty_raw overflows int64
 * long before a real order does (61000.00000000 x 1.00000000 is 6.1e20 in raw units), so the
 * product is taken in 128 bits and scaled back, saturating instead of wrapping. */
#ifndef TTQ_FIXED_MATH_H
#define TTQ_FIXED_MATH_H

#include <stdint.h>

/* a * b * m / d, truncated toward zero; INT64_MAX / INT64_MIN when it does not fit. d > 0. */
static inline int64_t ttq_mul_div(int64_t a, int64_t b, int64_t m, int64_t d) {
    __int128 p = (__int128)a * (__int128)b;
    p = p * (__int128)m / (__int128)d;
    if (p > (__int128)INT64_MAX) return INT64_MAX;
    if (p < (__int128)INT64_MIN) return INT64_MIN;
    return (int64_t)p;
}

/* |a - ref| * 1e6 > ppm * ref, exactly: is a more than ppm parts per million away from ref? */
static inline int ttq_beyond_ppm(int64_t a, int64_t ref, int64_t ppm) {
    __int128 diff = (__int128)a - (__int128)ref;
    if (diff < 0) diff = -diff;
    return diff * 1000000 > (__int128)ppm * (__int128)ref;
}

#endif
