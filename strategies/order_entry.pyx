"""Prices and quantities from a strategy's floats to raw units on the instrument's grid, in C
(the one arithmetic step on every order a strategy sends)."""
from libc.math cimport floor, ceil, fabs, isfinite
from libc.stdint cimport int64_t

__all__ = ["to_units"]

cdef double[19] POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                         1e15, 1e16, 1e17, 1e18]


cpdef int64_t to_units(double x, int precision, int64_t unit, bint down) except? -1:
    """x (> 0, finite) as a raw multiple of unit at precision, rounded down or up; a float within
    a billionth of a unit of a multiple is that multiple (60390.0 is 60390, not 60389.99 from
    binary noise). -1 when x is not a positive finite number or the result would not be exact
    in a double (the caller then takes the exact, slow way)."""
    if not (x > 0 and isfinite(x)) or precision < 0 or precision > 18 or unit <= 0:
        return -1
    cdef double units = x * POW10[precision] / <double>unit
    if units > 9.0e15:
        return -1
    cdef double near = floor(units + 0.5)
    if fabs(units - near) <= 1e-9 * (units if units > 1.0 else 1.0):
        return <int64_t>near * unit
    return <int64_t>(floor(units) if down else ceil(units)) * unit
