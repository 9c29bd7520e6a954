# Decimal strings to int64 fixed point without a Python float (DESIGN.md §3, §4).
#
# Venues send prices and quantities as decimal strings ("61837.63000000"). parse_fixed turns
# one into value * 10**precision exactly, or says why it cannot: the reason is a drop reason
# the md counters use. Trailing zeros past the precision are fine; a non-zero digit there
# means the instrument table's precision is wrong for this venue value, and is refused.
from libc.stdint cimport int64_t, uint64_t

cdef enum fixed_status:
    FIXED_OK = 0
    FIXED_EMPTY = 1             # no digits at all ("", ".", "-")
    FIXED_SYNTAX = 2            # anything but [-]digits[.digits]: "1e5", "nan", " 1", "1.2.3"
    FIXED_NEGATIVE = 3          # a minus sign where the caller wants a non-negative value
    FIXED_TOO_PRECISE = 4       # a non-zero digit beyond the precision
    FIXED_OVERFLOW = 5          # does not fit int64 at this precision

cdef extern from *:
    """
    static const unsigned long long ttq_pow10[19] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
        100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
        10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL};
    """
    const uint64_t ttq_pow10[19]

DEF FIXED_MAX = 9223372036854775807


cdef inline int parse_fixed(const char *s, Py_ssize_t n, int precision, bint allow_negative,
                            int64_t *out) noexcept nogil:
    """s[0:n] as an int64 at `precision` decimals (0..18) into *out; FIXED_OK or the reason.

    The whole string is checked before a reason is given, in this order: syntax, empty,
    too precise, overflow, negative (so "1.2x" is syntax, not too precise)."""
    cdef Py_ssize_t i = 0
    cdef uint64_t value = 0
    cdef int decimals = -1      # digits taken after the point; -1: no point yet
    cdef int digits = 0
    cdef bint negative = False, too_precise = False, overflow = False
    cdef unsigned int c
    if n > 0 and s[0] == b'-':
        negative = True
        i = 1
    while i < n:
        c = <unsigned char>s[i]
        i += 1
        if c - 48 < 10:         # unsigned: one comparison for '0'..'9'
            digits += 1
            if decimals >= 0:
                if decimals == precision:
                    too_precise |= c != 48      # trailing zeros past the precision are fine
                    continue
                decimals += 1
            if value > (<uint64_t>FIXED_MAX - (c - 48)) // 10:
                overflow = True
                value = 0       # keep scanning: a syntax error still wins
            value = value * 10 + (c - 48)
        elif c == 46 and decimals < 0:      # '.'
            decimals = 0
        else:
            return FIXED_SYNTAX
    if digits == 0:
        return FIXED_EMPTY      # only a sign and/or a point: anything else returned above
    if too_precise:
        return FIXED_TOO_PRECISE
    if decimals < 0:
        decimals = 0
    if overflow or value > <uint64_t>FIXED_MAX // ttq_pow10[precision - decimals]:
        return FIXED_OVERFLOW
    value *= ttq_pow10[precision - decimals]
    if negative and value != 0:
        if not allow_negative:
            return FIXED_NEGATIVE
        out[0] = -<int64_t>value
    else:
        out[0] = <int64_t>value
    return FIXED_OK
