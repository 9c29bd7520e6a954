"""Binance order bodies -> VenueReport / VenueOrder / VenueFill, exactly: the recorded answers in
the sample data's binance/rest_order_responses.json (data/, or $TTQ_SAMPLE_DATA) and the
documented FULL answer (binance/spot_new_order_full_response.json)."""
import json
from decimal import Decimal

import pytest

from ttquant.core.gateway.risk_config import ACCOUNT_PRECISION as GATEWAY_ACCOUNT_PRECISION
from ttquant.core.instruments import Instrument, MarketType
from ttquant.core.records import Liquidity, OrderStatus, Side
from ttquant.core.sim.captures import sample_data_dir
from ttquant.core.venues.base import VenueFill, VenueOrder, VenueReport
from ttquant.core.venues.binance.responses import (
    ACCOUNT_PRECISION,
    ForeignOrder,
    ResponseError,
    account_balances,
    encode_client_order_id,
    fee_to_account,
    order_reports,
    parse_client_order_id,
    venue_fill,
    venue_order,
)

DATA = sample_data_dir() / "binance"
S = OrderStatus


def _load(name):
    return json.loads((DATA / name).read_text(), parse_float=Decimal)


RECORDED = _load("rest_order_responses.json")


def inst(symbol, market=MarketType.SPOT, price_precision=2, size_precision=3, base=None, quote="USDT", iid=1):
    return Instrument(instrument_id=iid, venue="binance", symbol=symbol, market_type=market,
                      base=base or symbol.removesuffix(quote), quote=quote, price_precision=price_precision,
                      size_precision=size_precision, tick_size=1, step_size=1, min_qty=1, max_qty=0, min_price=1,
                      max_price=0, min_notional=0)


def test_fees_are_at_the_gateways_account_precision():
    assert ACCOUNT_PRECISION == GATEWAY_ACCOUNT_PRECISION


@pytest.mark.parametrize("strategy_id, cid", [(0, 0), (7, 42), (2**32 - 1, 2**64 - 1)])
def test_client_order_ids_round_trip_and_fit_binance(strategy_id, cid):
    text = encode_client_order_id(strategy_id, cid)
    assert parse_client_order_id(text) == (strategy_id, cid)
    assert len(text) <= 36 and all(c.isalnum() or c in "-_.:/" for c in text)  # Binance's newClientOrderId


@pytest.mark.parametrize("text", ["x-R4BD3S824d31be3228a348eaa0a303", "t7-042", "t07-42", "t7-", "t-1", "T7-42",
                                  "t4294967296-1", "t1-18446744073709551616", "t7-42 ", "", None, 742])
def test_ids_not_ours_are_not_parsed(text):
    assert parse_client_order_id(text) is None


def test_client_order_ids_out_of_range_are_refused():
    with pytest.raises(ValueError):
        encode_client_order_id(2**32, 1)
    with pytest.raises(ValueError):
        encode_client_order_id(1, -1)


def test_the_documented_full_answer_gives_one_report_per_fill_exactly():
    body = _load("spot_new_order_full_response.json")
    btc = inst("BTCUSDT", price_precision=2, size_precision=5)
    reports = order_reports(body, btc, ids=(7, 42))
    ts = 1507725176595 * 1_000_000
    common = dict(strategy_id=7, client_order_id=42, venue_order_id=28, liquidity=Liquidity.TAKER, ts_exchange=ts,
                  price=0, qty=1_000_000)
    assert reports == [
        VenueReport(status=S.PARTIALLY_FILLED, last_price=400000, last_qty=100000, cum_qty=100000,
                    fee=400000000, trade_id=56, **common),
        VenueReport(status=S.PARTIALLY_FILLED, last_price=399900, last_qty=500000, cum_qty=600000,
                    fee=1999500000, trade_id=57, **common),
        VenueReport(status=S.PARTIALLY_FILLED, last_price=399800, last_qty=200000, cum_qty=800000,
                    fee=799600000, trade_id=58, **common),
        VenueReport(status=S.PARTIALLY_FILLED, last_price=399700, last_qty=100000, cum_qty=900000,
                    fee=399700000, trade_id=59, **common),
        VenueReport(status=S.FILLED, last_price=399500, last_qty=100000, cum_qty=1_000_000,
                    fee=399500000, trade_id=60, **common),
    ]
    with pytest.raises(ForeignOrder):  # "6gCrw2kRUAF9CvJDGP16IP" is not one of our ids
        order_reports(body, btc)


