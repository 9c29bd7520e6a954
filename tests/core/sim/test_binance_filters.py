"""The simulated venue's filter check against the real captured exchangeInfo of BTCUSDT, spot and USDT-M:
a valid order passes, and each filter's boundary (exactly on, one tick or step off, below min, above max)
gives Binance's own error body."""
import copy
from decimal import Decimal as D

import orjson
import pytest

from ttquant.core.sim.binance_filters import SymbolFilters, check_new_order
from ttquant.core.sim.captures import read_cryptofeed_http, sample_data_dir


def _symbol_doc(market, symbol="BTCUSDT"):
    (msg,) = list(read_cryptofeed_http(sample_data_dir() / "binance" / f"cryptofeed_{market}_exchangeinfo.0"))
    return next(s for s in orjson.loads(msg.payload)["symbols"] if s["symbol"] == symbol)


@pytest.fixture(scope="module")
def spot_doc():
    return _symbol_doc("spot")


@pytest.fixture(scope="module")
def spot(spot_doc):
    return SymbolFilters.from_exchange_info(spot_doc, "spot")


@pytest.fixture(scope="module")
def usdm():
    return SymbolFilters.from_exchange_info(_symbol_doc("usdm"), "usdm")


def failure(name):
    return {"code": -1013, "msg": f"Filter failure: {name}"}


def test_the_captured_filters_are_read(spot, usdm):
    # the values the boundaries below are built on, as the capture has them
    assert spot.rule("PRICE_FILTER") == {"minPrice": D("0.01"), "maxPrice": D("1000000"), "tickSize": D("0.01")}
    assert spot.rule("LOT_SIZE") == {"minQty": D("0.00001"), "maxQty": D("9000"), "stepSize": D("0.00001")}
    assert spot.rule("MARKET_LOT_SIZE")["maxQty"] == D("100.05381873")
    assert spot.rule("MIN_NOTIONAL")["minNotional"] == 10 and spot.rule("MIN_NOTIONAL")["applyToMarket"] is True
    assert spot.rule("PERCENT_PRICE")["multiplierUp"] == 5 and spot.rule("MAX_NUM_ORDERS") == {"maxNumOrders": 200}
    assert spot.unchecked == ("ICEBERG_PARTS", "MAX_NUM_ALGO_ORDERS")
    assert usdm.rule("PRICE_FILTER")["minPrice"] == D("556.72") and usdm.rule("MIN_NOTIONAL") == {"minNotional": 5}
    assert usdm.rule("PERCENT_PRICE")["multiplierUp"] == D("1.15")
    assert usdm.rule("MAX_NUM_ORDERS") == {"maxNumOrders": 200}
    assert [k for k, _ in usdm.rules] == ["PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "MAX_NUM_ORDERS",
                                          "MIN_NOTIONAL", "PERCENT_PRICE"]


