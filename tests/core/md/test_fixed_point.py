"""Decimal strings to int64 fixed point: exact, or refused with the reason, never a float."""
import re
from decimal import Decimal, localcontext

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ttquant.core.md.fixed_point import FixedPointError, format_fixed, parse_fixed_quoted_str, parse_fixed_str

INT64_MAX = 2**63 - 1
SHAPE = re.compile(r"-?(\d+\.?\d*|\.\d+)\Z")


def model(text, precision, allow_negative):
    """What parse_fixed must do, written the slow obvious way with Decimal."""
    if not any(ch.isdigit() for ch in text) and re.fullmatch(r"-?\.?", text):
        return "empty"
    if not SHAPE.match(text) or not text.isascii():
        return "syntax"
    with localcontext() as ctx:
        ctx.prec = 200      # exact: the default 28 digits would round long inputs
        scaled = Decimal(text).scaleb(precision)
        if scaled != scaled.to_integral_value():
            return "too_precise"
    value = int(scaled)
    if abs(value) > INT64_MAX:
        return "overflow"
    if value < 0 and not allow_negative:
        return "negative"
    return value


def outcome(text, precision, allow_negative):
    try:
        return parse_fixed_str(text, precision, allow_negative)
    except FixedPointError as exc:
        return exc.reason


def quoted_outcome(text, precision):
    try:
        return parse_fixed_quoted_str(text, precision)
    except FixedPointError as exc:
        return exc.reason


@pytest.mark.parametrize("text,precision,expected", [
    ("61837.63000000", 2, 6183763),
    ("0.00010000", 8, 10000),
    ("3.78826000", 5, 378826),
    ("1", 8, 100000000),
    ("0", 2, 0),
    ("0.00000000", 8, 0),
    ("-0.00010000", 8, "negative"),
    ("61837.631", 2, "too_precise"),
    ("1e-8", 8, "syntax"),
    ("NaN", 2, "syntax"),
    ("inf", 2, "syntax"),
    ("", 2, "empty"),
    (".", 2, "empty"),
    ("92233720368547758.07", 2, INT64_MAX),
    ("92233720368547758.08", 2, "overflow"),
    ("10", 18, "overflow"),
])
def test_known_values(text, precision, expected):
    assert outcome(text, precision, False) == expected


def test_negative_only_when_allowed():
    assert parse_fixed_str("-0.00010000", 8, True) == -10000
    assert parse_fixed_str("-0.000", 2, False) == 0       # minus zero is zero, not negative


def test_precision_out_of_range_is_refused():
    with pytest.raises(ValueError, match="precision"):
        parse_fixed_str("1", 19)


decimal_text = st.builds(
    lambda sign, whole, frac, zeros: f"{sign}{whole}" + (f".{frac}{'0' * zeros}" if frac is not None else ""),
    st.sampled_from(["", "-"]), st.integers(0, 10**20).map(str),
    st.one_of(st.none(), st.text("0123456789", max_size=20)), st.integers(0, 6))


@settings(max_examples=1500)
@given(decimal_text, st.integers(0, 18), st.booleans())
@example("0.1", 0, False)
@example("-.5", 1, True)
def test_well_formed_numbers_match_decimal(text, precision, allow_negative):
    assert outcome(text, precision, allow_negative) == model(text, precision, allow_negative)


@settings(max_examples=1500)
@given(st.text(alphabet=st.sampled_from(list("0123456789.-+eE ,nai\x00\u00e9")), max_size=24),
       st.integers(0, 18), st.booleans())
def test_any_string_is_parsed_or_refused_like_the_model(text, precision, allow_negative):
    assert outcome(text, precision, allow_negative) == model(text, precision, allow_negative)


@given(st.integers(-INT64_MAX, INT64_MAX), st.integers(0, 18))
def test_format_then_parse_round_trips(raw, precision):
    text = format_fixed(raw, precision)
    assert Decimal(text) == Decimal(raw).scaleb(-precision)
    assert parse_fixed_str(text, precision, True) == raw


@settings(max_examples=1500)
@given(st.one_of(decimal_text, st.text(alphabet=st.sampled_from(list("0123456789.-+eE ,\\\x00\u00e9")), max_size=24)),
       st.integers(0, 18))
@example("61837.63000000", 2)
@example("1234567890123456789", 0)        # 19 digits: past int64 at any precision
@example("9223372036854775807", 0)
@example("0.000000000000000000001", 18)
def test_the_depth_levels_reader_agrees_with_parse_fixed(text, precision):
    """The levels of a depth diff are parsed while their closing quote is found: same values,
    same refusals, and it stops right after the quote."""
    assert quoted_outcome(text, precision) == outcome(text, precision, False)
