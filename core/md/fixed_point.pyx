"""Python face of fixed_point.pxd: parse and format venue decimal strings exactly."""
from libc.stdint cimport int64_t
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

__all__ = ["parse_fixed_str", "parse_fixed_quoted_str", "format_fixed", "FixedPointError", "FIXED_REASONS",
           "MAX_PRECISION"]

MAX_PRECISION = 18
FIXED_REASONS = {
    FIXED_EMPTY: "empty", FIXED_SYNTAX: "syntax", FIXED_NEGATIVE: "negative",
    FIXED_TOO_PRECISE: "too_precise", FIXED_OVERFLOW: "overflow",
}


class FixedPointError(ValueError):
    """A decimal string that is not a value at the precision; .reason is one of FIXED_REASONS."""

    def __init__(self, text, precision, reason):
        super().__init__(f"{text!r} at {precision} decimals: {reason}")
        self.reason = reason


def parse_fixed_str(str text, int precision, bint allow_negative=False):
    """text * 10**precision as an int, exactly; FixedPointError says why not."""
    if not 0 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision {precision} is outside 0..{MAX_PRECISION}")
    cdef Py_ssize_t n
    cdef const char *s = PyUnicode_AsUTF8AndSize(text, &n)
    cdef int64_t value
    cdef int status = parse_fixed(s, n, precision, allow_negative, &value)
    if status != FIXED_OK:
        raise FixedPointError(text, precision, FIXED_REASONS[status])
    return value


def format_fixed(long long raw, int precision):
    """The shortest exact decimal string of raw / 10**precision ("61837.63", "0.001", "5")."""
    if not 0 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision {precision} is outside 0..{MAX_PRECISION}")
    sign = "-" if raw < 0 else ""
    digits = str(abs(raw)).rjust(precision + 1, "0")
    if precision == 0:
        return sign + digits
    whole, frac = digits[:-precision], digits[-precision:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else sign + whole


def parse_fixed_quoted_str(str text, int precision):
    """parse_fixed_str of text (no '"' in it, no sign allowed) as the depth levels are read:
    the string is followed by its closing quote and parsed in the pass that finds it."""
    if not 0 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision {precision} is outside 0..{MAX_PRECISION}")
    if '"' in text:
        raise ValueError("text must not contain a quote")
    cdef bytes quoted = (text + '"').encode()
    cdef const char *s = quoted
    cdef const char *after
    cdef int64_t value
    cdef int status = parse_fixed_quoted(s, s + len(quoted), precision, &value, &after)
    if after != s + len(quoted):
        raise AssertionError(f"read {after - s} bytes of {len(quoted)}")
    if status != FIXED_OK:
        raise FixedPointError(text, precision, FIXED_REASONS[status])
    return value