def test_a_recorded_resting_spot_order_is_accepted_with_its_price_and_quantity():
    body = dict(RECORDED["spot_createOrder_SOLUSDT_limit_iceberg_POST_api_v3_order"])
    sol = inst("SOLUSDT", price_precision=2, size_precision=3)
    assert order_reports(body, sol, ids=(3, 9)) == [
        VenueReport(3, 9, S.ACCEPTED, venue_order_id=9780331417, cum_qty=0, ts_exchange=1737635557417 * 1_000_000,
                    price=24100, qty=50)]
    body["clientOrderId"] = encode_client_order_id(3, 9)  # our own id is read from the body
    assert order_reports(body, sol)[0].client_order_id == 9


def test_more_decimals_than_the_instrument_is_an_error_not_a_rounding():
    body = RECORDED["spot_createOrder_SOLUSDT_limit_iceberg_POST_api_v3_order"]
    with pytest.raises(ResponseError, match="origQty 0.05000000 has more than 1 decimals"):
        order_reports(body, inst("SOLUSDT", price_precision=2, size_precision=1), ids=(3, 9))


def test_a_filled_order_without_trade_ids_is_accepted_with_its_cum_qty_and_no_fill():
    # spot GET /api/v3/order of a filled market order: which trades is for the user stream / myTrades
    body = RECORDED["spot_fetchOrder_LTCUSDT_market_filled_GET_api_v3_order"]
    ltc = inst("LTCUSDT", price_precision=2, size_precision=3)
    (report,) = order_reports(body, ltc, ids=(1, 5))
    assert report == VenueReport(1, 5, S.ACCEPTED, venue_order_id=3397148653, cum_qty=100,
                                 ts_exchange=1679571174472 * 1_000_000, price=0, qty=100)
    assert venue_order(body, ltc, ids=(1, 5)) == VenueOrder(1, 5, 3397148653, 1, int(Side.SELL), 0, 100, 100,
                                                            int(S.FILLED))


def test_recorded_open_orders_spot_limit_maker_and_futures_gtx():
    (spot,) = RECORDED["spot_fetchOpenOrders_LTCUSDT_limit_maker"]
    assert venue_order(spot, inst("LTCUSDT"), ids=(2, 8)) == VenueOrder(2, 8, 3811057334, 1, int(Side.BUY), 5000,
                                                                        200, 0, int(S.ACCEPTED))
    fut = RECORDED["usdm_fetchOpenOrder_LTCUSDT_GTX"]
    perp = inst("LTCUSDT", MarketType.LINEAR_PERPETUAL, iid=4)
    assert venue_order(fut, perp, ids=(2, 9)) == VenueOrder(2, 9, 664082074, 4, int(Side.BUY), 5000, 200, 0,
                                                            int(S.ACCEPTED))
    (batch,) = RECORDED["usdm_createOrders_BTCUSDT_batchOrders"]
    assert order_reports(batch, inst("BTCUSDT", MarketType.LINEAR_PERPETUAL), ids=(1, 1)) == [
        VenueReport(1, 1, S.ACCEPTED, venue_order_id=4087922044, cum_qty=0, ts_exchange=1739781831932 * 1_000_000,
                    price=11000100, qty=200)]


@pytest.mark.parametrize("binance, ours", [("NEW", S.ACCEPTED), ("CANCELED", S.CANCELED), ("EXPIRED", S.EXPIRED),
                                           ("EXPIRED_IN_MATCH", S.EXPIRED), ("REJECTED", S.REJECTED)])
def test_terminal_and_open_states_without_fills_are_reported_as_they_are(binance, ours):
    body = {"orderId": 5, "clientOrderId": "t1-2", "status": binance, "price": "10.00", "origQty": "1.000",
            "executedQty": "0.250", "side": "BUY", "updateTime": 1}
    (report,) = order_reports(body, inst("XUSDT"))
    assert (report.status, report.cum_qty, report.last_qty) == (ours, 250, 0)


