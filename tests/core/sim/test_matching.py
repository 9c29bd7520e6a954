"""The simulated venue's fill model: takers walk the book at a slipped price and pay the taker
fee, IOC / FOK / market / post-only as Binance treats them, resting orders wait behind the
queue displayed at their price, requests take effect after the latency, and the venue refuses
a client order id it has seen."""
from decimal import Decimal

import pytest

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
from ttquant.core.records import Liquidity, Order, OrderAction, OrderType, RejectCode, Side
from ttquant.core.records import OrderStatus as S
from ttquant.core.sim.matching import FillModel, SimAccount, SimMatcher

MS = 1_000_000


@pytest.fixture
def table():
    t = InstrumentTable("sim")
    t.add(Instrument(1, "sim", "BTCUSDT", MarketType.SPOT, "BTC", "USDT", price_precision=2, size_precision=3,
                     tick_size=1, step_size=1, min_qty=1, max_qty=0, min_price=1, max_price=0, min_notional=0))
    return t


def px(text):
    return int(Decimal(text) * 100)


def qty(text):
    return int(Decimal(text) * 1000)


def matcher(table, **model):
    m = SimMatcher(table, FillModel(**{"latency_ns": MS, "maker_fee_ppm": 200, "taker_fee_ppm": 500, **model}))
    m.on_book(1, [(px("100.00"), qty("1")), (px("99.99"), qty("2"))],
              [(px("100.01"), qty("0.5")), (px("100.02"), qty("1")), (px("100.05"), qty("3"))], 0)
    return m


def send(m, cid, side, price, q, order_type=OrderType.LIMIT, action=OrderAction.NEW, at=0, target=0):
    m.submit(Order(client_order_id=cid, strategy_id=1, instrument_id=1, action=action, side=side,
                   order_type=order_type, price=price, qty=q, target_order_id=target), at)


def test_a_request_takes_effect_after_the_latency(table):
    m = matcher(table, latency_ns=5 * MS)
    send(m, 1, Side.BUY, px("99.00"), qty("1"))
    assert m.advance(4 * MS) == []
    (ack,) = m.advance(5 * MS)
    assert ack.status == S.ACCEPTED and ack.venue_order_id == 1



def test_the_latency_jitter_never_reorders_requests(table):
    m = matcher(table, latency_ns=MS, latency_jitter_ns=50 * MS, seed=7)
    for k in range(200):                      # each new order followed 1 us later by a cancel of it
        send(m, 2 * k + 1, Side.BUY, px("99.00"), qty("0.001"), at=k * 10_000)
        send(m, 2 * k + 2, Side.BUY, 0, 0, action=OrderAction.CANCEL, target=2 * k + 1, at=k * 10_000 + 1_000)
    reports = m.advance(10**12)
    assert [r.status for r in reports if r.client_order_id % 2] == [S.ACCEPTED, S.CANCELED] * 200
    assert m.counts["unknown_cancels"] == 0 and not m.resting

def test_a_taker_walks_the_book_at_a_slipped_price_and_pays_the_taker_fee(table):
    m = matcher(table, slippage_ppm=99)
    send(m, 1, Side.BUY, px("100.02"), qty("1.2"))
    fills = m.advance(MS)
    assert [(f.last_price, f.last_qty, f.liquidity) for f in fills] == [
        (px("100.02"), qty("0.5"), Liquidity.TAKER), (px("100.03"), qty("0.7"), Liquidity.TAKER)]
    # 100.01 + 99 ppm = 100.0199 -> up to the tick, always against the taker; fee 0.05 %, rounded up
    assert fills[-1].status == S.FILLED and fills[0].status == S.PARTIALLY_FILLED
    notional = Decimal("100.02") * Decimal("0.5")
    assert fills[0].fee == int((notional * Decimal("0.0005") * 10**8).to_integral_value(rounding="ROUND_CEILING"))
    assert len({f.trade_id for f in fills}) == 2
    # the level it took is used until the book moves: a second taker gets what is left
    send(m, 2, Side.BUY, px("100.02"), qty("0.5"), OrderType.IOC, at=MS)
    reports = m.advance(2 * MS)
    assert [(r.status, r.last_qty) for r in reports] == [(S.PARTIALLY_FILLED, qty("0.3")), (S.EXPIRED, 0)]


def test_ioc_fok_market_and_post_only(table):
    m = matcher(table)
    send(m, 1, Side.BUY, px("100.01"), qty("2"), OrderType.FOK)          # only 0.5 at <= 100.01
    assert [r.status for r in m.advance(MS)] == [S.EXPIRED]
    send(m, 2, Side.SELL, 0, qty("2.5"), OrderType.MARKET, at=MS)
    reports = m.advance(2 * MS)
    assert [(r.status, r.last_price, r.last_qty) for r in reports] == [
        (S.PARTIALLY_FILLED, px("100.00"), qty("1")), (S.FILLED, px("99.99"), qty("1.5"))]
    send(m, 3, Side.BUY, px("100.05"), qty("1"), OrderType.POST_ONLY, at=2 * MS)
    (r,) = m.advance(3 * MS)
    assert r.status == S.REJECTED and r.reject_code == RejectCode.VENUE
    send(m, 4, Side.BUY, px("99.50"), qty("1"), OrderType.POST_ONLY, at=3 * MS)
    assert [r.status for r in m.advance(4 * MS)] == [S.ACCEPTED]


