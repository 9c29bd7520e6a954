"""Record layout: the C structs and the numpy dtypes agree byte for byte."""
import pickle

import numpy as np
import pytest

from ttquant.core import records
from ttquant.core.records import (
    DTYPES,
    EXEC_REPORT_DTYPE,
    MARKET_EVENT_DTYPE,
    ORDER_DTYPE,
    RECORD_CLASSES,
    RECORD_SIZES,
    EventKind,
    ExecReport,
    MarketEvent,
    Order,
    c_layout,
    dtype_for,
)


@pytest.mark.parametrize("record_type", list(RECORD_SIZES))     # the fixed-size records
def test_every_dtype_field_sits_where_the_compiler_put_it(record_type):
    size, offsets = c_layout()[record_type]
    dtype = DTYPES[record_type]
    assert dtype.itemsize == size == RECORD_SIZES[record_type]
    assert set(dtype.names) == set(offsets)
    for name, (_, offset) in dtype.fields.items():
        assert offset == offsets[name], f"{record_type.name}.{name}"


@pytest.mark.parametrize("record_type", list(RECORD_SIZES))     # the fixed-size records
def test_field_widths_match_the_structs(record_type):
    """Writing through the record object and reading through the dtype gives the same value,
    for the extreme of each field's type, so widths and signedness agree too."""
    cls = RECORD_CLASSES[record_type]
    dtype = DTYPES[record_type]
    for name in dtype.names:
        kind = dtype.fields[name][0]
        for value in (np.iinfo(kind).max, np.iinfo(kind).min):
            rec = cls()
            setattr(rec, name, int(value))
            arr = np.frombuffer(rec.tobytes(), dtype=dtype)
            assert arr[name][0] == value, f"{cls.__name__}.{name}={value}"
            assert getattr(rec, name) == value


def test_record_sizes_fit_one_slot():
    # 8-byte stamp + record, rounded to 64: ticks and reports take 128 bytes, orders 64.
    assert MARKET_EVENT_DTYPE.itemsize == 120
    assert ORDER_DTYPE.itemsize == 56
    assert EXEC_REPORT_DTYPE.itemsize == 120


def test_kind_specific_names_alias_the_union_like_c():
    ev = MarketEvent(kind=EventKind.BBO, price=100, qty=2, ask_price=101, ask_qty=3)
    assert ev.open == 101 and ev.first_trade_id == 101 and ev.index_price == 101
    arr = np.frombuffer(ev.tobytes(), dtype=MARKET_EVENT_DTYPE)
    assert arr["ask_price"][0] == 101 and arr["open"][0] == 101


def test_out_of_range_values_are_refused():
    with pytest.raises(OverflowError):
        Order(side=256)
    with pytest.raises(OverflowError):
        MarketEvent(instrument_id=-1)


def test_unknown_field_is_a_type_error():
    with pytest.raises(TypeError, match="has no field 'prise'"):
        Order(prise=1)


@pytest.mark.parametrize("cls", [MarketEvent, Order, ExecReport])
def test_bytes_pickle_copy_round_trip(cls):
    rec = cls()
    rec.price = 12345
    assert cls.frombytes(rec.tobytes()) == rec
    assert pickle.loads(pickle.dumps(rec)) == rec
    other = rec.copy()
    other.price = 1
    assert rec.price == 12345 and other != rec


def test_frombytes_with_the_wrong_size_names_the_record():
    with pytest.raises(ValueError, match="Order needs 56 bytes, got 3"):
        Order.frombytes(b"abc")


def test_dtype_for_unknown_type():
    assert dtype_for(1) is MARKET_EVENT_DTYPE
    with pytest.raises(KeyError, match="unknown record type 99"):
        dtype_for(99)


def test_repr_shows_the_kind_specific_fields():
    text = repr(MarketEvent(kind=EventKind.KLINE, open=1, high=2, low=0, price=1))
    assert "high=2" in text and "ask_price" not in text
    assert "ask_price=5" in repr(MarketEvent(kind=EventKind.BBO, ask_price=5))


def test_module_exports():
    for name in records.__all__:
        assert hasattr(records, name), name