SPOT_CASES = [
    # (side, type, price, qty, reference, expected)
    ("BUY", "LIMIT", "61000.00", "0.00100", "61000", None),
    ("SELL", "LIMIT_MAKER", "61000.01", "0.00100", "61000", None),
    ("BUY", "MARKET", None, "0.00100", "61000", None),
    # PRICE_FILTER: on min and max pass (reference moved so PERCENT_PRICE allows them), past them / off tick fail
    ("BUY", "LIMIT", "0.01", "1000", "0.02", None),
    ("BUY", "LIMIT", "0.00", "1000", "0.02", failure("PRICE_FILTER")),
    ("BUY", "LIMIT", "1000000.00", "0.00001", "500000", None),
    ("BUY", "LIMIT", "1000000.01", "0.00001", "500000", failure("PRICE_FILTER")),
    ("BUY", "LIMIT", "61000.005", "0.001", "61000", failure("PRICE_FILTER")),
    # PERCENT_PRICE: 61000 * 5 = 305000 and 61000 * 0.2 = 12200 are inside, a tick beyond is not
    ("BUY", "LIMIT", "305000.00", "0.001", "61000", None),
    ("BUY", "LIMIT", "305000.01", "0.001", "61000", failure("PERCENT_PRICE")),
    ("SELL", "LIMIT", "12200.00", "0.001", "61000", None),
    ("SELL", "LIMIT", "12199.99", "0.001", "61000", failure("PERCENT_PRICE")),
    # LOT_SIZE: min and max pass, a step below min / off step / a step above max fail, market orders too
    ("BUY", "LIMIT", "1000000.00", "0.00001", "500000", None),
    ("BUY", "LIMIT", "61000.00", "0.000009", "61000", failure("LOT_SIZE")),
    ("BUY", "LIMIT", "61000.00", "0.000015", "61000", failure("LOT_SIZE")),
    ("BUY", "LIMIT", "61000.00", "9000", "61000", None),
    ("BUY", "LIMIT", "61000.00", "9000.00001", "61000", failure("LOT_SIZE")),
    ("BUY", "MARKET", None, "0.000015", "61000", failure("LOT_SIZE")),
    # MARKET_LOT_SIZE (max 100.05381873, step 0 = no step rule) binds market orders only
    ("BUY", "MARKET", None, "100.05381", "61000", None),
    ("BUY", "MARKET", None, "100.05382", "61000", failure("MARKET_LOT_SIZE")),
    ("BUY", "LIMIT", "61000.00", "100.05382", "61000", None),
    # MIN_NOTIONAL 10: exactly 10 passes; market orders priced at the average (applyToMarket)
    ("BUY", "LIMIT", "12500.00", "0.0008", "61000", None),
    ("BUY", "LIMIT", "12500.00", "0.00079", "61000", failure("MIN_NOTIONAL")),
    ("SELL", "MARKET", None, "0.00017", "61000", None),
    ("SELL", "MARKET", None, "0.00016", "61000", failure("MIN_NOTIONAL")),
    ("SELL", "MARKET", None, "0.00016", "62500", None),
    # spot TAKE_PROFIT executes at market, TAKE_PROFIT_LIMIT has a price
    ("SELL", "TAKE_PROFIT", None, "100.05382", "61000", failure("MARKET_LOT_SIZE")),
    ("SELL", "TAKE_PROFIT_LIMIT", "61000.001", "0.001", "61000", failure("PRICE_FILTER")),
]


@pytest.mark.parametrize("side, order_type, price, qty, reference, expected", SPOT_CASES)
def test_spot_btcusdt_boundaries(spot, side, order_type, price, qty, reference, expected):
    got = check_new_order(spot, side, order_type, None if price is None else D(price), D(qty), D(reference))
    assert got == expected


def test_spot_the_first_failing_filter_in_exchange_info_order_names_the_error(spot):
    # off tick, out of band, below min qty and notional: PRICE_FILTER comes first in BTCUSDT's list
    assert check_new_order(spot, "BUY", "LIMIT", D("1.001"), D("0.000001"), D("61000")) == failure("PRICE_FILTER")
    assert check_new_order(spot, "BUY", "LIMIT", D("1.00"), D("0.000001"), D("61000")) == failure("PERCENT_PRICE")
    assert check_new_order(spot, "BUY", "LIMIT", D("61000"), D("0.000001"), D("61000")) == failure("LOT_SIZE")


def test_spot_without_a_reference_price_skips_what_needs_one(spot):
    assert check_new_order(spot, "BUY", "LIMIT", D("999999.00"), D("0.001"), None) is None
    assert check_new_order(spot, "BUY", "MARKET", None, D("0.00001"), None) is None
    assert check_new_order(spot, "BUY", "LIMIT", D("1.00"), D("0.001"), None) == failure("MIN_NOTIONAL")


def test_spot_min_notional_spares_market_orders_without_apply_to_market(spot_doc):
    doc = copy.deepcopy(spot_doc)
    next(f for f in doc["filters"] if f["filterType"] == "MIN_NOTIONAL")["applyToMarket"] = False
    f = SymbolFilters.from_exchange_info(doc, "spot")
    assert check_new_order(f, "SELL", "MARKET", None, D("0.00016"), D("61000")) is None
    assert check_new_order(f, "SELL", "LIMIT", D("61000.00"), D("0.00016"), D("61000")) == failure("MIN_NOTIONAL")


def test_spot_max_num_orders(spot):
    args = (spot, "BUY", "LIMIT", D("61000.00"), D("0.001"), D("61000"))
    assert check_new_order(*args) is None
    assert check_new_order(*args, open_orders=199) is None
    assert check_new_order(*args, open_orders=200) == failure("MAX_NUM_ORDERS")


