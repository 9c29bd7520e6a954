"""Instrument table: exact fixed-point scaling, save/load beside the rings, clear errors."""
import json
import os
from decimal import Decimal

import pytest

from ttquant.core.instruments import (
    INSTRUMENT_DTYPE,
    Instrument,
    InstrumentTable,
    InstrumentTableError,
    MarketType,
    instruments_path,
)


def _btc(**over):
    values = dict(instrument_id=1, venue="binance", symbol="BTCUSDT", market_type=MarketType.SPOT,
                  base="BTC", quote="USDT", price_precision=2, size_precision=5, tick_size=1,
                  step_size=1, min_qty=1, max_qty=900000000, min_price=1, max_price=100000000,
                  min_notional=500)
    values.update(over)
    return Instrument(**values)


def _table():
    return InstrumentTable("binance", [
        _btc(),
        _btc(instrument_id=2, market_type=MarketType.LINEAR_PERPETUAL, price_precision=1,
             size_precision=3, tick_size=1, min_notional=10000),
    ])


def test_prices_scale_exactly_without_floats():
    btc = _btc()
    assert btc.price_to_raw("67012.34") == 6701234
    assert btc.price_to_raw(0.1) == 10          # shortest repr, not 0.1000000000000000055...
    assert btc.qty_to_raw("0.00012") == 12
    assert btc.price_from_raw(6701234) == Decimal("67012.34")
    with pytest.raises(ValueError, match="more than 2 decimals"):
        btc.price_to_raw("1.001")
    assert btc.price_to_raw("1.005", exact=False) == 100      # half-even
    assert btc.price_to_raw("1.015", exact=False) == 102
    for bad in ("nan", "inf", "abc", None):
        with pytest.raises(ValueError):
            btc.price_to_raw(bad)


def test_notional_is_exact_in_quote_units():
    btc = _btc()
    # 67012.34 USDT * 0.00012 BTC = 8.0414808 USDT -> 804 at price precision 2 (truncated)
    assert btc.notional_raw(6701234, 12) == 804


def test_lookups():
    t = _table()
    assert t[1].symbol == "BTCUSDT" and t.get(3) is None
    assert t.by_symbol("BTCUSDT", MarketType.LINEAR_PERPETUAL).instrument_id == 2
    assert t.by_symbol("ETHUSDT") is None
    assert t.next_id() == 3 and len(t) == 2
    with pytest.raises(KeyError, match="no instrument 9 on binance"):
        t[9]


def test_duplicates_are_refused():
    t = _table()
    with pytest.raises(ValueError, match="instrument id 1 is already BTCUSDT"):
        t.add(_btc(symbol="ETHUSDT"))
    with pytest.raises(ValueError, match=r"BTCUSDT \(SPOT\) is already id 1"):
        t.add(_btc(instrument_id=5))
    with pytest.raises(ValueError, match="belongs to okx"):
        t.add(_btc(instrument_id=6, venue="okx"))


@pytest.mark.parametrize("over,message", [
    (dict(tick_size=0), "tick_size must be positive"),
    (dict(price_precision=19), "price_precision 19"),
    (dict(min_notional=-1), "min_notional must not be negative"),
    (dict(instrument_id=2**32), "must fit 32 bits"),
])
def test_bad_instruments_are_refused(over, message):
    with pytest.raises(ValueError, match=message):
        _btc(**over)


def test_save_and_load_round_trip(tmp_path):
    t = _table()
    path = t.save(str(tmp_path / "binance.json"))
    assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    assert InstrumentTable.load(path) == t


def test_default_path_is_beside_the_rings(venue):
    t = InstrumentTable(venue, [_btc(venue=venue)])
    path = t.save()
    try:
        assert path == f"/dev/shm/ttq.{venue}.instruments.json" == instruments_path(venue)
        assert InstrumentTable.load(path) == t
    finally:
        os.unlink(path)


def test_to_array_mirrors_the_table():
    arr = _table().to_array()
    assert arr.dtype == INSTRUMENT_DTYPE
    assert list(arr["instrument_id"]) == [1, 2]
    assert arr["symbol"][1] == b"BTCUSDT" and arr["market_type"][1] == MarketType.LINEAR_PERPETUAL
    assert arr["min_notional"][1] == 10000


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(version=9), "key 'version' is 9"),
    (lambda d: d.update(venue=""), "key 'venue' must be a non-empty string"),
    (lambda d: d.update(instruments={}), "key 'instruments' must be a list"),
    (lambda d: d["instruments"][1].pop("tick_size"), r"instruments\[1\]: missing key 'tick_size'"),
    (lambda d: d["instruments"][0].update(tick=1), r"instruments\[0\]: unknown key 'tick'"),
    (lambda d: d["instruments"][0].update(market_type="future"), "key 'market_type' is 'future'"),
    (lambda d: d["instruments"][0].update(tick_size="0.01"), "key 'tick_size' must be int, got '0.01'"),
    (lambda d: d["instruments"][0].update(step_size=0), r"instruments\[0\]: BTCUSDT: step_size must be positive"),
])
def test_bad_files_name_the_file_and_key(tmp_path, mutate, message):
    path = tmp_path / "t.json"
    doc = json.loads(_table().to_json())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(InstrumentTableError, match=message) as info:
        InstrumentTable.load(str(path))
    assert str(path) in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(InstrumentTableError, match="no instrument table there"):
        InstrumentTable.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InstrumentTableError, match="not JSON"):
        InstrumentTable.load(str(tmp_path / "bad.json"))
