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


# -- USDT-M futures: ORDER_TRADE_UPDATE and ACCOUNT_UPDATE over a listen key ------------------------------
def btc_perp(iid=9):
    return Instrument(instrument_id=iid, venue="binance", symbol="BTCUSDT", market_type=MarketType.LINEAR_PERPETUAL,
                      base="BTC", quote="USDT", price_precision=2, size_precision=3, tick_size=1, step_size=1,
                      min_qty=1, max_qty=0, min_price=1, max_price=0, min_notional=0)


# Binance's documented ORDER_TRADE_UPDATE (user-data-streams, "Event: Order Update"); data/binance/docs_shapes
# has only the spot shapes, so it is written out here
FUTURES_TRADE = {
    "e": "ORDER_TRADE_UPDATE", "T": 1568879465651, "E": 1568879465651,
    "o": {"s": "BTCUSDT", "c": "TEST", "S": "BUY", "o": "LIMIT", "f": "GTC", "q": "0.001", "p": "7100.50",
          "ap": "7100.50", "sp": "0", "x": "TRADE", "X": "PARTIALLY_FILLED", "i": 8886774, "l": "0.001",
          "z": "0.001", "L": "7100.50", "N": "USDT", "n": "0.01000000", "T": 1568879465651, "t": 12345678,
          "b": "0", "a": "0", "m": True, "R": False, "wt": "CONTRACT_PRICE", "ot": "LIMIT", "ps": "LONG",
          "cp": False, "AP": "0", "cr": "0", "pP": False, "si": 0, "ss": 0, "rp": "12.34", "V": "EXPIRE_TAKER"}}


def futures_update(**changes):
    return {**FUTURES_TRADE, "o": {**FUTURES_TRADE["o"], **changes}}


def _perp_reader():
    table = InstrumentTable("binance")
    table.add(btc_perp())
    return UserDataReader(table, MarketType.LINEAR_PERPETUAL)


def test_the_documented_futures_trade_is_a_maker_fill_with_its_trade_id_and_usdt_fee():
    reader = _perp_reader()
    (rep,) = reader.on_event(futures_update(c="t4-8"))
    assert (rep.strategy_id, rep.client_order_id, rep.status, rep.venue_order_id) == (4, 8, S.PARTIALLY_FILLED, 8886774)
    assert (rep.last_qty, rep.last_price, rep.cum_qty, rep.trade_id, rep.liquidity, rep.fee) == \
        (1, 710050, 1, 12345678, Liquidity.MAKER, 1_000_000)
    assert (rep.price, rep.qty) == (710050, 1) and rep.ts_exchange == 1568879465651 * 1_000_000


def test_a_futures_amendment_says_the_new_price_and_quantity_and_no_fill():
    reader = _perp_reader()
    (rep,) = reader.on_event(futures_update(c="t4-8", x="AMENDMENT", X="PARTIALLY_FILLED", q="0.005", p="7000.10",
                                            l="0", L="0", t=0, z="0.001"))
    assert (rep.status, rep.price, rep.qty, rep.cum_qty, rep.last_qty, rep.trade_id) == \
        (S.ACCEPTED, 700010, 5, 1, 0, 0)


def test_a_futures_post_only_that_would_take_expires_without_a_reject_code():
    (rep,) = _perp_reader().on_event(futures_update(c="t4-9", f="GTX", x="EXPIRED", X="EXPIRED", l="0", z="0", t=0))
    assert (rep.status, rep.reject_code, rep.last_qty) == (S.EXPIRED, RejectCode.NONE, 0)


def test_a_spot_instrument_does_not_stand_for_the_perpetual():
    reader = UserDataReader(_table(), MarketType.LINEAR_PERPETUAL)     # ETHUSDT is there as spot only
    assert reader.on_event(futures_update(c="t4-8", s="ETHUSDT")) == [] and reader.counts["unknown_symbols"] == 1


def test_an_account_update_gives_the_wallet_and_the_signed_position():
    reader = _perp_reader()
    event = {"e": "ACCOUNT_UPDATE", "E": 5, "T": 1564745798938,
             "a": {"m": "ORDER", "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50"}],
                   "P": [{"s": "BTCUSDT", "pa": "-0.020", "ep": "9000", "cr": "200", "up": "0", "mt": "cross",
                          "iw": "0", "ps": "BOTH"},
                         {"s": "DOGEUSDT", "pa": "100", "ep": "0.1", "cr": "0", "up": "0", "mt": "cross", "iw": "0",
                          "ps": "BOTH"}]}}
    assert reader.on_event(event) == []
    assert reader.balances == {"USDT": 12262412345678} and reader.positions == {9: -20}
    assert reader.balances_ms == 1564745798938 and reader.counts["account_updates"] == 1
