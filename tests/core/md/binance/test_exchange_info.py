"""exchangeInfo -> instruments: the captured spot and USDT-M documents, precision, stable ids."""
import orjson
import pytest

from ttquant.core.instruments import InstrumentTable, MarketType
from ttquant.core.md.binance.exchange_info import (
    SPOT,
    USDM,
    ExchangeInfoError,
    instruments_from_exchange_info,
    merge_instruments,
)
from ttquant.core.sim.captures import read_cryptofeed_http, sample_data_dir

DATA = sample_data_dir() / "binance"


def captured(name):
    (msg,) = list(read_cryptofeed_http(DATA / name))
    return orjson.loads(msg.payload)


def test_spot_document_btcusdt():
    insts, skipped = instruments_from_exchange_info(captured("cryptofeed_spot_exchangeinfo.0"), SPOT)
    # data/ keeps the symbols the tests, demo and benchmarks use (data/NOTICE), all of them usable
    assert sorted(i.symbol for i in insts) == ["BLZETH", "BTCUSDT", "LRCBTC", "NKNUSDT", "RUNEEUR"]
    assert not skipped and all(i.market_type == MarketType.SPOT for i in insts)
    btc = {i.symbol: i for i in insts}["BTCUSDT"]
    assert (btc.base, btc.quote, btc.price_precision, btc.size_precision) == ("BTC", "USDT", 8, 8)
    assert btc.tick_size == 1_000_000 and btc.step_size == 1_000         # 0.01 and 0.00001
    assert btc.min_qty == 1_000 and btc.max_qty == 900_000_000_000       # 0.00001 .. 9000
    assert btc.price_to_raw("61837.63") % btc.tick_size == 0


def test_futures_document_keeps_perpetuals_with_declared_precision():
    insts, skipped = instruments_from_exchange_info(captured("cryptofeed_usdm_exchangeinfo.0"), USDM)
    by = {i.symbol: i for i in insts}
    btc = by["BTCUSDT"]
    assert btc.market_type == MarketType.LINEAR_PERPETUAL
    assert (btc.price_precision, btc.size_precision, btc.tick_size, btc.step_size) == (2, 3, 1, 1)
    assert by["SUSHIUSDT"].price_precision == 4 and by["SUSHIUSDT"].tick_size == 10     # "0.0010"
    assert btc.min_notional > 0
    assert sorted(by) == ["AKROUSDT", "BTCUSDT", "CTKUSDT", "KEEPUSDT", "SUSHIUSDT"]
    assert skipped == {"BTCUSDT_210924": "contract type CURRENT_QUARTER"}      # a quarterly is left out


def test_symbols_filter_and_bad_documents():
    insts, _ = instruments_from_exchange_info(captured("cryptofeed_spot_exchangeinfo.0"), SPOT,
                                              symbols=["btcusdt", "NKNUSDT"])
    assert sorted(i.symbol for i in insts) == ["BTCUSDT", "NKNUSDT"]
    with pytest.raises(ExchangeInfoError, match="symbols"):
        instruments_from_exchange_info({"code": -1}, SPOT)
    with pytest.raises(ExchangeInfoError, match="no usable symbol"):
        instruments_from_exchange_info({"symbols": [{"symbol": "X", "filters": []}]}, SPOT)
    insts, skipped = instruments_from_exchange_info(
        {"symbols": [{"symbol": "BAD", "filters": []},
                     {"symbol": "OK", "baseAsset": "O", "quoteAsset": "K", "baseAssetPrecision": 2,
                      "quoteAssetPrecision": 2,
                      "filters": [
                          {"filterType": "PRICE_FILTER", "tickSize": "0.01", "minPrice": "0.01", "maxPrice": "0"},
                          {"filterType": "LOT_SIZE", "stepSize": "1", "minQty": "1", "maxQty": "10"}]}]}, SPOT)
    assert [i.symbol for i in insts] == ["OK"] and "KeyError" in skipped["BAD"]


def test_merge_keeps_ids_stable_and_separates_markets():
    spot, _ = instruments_from_exchange_info(captured("cryptofeed_spot_exchangeinfo.0"), SPOT, symbols=["BTCUSDT"])
    fut, _ = instruments_from_exchange_info(captured("cryptofeed_usdm_exchangeinfo.0"), USDM,
                                            symbols=["BTCUSDT", "SUSHIUSDT"])
    table = InstrumentTable("binance")
    first = merge_instruments(table, spot + fut)
    assert [i.instrument_id for i in first] == [1, 2, 3]
    again = merge_instruments(InstrumentTable("binance", table), list(reversed(spot + fut)))
    assert sorted(i.instrument_id for i in again) == [1, 2, 3]
    assert {(i.symbol, i.market_type): i.instrument_id for i in again} == \
        {(i.symbol, i.market_type): i.instrument_id for i in first}
