# Decimal strings to int64 fixed point without a Python float (DESIGN.md §3, §4).
#
# Venues send prices and quantities as decimal strings ("61837.63000000"). parse_fixed turns
# one into value * 10**precision exactly, or says why it cannot: the reason is a drop reason
# the md counters use. Trailing zeros past the precision are fine; a non-zero digit there
# means the instrument table's precision is wrong for this venue value, and is refused.
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

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
    /* INT64_MAX / 10**k: a division is ~40 cycles, more than the rest of a number's parse */
    static const unsigned long long ttq_max_over_pow10[19] = {
        9223372036854775807ULL, 922337203685477580ULL, 92233720368547758ULL,
        9223372036854775ULL, 922337203685477ULL, 92233720368547ULL, 9223372036854ULL,
        922337203685ULL, 92233720368ULL, 9223372036ULL, 922337203ULL, 92233720ULL, 9223372ULL,
        922337ULL, 92233ULL, 9223ULL, 922ULL, 92ULL, 9ULL};
    """
    const uint64_t ttq_pow10[19]
    const uint64_t ttq_max_over_pow10[19]

DEF FIXED_MAX = 9223372036854775807


cdef inline int fixed_scale(uint64_t value, int decimals, int precision, int64_t *out) noexcept nogil:
    """value with `decimals` decimals (all digits < 10**19) at `precision`: FIXED_OK, or -1
    for anything the exact parser must judge (digits past the precision, overflow)."""
    cdef uint64_t scale
    if decimals > precision:
        scale = ttq_pow10[decimals - precision]
        if value % scale:
            return -1
        value //= scale
    else:
        if value > ttq_max_over_pow10[precision - decimals]:
            return -1
        value *= ttq_pow10[precision - decimals]
    out[0] = <int64_t>value
    return FIXED_OK


cdef inline int parse_fixed(const char *s, Py_ssize_t n, int precision, bint allow_negative,
                            int64_t *out) noexcept nogil:
    """s[0:n] as an int64 at `precision` decimals (0..18) into *out; FIXED_OK or the reason.

    The whole string is checked before a reason is given, in this order: syntax, empty,
    too precise, overflow, negative (so "1.2x" is syntax, not too precise)."""
    # what venues send (unsigned, at most 19 digits, one point) in one tight loop; anything
    # else, and every refusal, is the exact parser's
    cdef Py_ssize_t i, dot = -1
    cdef uint64_t value = 0
    cdef unsigned int d
    if 0 < n <= 19:
        for i in range(n):
            d = <unsigned char>s[i] - 48
            if d < 10:
                value = value * 10 + d
            elif s[i] == b'.' and dot < 0:
                dot = i
            else:
                break
        else:
            if n > 1 or dot < 0:
                if fixed_scale(value, n - dot - 1 if dot >= 0 else 0, precision, out) == FIXED_OK:
                    return FIXED_OK
    return parse_fixed_exact(s, n, precision, allow_negative, out)


# The eight-digit helpers read a loaded word as little-endian (x86-64, aarch64): the first
# character is its lowest byte.
cdef inline bint eight_digits(uint64_t w) noexcept nogil:
    """Every byte of w (eight characters as loaded) is '0'..'9'."""
    return ((w & 0xF0F0F0F0F0F0F0F0ULL)
            | (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) == 0x3333333333333333ULL


cdef inline uint64_t eight_digits_value(uint64_t w) noexcept nogil:
    """The number eight digit characters (eight_digits(w)) spell, first one most significant."""
    w -= 0x3030303030303030ULL
    w = w * 10 + (w >> 8)
    return (((w & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32)))
            + (((w >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32


cdef inline int parse_fixed_quoted(const char *s, const char *end, int precision, int64_t *out,
                                   const char **after) noexcept nogil:
    """parse_fixed of the string that starts at s and ends at the next '"' (which the caller
    knows is there, before end), read in the same pass that finds the quote, eight digits at
    a time where there are eight (a spot price's "63000000" tail); *after: past the quote."""
    cdef const char *p = s
    cdef const char *dot = NULL
    cdef uint64_t value = 0, w
    cdef unsigned int d
    cdef bint try_eight = True     # at the start and right after the point: where runs begin
    while True:
        if try_eight and end - p >= 8:  # the load stays before end; it never spans the quote
            memcpy(&w, p, 8)
            if eight_digits(w):
                value = value * 100000000 + eight_digits_value(w)
                p += 8
                continue
        try_eight = False
        d = <unsigned char>p[0] - 48
        if d < 10:
            value = value * 10 + d
        elif p[0] == b'.' and dot == NULL:
            dot = p
            try_eight = True
        else:
            break
        p += 1
    if p[0] == b'"' and 0 < p - s <= 19 and (p - s > 1 or dot == NULL):
        after[0] = p + 1
        if fixed_scale(value, p - dot - 1 if dot != NULL else 0, precision, out) == FIXED_OK:
            return FIXED_OK
    while p[0] != b'"':
        p += 1
    after[0] = p + 1
    return parse_fixed_exact(s, p - s, precision, False, out)


cdef inline int parse_fixed_exact(const char *s, Py_ssize_t n, int precision, bint allow_negative,
                                  int64_t *out) noexcept nogil:
    """parse_fixed, one character at a time, judging everything."""
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
