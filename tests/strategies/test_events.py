"""Trade, Quote and Bar (strategies/events.pyx): built from a MarketEvent and its instrument,
floats at the instrument's precision, the raw integers and timestamps as recorded, the kind's
own fields and flags, and `event` an independent copy of the record."""
from decimal import Decimal

import pytest

from ttquant.core.instruments import Instrument, MarketType
from ttquant.core.records import EventFlag, EventKind, MarketEvent
from ttquant.strategies.events import Bar, MarketView, Quote, Trade


def _inst(price_precision=2, size_precision=5, instrument_id=7, symbol="BTCUSDT"):
    return Instrument(instrument_id, "binance", symbol, MarketType.SPOT, "BTC", "USDT", price_precision,
                      size_precision, 1, 1, 1, 0, 1, 0, 0)


def _real(raw, precision):
    """raw * 10**-precision, the nearest double, from exact decimal arithmetic."""
    return float(Decimal(raw).scaleb(-precision))


def _trade_event(**fields):
    base = {"kind": EventKind.TRADE, "instrument_id": 7, "price": 6039012, "qty": 150, "seq": 987654321,
            "ts_exchange": 1_700_000_000_000_000_001, "ts_recv": 1_700_000_000_000_000_002,
            "ts_pub": 1_700_000_000_000_000_003, "flags": EventFlag.BUYER_AGGRESSOR}
    base.update(fields)
    return MarketEvent(**base)


def test_a_trade_has_floats_at_the_precision_and_the_raw_record_beside_them():
    inst = _inst()
    t = Trade(_trade_event(), inst)
    assert isinstance(t, MarketView)
    assert t.price == 60390.12 and t.qty == 0.0015
    assert (t.price_raw, t.qty_raw) == (6039012, 150)
    assert (t.ts_exchange, t.ts_recv, t.ts_pub) == (1_700_000_000_000_000_001, 1_700_000_000_000_000_002,
                                                   1_700_000_000_000_000_003)
    assert t.instrument_id == 7 and t.instrument is inst
    assert t.trade_id == 987654321
    assert t.buyer_aggressor is True
    assert "BTCUSDT" in repr(t) and "Trade" in repr(t)


def test_the_aggressor_comes_from_its_flag_alone():
    inst = _inst()
    assert Trade(_trade_event(flags=0), inst).buyer_aggressor is False
    assert Trade(_trade_event(flags=EventFlag.LAST_IN_BATCH | EventFlag.AGGREGATED), inst).buyer_aggressor is False
    assert Trade(_trade_event(flags=EventFlag.BUYER_AGGRESSOR | EventFlag.LAST_IN_BATCH), inst).buyer_aggressor


@pytest.mark.parametrize("price_precision,size_precision", [(0, 0), (1, 8), (2, 5), (8, 3), (12, 18), (18, 0)])
def test_floats_follow_each_precision(price_precision, size_precision):
    inst = _inst(price_precision, size_precision)
    price_raw, qty_raw = 123456789, 98765
    t = Trade(_trade_event(price=price_raw, qty=qty_raw), inst)
    assert t.price == pytest.approx(_real(price_raw, price_precision), rel=0)
    assert t.qty == pytest.approx(_real(qty_raw, size_precision), rel=0)
    assert (t.price_raw, t.qty_raw) == (price_raw, qty_raw)


def test_the_same_raw_price_reads_differently_on_two_instruments():
    ev = _trade_event(price=12345, qty=10)
    assert Trade(ev, _inst(2, 1)).price == 123.45
    assert Trade(ev, _inst(4, 3)).price == pytest.approx(1.2345, rel=0)
    assert Trade(ev, _inst(4, 3)).qty == pytest.approx(0.01, rel=0)


def test_event_is_a_copy_of_the_record_both_ways():
    ev = _trade_event()
    t = Trade(ev, _inst())
    copy = t.event
    assert isinstance(copy, MarketEvent) and copy == ev and copy is not ev
    copy.price = 1                      # changing the copy leaves the view alone
    assert t.price_raw == 6039012 and t.event == ev
    ev.qty = 999                        # and so does changing the record it was made from
    assert t.qty_raw == 150
    assert t.event != ev


def test_a_quote_has_both_sides_its_mid_and_where_it_came_from():
    inst = _inst(2, 5)
    ev = MarketEvent(kind=EventKind.BBO, instrument_id=7, price=6039000, qty=120000, ask_price=6039010,
                     ask_qty=5, ts_pub=42, flags=EventFlag.FROM_BOOK)
    q = Quote(ev, inst)
    assert q.bid == 60390.0
    assert q.bid_qty == pytest.approx(1.2, rel=0)     # raw / 10**5: the decimal, correctly rounded
    assert (q.ask, q.ask_qty) == (60390.1, 0.00005)
    assert (q.price_raw, q.qty_raw, q.ask_raw) == (6039000, 120000, 6039010)
    assert q.mid == 60390.05
    assert q.from_book is True and q.ts_pub == 42 and q.instrument is inst
    venue_ticker = Quote(MarketEvent(kind=EventKind.BBO, instrument_id=7, price=100, qty=1, ask_price=300,
                                     ask_qty=1, flags=EventFlag.LAST_IN_BATCH), inst)
    assert venue_ticker.from_book is False
    assert venue_ticker.mid == 2.0      # (1.00 + 3.00) / 2


def test_a_mid_between_adjacent_ticks_is_half_a_tick():
    q = Quote(MarketEvent(kind=EventKind.BBO, instrument_id=7, price=101, ask_price=102), _inst(2, 5))
    assert q.mid == pytest.approx(1.015, rel=0)


def test_a_bar_has_its_ohlc_volume_and_open_time():
    inst = _inst(2, 3)
    ev = MarketEvent(kind=EventKind.KLINE, instrument_id=7, open=10000, high=10550, low=9925, price=10200,
                     qty=123456, open_time_ns=1_700_000_000_000_000_000, close_time_ns=1_700_000_059_999_000_000,
                     flags=EventFlag.CLOSED)
    b = Bar(ev, inst)
    assert (b.open, b.high, b.low, b.close) == (100.0, 105.5, 99.25, 102.0)
    assert b.volume == 123.456 and b.price == b.close and b.qty == b.volume
    assert b.open_time_ns == 1_700_000_000_000_000_000
    assert b.closed is True
    open_bar = Bar(MarketEvent(kind=EventKind.KLINE, instrument_id=7, price=1, flags=EventFlag.LAST_IN_BATCH),
                   inst)
    assert open_bar.closed is False


def test_each_view_has_only_its_own_kinds_fields():
    ev, inst = _trade_event(), _inst()
    assert not hasattr(Trade(ev, inst), "ask") and not hasattr(Trade(ev, inst), "open")
    assert not hasattr(Quote(ev, inst), "buyer_aggressor") and not hasattr(Bar(ev, inst), "bid")
    assert issubclass(Quote, MarketView) and issubclass(Bar, MarketView)


def test_a_view_needs_a_market_event():
    with pytest.raises(TypeError):
        Trade(None, _inst())
    with pytest.raises(TypeError):
        Quote(b"\0" * 120, _inst())
