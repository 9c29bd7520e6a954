"""Binance's spot user data events -> VenueReports and balances (core/venues/binance/user_stream.py), on the
documented shapes in the sample data's binance/docs_shapes/ (data/, or $TTQ_SAMPLE_DATA) with our client
order ids put in, and on what a cancel, a reject and a foreign order look like."""
import json
from decimal import Decimal

import pytest

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
from ttquant.core.records import Liquidity, OrderStatus, RejectCode
from ttquant.core.sim.captures import sample_data_dir
from ttquant.core.venues.binance.responses import ForeignOrder, ResponseError
from ttquant.core.venues.binance.user_stream import UserDataReader, account_position, event_ids, execution_report

SHAPES = sample_data_dir() / "binance" / "docs_shapes"
S = OrderStatus


def shape(kind, **changes):
    event = json.loads((SHAPES / f"spot_user_data_json_execution_report_{kind}.json").read_text(), parse_float=Decimal)
    return {**event, **changes}


def eth(iid=7):
    return Instrument(instrument_id=iid, venue="binance", symbol="ETHUSDT", market_type=MarketType.SPOT, base="ETH",
                      quote="USDT", price_precision=2, size_precision=4, tick_size=1, step_size=1, min_qty=1,
                      max_qty=0, min_price=1, max_price=0, min_notional=0)


def test_the_documented_new_event_is_an_ack_with_the_orders_price_and_quantity():
    rep = execution_report(shape("new", c="t3-41"), eth())
    assert (rep.strategy_id, rep.client_order_id, rep.status, rep.venue_order_id) == (3, 41, S.ACCEPTED, 12345678)
    assert (rep.price, rep.qty, rep.cum_qty, rep.last_qty, rep.trade_id, rep.fee) == (250000, 10000, 0, 0, 0, 0)
    assert rep.ts_exchange == 1709654400000 * 1_000_000


def test_the_documented_trade_is_a_fill_with_the_venues_trade_id_and_its_base_fee_valued_in_quote():
    rep = execution_report(shape("trade", c="t3-41"), eth())
    assert (rep.status, rep.last_qty, rep.last_price, rep.cum_qty, rep.trade_id, rep.liquidity) == \
        (S.FILLED, 10000, 250000, 10000, 98765432, Liquidity.MAKER)
    assert rep.fee == int(Decimal("0.001") * Decimal("2500") * 10**8)     # 0.001 ETH at 2500 USDT, 8 decimals


def test_a_partial_taker_fill_in_the_quote_asset():
    rep = execution_report(shape("trade", c="t3-41", X="PARTIALLY_FILLED", l="0.4000", z="0.4000", m=False,
                                 n="0.25", N="USDT", t=5), eth())
    assert (rep.status, rep.last_qty, rep.cum_qty, rep.liquidity, rep.fee, rep.trade_id) == \
        (S.PARTIALLY_FILLED, 4000, 4000, Liquidity.TAKER, 25_000_000, 5)


def test_a_cancel_names_the_canceled_order_in_C_and_keeps_what_had_filled():
    event = shape("new", c="cancel-by-someone", C="t3-41", x="CANCELED", X="CANCELED", z="0.2500")
    assert event_ids(event) == (3, 41)
    rep = execution_report(event, eth())
    assert (rep.status, rep.cum_qty, rep.last_qty) == (S.CANCELED, 2500, 0)


@pytest.mark.parametrize("reason, code", [("INSUFFICIENT_BALANCES", RejectCode.INSUFFICIENT_FUNDS),
                                          ("WOULD_MATCH_IMMEDIATELY", RejectCode.BAD_PRICE),
                                          ("SOMETHING_NEW", RejectCode.VENUE)])
def test_a_reject_says_why(reason, code):
    rep = execution_report(shape("new", c="t3-41", x="REJECTED", X="REJECTED", r=reason), eth())
    assert (rep.status, rep.reject_code) == (S.REJECTED, code)


def test_a_fee_in_a_third_asset_is_zero_counted_and_said(caplog):
    reader = UserDataReader(_table())
    (rep,) = reader.on_event(shape("trade", c="t3-41", n="0.00002", N="BNB"))
    assert rep.fee == 0 and reader.counts["fee_other_asset"] == 1
    assert "BNB" in caplog.text


def test_foreign_orders_and_symbols_we_do_not_carry_are_counted_and_left_alone():
    reader = UserDataReader(_table())
    assert reader.on_event(shape("trade")) == []            # the docs' own client order id: not ours
    assert reader.on_event(shape("trade", c="t1-1", s="DOGEUSDT")) == []
    assert reader.on_event(shape("trade", c="t1-1", l="0.00001")) == []  # finer than the instrument: not guessed
    assert (reader.counts["foreign_orders"], reader.counts["unknown_symbols"], reader.counts["bad_events"]) == (1, 1, 1)
    with pytest.raises(ForeignOrder):
        execution_report(shape("new"), eth())
    with pytest.raises(ResponseError):
        execution_report(shape("new", c="t1-1", X="SOMETHING"), eth())


def test_account_positions_are_the_balances_as_the_stream_last_said():
    reader = UserDataReader(_table())
    event = {"e": "outboundAccountPosition", "E": 2, "u": 1564034571073,
             "B": [{"a": "ETH", "f": "10000.000000", "l": "0.5"}, {"a": "USDT", "f": "0", "l": "0"}]}
    assert reader.on_event(event) == []
    assert reader.balances == {"ETH": 1000050000000, "USDT": 0} == account_position(event)
    assert reader.balances_ms == 1564034571073
    reader.on_event({"e": "balanceUpdate", "E": 3, "a": "BTC", "d": "1", "T": 3})
    assert reader.counts["ignored_balanceUpdate"] == 1 and "BTC" not in reader.balances


def _table():
    table = InstrumentTable("binance")
    table.add(eth())
    return table