def test_a_resting_order_waits_behind_the_displayed_queue(table):
    m = matcher(table)
    send(m, 1, Side.BUY, px("100.00"), qty("0.5"))                        # 1.0 displayed ahead of it
    assert [r.status for r in m.advance(MS)] == [S.ACCEPTED]
    m.on_trade(1, px("100.00"), qty("0.8"), False, 2 * MS)                # seller hits 0.8: queue 0.2 left
    assert m.advance(2 * MS) == []
    m.on_trade(1, px("100.00"), qty("0.4"), False, 3 * MS)                # 0.2 queue, then 0.2 to us
    (r,) = m.advance(3 * MS)
    assert (r.status, r.last_qty, r.liquidity) == (S.PARTIALLY_FILLED, qty("0.2"), Liquidity.MAKER)
    m.on_trade(1, px("99.98"), qty("0.01"), False, 4 * MS)                # through our price: the rest
    (r,) = m.advance(4 * MS)
    assert (r.status, r.last_qty, r.last_price) == (S.FILLED, qty("0.3"), px("100.00"))
    assert m.position(1, 1) == qty("0.5")


def test_the_other_side_moving_across_fills_a_resting_order(table):
    m = matcher(table, queue_position=False)
    send(m, 1, Side.SELL, px("100.03"), qty("1"))
    m.advance(MS)
    m.on_quote(1, px("100.03"), qty("2"), px("100.04"), qty("1"), 2 * MS)
    (r,) = m.advance(2 * MS)
    assert r.status == S.FILLED and r.last_price == px("100.03") and r.liquidity == Liquidity.MAKER


def test_cancel_amend_and_a_duplicate_client_order_id(table):
    m = matcher(table)
    send(m, 1, Side.BUY, px("99.00"), qty("1"))
    m.advance(MS)
    send(m, 2, Side.BUY, px("98.00"), qty("2"), action=OrderAction.AMEND, target=1, at=MS)
    (r,) = m.advance(2 * MS)
    assert (r.status, r.price, r.qty) == (S.ACCEPTED, px("98.00"), qty("2"))
    send(m, 3, Side.BUY, 0, 0, action=OrderAction.CANCEL, target=1, at=2 * MS)
    (r,) = m.advance(3 * MS)
    assert r.status == S.CANCELED and r.client_order_id == 1
    send(m, 4, Side.BUY, 0, 0, action=OrderAction.CANCEL, target=1, at=3 * MS)   # gone already
    assert m.advance(4 * MS) == [] and m.counts["unknown_cancels"] == 1
    send(m, 1, Side.BUY, px("99.00"), qty("1"), at=4 * MS)                         # id 1 again
    (r,) = m.advance(5 * MS)
    assert r.status == S.REJECTED and r.reject_code == RejectCode.DUPLICATE_ORDER_ID
    assert m.counts["duplicates"] == 1 and len(m.ledger) == 5


def test_the_account_moves_with_every_fill(table):
    table.add(Instrument(2, "sim", "BTCUSDT", MarketType.LINEAR_PERPETUAL, "BTC", "USDT", price_precision=2,
                         size_precision=3, tick_size=1, step_size=1, min_qty=1, max_qty=0, min_price=1, max_price=0,
                         min_notional=0))
    usdt = lambda text: int(Decimal(text).scaleb(8))            # noqa: E731  (account precision)
    acct = SimAccount({"USDT": usdt("1000")})
    m = SimMatcher(table, FillModel(latency_ns=MS, maker_fee_ppm=200, taker_fee_ppm=500), acct)
    m.on_book(1, [(px("100.00"), qty("1"))], [(px("100.01"), qty("1"))], 0)
    send(m, 1, Side.BUY, px("100.01"), qty("0.5"), order_type=OrderType.IOC)
    m.advance(MS)
    # spot: 0.5 BTC in; 50.005 USDT out, and the 0.05 % taker fee (0.0250025, rounded up at 8 decimals)
    assert acct.balances == {"BTC": usdt("0.5"), "USDT": usdt("1000") - usdt("50.005") - usdt("0.02500250")}
    # a perpetual: only the quote moves, by the PnL realised at the average entry, less the fees
    spot_after = dict(acct.balances)
    perp = table[2]
    fills = [(Side.BUY, "100.00", "1"), (Side.BUY, "102.00", "1"),   # long 2 at an average of 101
             (Side.SELL, "111.00", "3"),                             # +10 on each of 2, then short 1 at 111
             (Side.BUY, "105.00", "1")]                              # +6: flat
    fees = 0
    for side, price, q in fills:
        notional = usdt(price) * int(q)
        fee = notional * 500 // 1_000_000
        fees += fee
        acct.on_fill(perp, side, px(price), qty(q), notional, fee)
    assert acct.balances["USDT"] == spot_after["USDT"] + usdt("26") - fees
    assert acct.balances["BTC"] == spot_after["BTC"] and acct._perp[2] == [0, 0]