def test_a_spot_cancel_answer_names_our_order_in_origClientOrderId():
    body = {"symbol": "LTCUSDT", "origClientOrderId": "t4-77", "orderId": 9, "orderListId": -1,
            "clientOrderId": "cancelMyOrder1", "transactTime": 1684804350068, "price": "2.00", "origQty": "1.000",
            "executedQty": "0.000", "status": "CANCELED", "timeInForce": "GTC", "type": "LIMIT", "side": "BUY"}
    (report,) = order_reports(body, inst("LTCUSDT"))
    assert (report.strategy_id, report.client_order_id, report.status) == (4, 77, S.CANCELED)


def test_an_ack_says_only_that_the_venue_has_the_order():
    body = {"symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "t1-3",
            "transactTime": 1507725176595}
    assert order_reports(body, inst("BTCUSDT")) == [
        VenueReport(1, 3, S.ACCEPTED, venue_order_id=28, ts_exchange=1507725176595 * 1_000_000)]


def test_an_unknown_status_or_a_float_is_refused():
    body = {"orderId": 5, "clientOrderId": "t1-2", "status": "NEW_ADL", "price": "1", "origQty": "1",
            "executedQty": "0", "side": "BUY"}
    with pytest.raises(ResponseError, match="NEW_ADL"):
        order_reports(body, inst("XUSDT"))
    with pytest.raises(ResponseError, match="float"):
        order_reports({**body, "status": "NEW", "price": 1.5}, inst("XUSDT"))


def test_recorded_trades_become_fills_spot_and_futures():
    (spot,) = RECORDED["spot_myTrades_LTCUSDT"]
    assert venue_fill(spot, inst("LTCUSDT", size_precision=8), ids=(5, 6)) == VenueFill(
        trade_id=309520010, strategy_id=5, client_order_id=6, instrument_id=1, side=int(Side.SELL), price=6963,
        qty=20_000_000, fee=1_392_600, liquidity=int(Liquidity.TAKER), ts_ns=1698138992358 * 1_000_000)
    (fut,) = RECORDED["usdm_userTrades_BTCUSDT"]
    assert venue_fill(fut, inst("BTCUSDT", MarketType.LINEAR_PERPETUAL, iid=2), ids=(5, 7)) == VenueFill(
        trade_id=272536245, strategy_id=5, client_order_id=7, instrument_id=2, side=int(Side.BUY), price=3656710,
        qty=10, fee=14_626_840, liquidity=int(Liquidity.TAKER), ts_ns=1699972836419 * 1_000_000)


def test_fees_in_the_base_asset_are_valued_at_the_fill_price_rounded_up_and_a_third_asset_is_not_guessed():
    eth = inst("ETHUSDT", size_precision=4)
    assert fee_to_account("0.00100000", "ETH", eth, "2500.00000000") == 250_000_000   # 2.5 USDT
    assert fee_to_account("0.00000001", "ETH", eth, "2500.01") == 2501                # 0.0000250001 -> up
    assert fee_to_account("0.000000001", "USDT", eth) == 1                            # a ninth decimal rounds up
    assert fee_to_account("0.01", "BNB", eth, "2500") is None
    assert fee_to_account("0", "BNB", eth, "2500") == 0


def test_a_fill_paid_in_bnb_is_reported_with_no_fee_and_a_warning(caplog):
    (trade,) = RECORDED["spot_myTrades_LTCUSDT"]
    fill = venue_fill({**trade, "commissionAsset": "BNB"}, inst("LTCUSDT", size_precision=8), ids=(5, 6))
    assert fill.fee == 0 and "BNB" in caplog.text


def test_fills_that_do_not_add_up_to_the_executed_quantity_are_an_error():
    body = _load("spot_new_order_full_response.json")
    with pytest.raises(ResponseError, match="add up"):
        order_reports({**body, "executedQty": "9.00000000"}, inst("BTCUSDT", size_precision=5), ids=(7, 42))


def test_balances_spot_and_futures_at_account_precision():
    spot = {"balances": [{"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000001"},
                         {"asset": "LTC", "free": "0.00000000", "locked": "0.00000000"}]}
    assert account_balances(spot) == {"BTC": 472384689208130}
    futures = [{"accountAlias": "SgsR", "asset": "USDT", "balance": "122607.35137903", "crossWalletBalance": "1"}]
    assert account_balances(futures) == {"USDT": 12260735137903}
    assert account_balances({"assets": [{"asset": "USDT", "walletBalance": "23.72469206"}]}) == {"USDT": 2372469206}
    with pytest.raises(ResponseError):
        account_balances({"balances": [{"asset": "X", "free": "0.000000001", "locked": "0"}]})