def test_spot_notional_and_percent_price_by_side(spot_doc):
    # newer symbols carry NOTIONAL and PERCENT_PRICE_BY_SIDE instead: the docs' own examples, on BTCUSDT
    doc = copy.deepcopy(spot_doc)
    doc["filters"] = [f for f in doc["filters"] if f["filterType"] not in ("PERCENT_PRICE", "MIN_NOTIONAL")] + [
        {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "1.2", "bidMultiplierDown": "0.2",
         "askMultiplierUp": "5", "askMultiplierDown": "0.8", "avgPriceMins": 1},
        {"filterType": "NOTIONAL", "minNotional": "10.00000000", "applyMinToMarket": False,
         "maxNotional": "10000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}]
    f = SymbolFilters.from_exchange_info(doc, "spot")
    ref = D("1000")

    def check(side, price, qty, order_type="LIMIT"):
        return check_new_order(f, side, order_type, None if price is None else D(price), D(qty), ref)

    assert check("BUY", "1200.00", "1") is None                      # bid up: 1000 * 1.2
    assert check("BUY", "1200.01", "1") == failure("PERCENT_PRICE_BY_SIDE")
    assert check("SELL", "1200.01", "1") is None                     # the ask band is wider upwards
    assert check("SELL", "800.00", "1") is None                      # ask down: 1000 * 0.8
    assert check("SELL", "799.99", "1") == failure("PERCENT_PRICE_BY_SIDE")
    assert check("BUY", "799.99", "1") is None
    assert check("BUY", "1000.00", "0.01") is None                   # notional exactly 10
    assert check("BUY", "1000.00", "0.00999") == failure("NOTIONAL")
    assert check("BUY", "1000.00", "10") is None                     # exactly 10000
    assert check("BUY", "1000.00", "10.00001") == failure("NOTIONAL")
    assert check("BUY", None, "50", "MARKET") is None                # neither bound applies to market orders
    doc["filters"][-1].update(applyMinToMarket=True, applyMaxToMarket=True)
    f = SymbolFilters.from_exchange_info(doc, "spot")
    assert check("BUY", None, "50", "MARKET") == failure("NOTIONAL")
    assert check("BUY", None, "0.00999", "MARKET") == failure("NOTIONAL")
    assert check("BUY", None, "5", "MARKET") is None


def err(code, msg):
    return {"code": code, "msg": msg}


NOTIONAL_5 = err(-4164, "Order's notional must be no smaller than 5 (unless you choose reduce only).")

USDM_CASES = [
    # (side, type, price, qty, mark, expected)
    ("BUY", "LIMIT", "61000.00", "0.001", "61000", None),
    ("SELL", "MARKET", None, "0.001", "61000", None),
    # PRICE_FILTER: min 556.72 passes (mark moved so the band allows it), a tick below is -4013
    ("BUY", "LIMIT", "556.72", "0.009", "600", None),
    ("BUY", "LIMIT", "556.71", "0.009", "600", err(-4013, "Price less than min price.")),
    ("BUY", "LIMIT", "0", "0.009", "600", err(-4001, "Price less than 0.")),
    ("BUY", "LIMIT", "1000000.00", "0.001", "900000", None),
    ("BUY", "LIMIT", "1000000.01", "0.001", "900000", err(-4002, "Price greater than max price.")),
    ("BUY", "LIMIT", "61000.001", "0.001", "61000", err(-4014, "Price not increased by tick size.")),
    # LOT_SIZE for priced orders, MARKET_LOT_SIZE for market ones (same values on BTCUSDT)
    ("BUY", "LIMIT", "61000.00", "0", "61000", err(-4003, "Quantity less than or equal to zero.")),
    ("BUY", "LIMIT", "61000.00", "0.0009", "61000", err(-4004, "Quantity less than min quantity.")),
    ("BUY", "LIMIT", "61000.00", "0.0015", "61000", err(-4023, "Qty not increased by step size.")),
    ("BUY", "LIMIT", "61000.00", "1000", "61000", None),
    ("BUY", "LIMIT", "61000.00", "1000.001", "61000", err(-4005, "Quantity greater than max quantity.")),
    ("BUY", "MARKET", None, "1000", "61000", None),
    ("BUY", "MARKET", None, "1000.001", "61000", err(-4005, "Quantity greater than max quantity.")),
    ("BUY", "MARKET", None, "0.0015", "61000", err(-4023, "Qty not increased by step size.")),
    # MIN_NOTIONAL 5: exactly 5 passes; a market order is valued at the mark price
    ("BUY", "LIMIT", "5000.00", "0.001", "5000", None),
    ("BUY", "LIMIT", "4999.99", "0.001", "5000", NOTIONAL_5),
    ("SELL", "MARKET", None, "0.001", "5000", None),
    ("SELL", "MARKET", None, "0.001", "4999.99", NOTIONAL_5),
    # PERCENT_PRICE against the mark: 61000 * 1.15 = 70150 and 61000 * 0.85 = 51850 exactly are inside
    ("BUY", "LIMIT", "70150.00", "0.001", "61000", None),
    ("BUY", "LIMIT", "70150.01", "0.001", "61000", err(-4016, "Limit price can't be higher than 70150.00")),
    ("SELL", "LIMIT", "51850.00", "0.001", "61000", None),
    ("SELL", "LIMIT", "51849.99", "0.001", "61000", err(-4024, "Limit price can't be lower than 51850.00")),
    # ... and quoted on the tick grid when the bound is not: 61234.56 * 1.15 = 70419.744, * 0.85 = 52049.376
    ("BUY", "LIMIT", "70419.74", "0.001", "61234.56", None),
    ("BUY", "LIMIT", "70419.75", "0.001", "61234.56", err(-4016, "Limit price can't be higher than 70419.74")),
    ("SELL", "LIMIT", "52049.38", "0.001", "61234.56", None),
    ("SELL", "LIMIT", "52049.37", "0.001", "61234.56", err(-4024, "Limit price can't be lower than 52049.38")),
    # futures TAKE_PROFIT has a price (spot's does not); STOP_MARKET is at market
    ("SELL", "TAKE_PROFIT", "61000.001", "0.001", "61000", err(-4014, "Price not increased by tick size.")),
    ("SELL", "STOP_MARKET", None, "1000.001", "61000", err(-4005, "Quantity greater than max quantity.")),
]


@pytest.mark.parametrize("side, order_type, price, qty, mark, expected", USDM_CASES)
def test_usdm_btcusdt_boundaries(usdm, side, order_type, price, qty, mark, expected):
    assert check_new_order(usdm, side, order_type, None if price is None else D(price), D(qty), D(mark)) == expected


def test_usdm_reduce_only_is_exempt_from_min_notional_and_max_orders_is_2025(usdm):
    assert check_new_order(usdm, "SELL", "LIMIT", D("4000.00"), D("0.001"), D("4000")) == NOTIONAL_5
    assert check_new_order(usdm, "SELL", "LIMIT", D("4000.00"), D("0.001"), D("4000"), reduce_only=True) is None
    args = (usdm, "BUY", "LIMIT", D("61000.00"), D("0.001"), D("61000"))
    assert check_new_order(*args, open_orders=199) is None
    assert check_new_order(*args, open_orders=200) == err(-2025, "Reach max open order limit.")


def test_bad_calls_are_refused(spot, usdm):
    with pytest.raises(ValueError, match="needs a price"):
        check_new_order(spot, "BUY", "LIMIT", None, D("1"), D("1"))
    with pytest.raises(ValueError, match="not one of spot's"):
        check_new_order(spot, "BUY", "STOP_MARKET", None, D("1"), D("1"))
    with pytest.raises(ValueError, match="not one of usdm's"):
        check_new_order(usdm, "BUY", "LIMIT_MAKER", D("1"), D("1"), D("1"))
    with pytest.raises(ValueError, match="BUY or SELL"):
        check_new_order(spot, "buy", "LIMIT", D("1"), D("1"), D("1"))
    with pytest.raises(ValueError, match="market"):
        SymbolFilters.from_exchange_info({"symbol": "X", "filters": []}, "coinm")


def test_the_grids_count_from_their_minimum(spot_doc):
    # with minPrice / minQty off the tick / step grid, the valid values are min + n * step (no captured symbol
    # has one; where min is on the grid this is Binance's documented price % tickSize == 0)
    doc = copy.deepcopy(spot_doc)
    doc["filters"] = [{"filterType": "PRICE_FILTER", "minPrice": "0.015", "maxPrice": "0", "tickSize": "0.01"},
                      {"filterType": "LOT_SIZE", "minQty": "0.5", "maxQty": "0", "stepSize": "1"}]
    f = SymbolFilters.from_exchange_info(doc, "spot")
    assert check_new_order(f, "BUY", "LIMIT", D("0.025"), D("2.5"), None) is None
    assert check_new_order(f, "BUY", "LIMIT", D("0.02"), D("2.5"), None) == failure("PRICE_FILTER")
    assert check_new_order(f, "BUY", "LIMIT", D("0.025"), D("2"), None) == failure("LOT_SIZE")
    assert check_new_order(f, "BUY", "LIMIT", D("123456789.015"), D("1e6") + D("0.5"), None) is None  # max 0: off
