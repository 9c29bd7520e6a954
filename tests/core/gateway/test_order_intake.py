"""The gateway's intake (order_intake.pyx) over real order rings: one order per ring per round
(no strategy starves another), each ring bound to one strategy, client ids claimed once, new
orders risk-checked and reserved in C against reference prices read from the tick ring, the
idle rehearsal of the last order's checks changing nothing, and the latency trace."""
import time

import orjson
import pytest

from ttquant.core.gateway.order_intake import ClientIds, OrderIntake
from ttquant.core.gateway.risk import RiskEngine
from ttquant.core.gateway.risk_config import parse_risk_limits
from ttquant.core.instruments import InstrumentTable, MarketType
from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info, merge_instruments
from ttquant.core.records import (
    EventFlag,
    EventKind,
    MarketEvent,
    OrderAction,
    OrderType,
    RecordType,
    RejectCode,
    Side,
    new_order,
)
from ttquant.core.rings import BroadcastReader, BroadcastWriter, SpscReader, SpscWriter
from ttquant.core.sim.captures import read_cryptofeed_http, sample_data_dir

LIMITS = {"max_order_age_ms": 500, "fat_finger_pct": 5.0, "max_notional": 200_000,
          "rate_limit": {"orders_per_s": 1000, "burst": 1000, "strategy_orders_per_s": 1000, "strategy_burst": 1000},
          "balances": {"USDT": 100_000, "BTC": 1}}


@pytest.fixture(scope="module")
def table():
    (msg,) = read_cryptofeed_http(sample_data_dir() / "binance" / "cryptofeed_spot_exchangeinfo.0")
    t = InstrumentTable("binance")
    merge_instruments(t, instruments_from_exchange_info(orjson.loads(msg.payload), "spot", symbols=["BTCUSDT"])[0])
    return t


def spot_of(table):
    return table.by_symbol("BTCUSDT", MarketType.SPOT)


def limits(table, **changes):
    return parse_risk_limits({**LIMITS, **changes}, table)


def buy(inst, sid, cid, price="60000", qty="0.01", action=OrderAction.NEW, target=0):
    return new_order(time.time_ns(), cid, sid, inst.instrument_id, action, Side.BUY, OrderType.LIMIT,
                     inst.price_to_raw(price), inst.qty_to_raw(qty), 0, target)


@pytest.fixture
def rings(ring):
    made = []

    def make(owner):
        name = ring("orders", owner)
        w = SpscWriter(name, RecordType.ORDER, 64)
        r = SpscReader(name, RecordType.ORDER)
        made.extend((w, r))
        return w, r
    yield make
    for x in made:
        x.close()


def test_client_ids_are_claimed_once_per_strategy():
    ids = ClientIds()
    assert ids.claim(7, 10) == 0
    assert ids.claim(7, 10) == RejectCode.DUPLICATE_ORDER_ID
    assert ids.claim(7, 9) == RejectCode.DUPLICATE_ORDER_ID          # below the last: never sent
    assert ids.claim(8, 10) == 0                                      # another strategy's ids are its own
    ids.note(7, 50)                                                   # from the journal
    assert ids.claim(7, 49) == RejectCode.DUPLICATE_ORDER_ID and ids.claim(7, 51) == 0
    assert ids.duplicates == 3 and ids.last(7) == 51 and ids.last(99) == 0
    for sid in range(1000, 1254):                                     # 256 strategies are kept
        assert ids.claim(sid, 1) == 0
    assert ids.claim(5000, 1) == RejectCode.BAD_FIELD                 # past that: refused, not forgotten


def test_rings_take_turns_and_each_order_is_checked_in_c(table, rings):
    spot = spot_of(table)
    risk = RiskEngine(limits(table), table)
    risk.on_trade(spot.instrument_id, spot.price_to_raw("60000"))
    intake = OrderIntake(risk, ClientIds())
    (wa, ra), (wb, rb) = rings("a"), rings("b")
    assert intake.add_ring(ra) == 0 and intake.add_ring(rb, 4) == 1
    for cid in (1, 2, 3):
        wa.push(buy(spot, 3, cid))
    wb.push(buy(spot, 4, 1))
    got = [intake.next_order(1) for _ in range(4)]
    assert [(i, o.strategy_id, o.client_order_id, code) for i, o, code in got] == \
        [(0, 3, 1, 0), (1, 4, 1, 0), (0, 3, 2, 0), (0, 3, 3, 0)]
    assert intake.next_order(50) is None
    assert intake.strategy_of(0) == 3 and intake.strategy_of(1) == 4      # bound by the first order / config
    state = risk.state()
    assert state["open_orders"] == 4 and state["instruments"][spot.instrument_id]["open_buy"] == \
        4 * spot.qty_to_raw("0.01")                                        # reserved as they passed
    assert state["reserved"]["USDT"] > 0


def test_a_ring_refuses_another_strategys_orders_and_a_duplicate_id(table, rings):
    spot = spot_of(table)
    risk = RiskEngine(limits(table), table)
    risk.on_trade(spot.instrument_id, spot.price_to_raw("60000"))
    intake = OrderIntake(risk, ClientIds())
    w, r = rings("x")
    intake.add_ring(r, 5)
    w.push(buy(spot, 6, 1))                 # not the ring's strategy
    w.push(buy(spot, 5, 7))
    w.push(buy(spot, 5, 7))                 # sent twice
    w.push(buy(spot, 5, 8, action=OrderAction.CANCEL, target=7))
    codes = [intake.next_order(1)[2] for _ in range(4)]
    assert codes == [RejectCode.BAD_FIELD, 0, RejectCode.DUPLICATE_ORDER_ID, 0]
    assert intake.wrong_strategy == 1 and intake.orders == 4
    assert risk.state()["open_orders"] == 1                 # only the one new order that passed


def test_reference_prices_come_from_the_tick_ring(table, rings, ring):
    spot = spot_of(table)
    name = ring("ticks")
    ticks = BroadcastWriter(name, RecordType.MARKET_EVENT, 64)
    reader = BroadcastReader(name, start="latest")
    try:
        risk = RiskEngine(limits(table), table)          # fat finger band 5 %, no reference yet
        intake = OrderIntake(risk, ClientIds(), reader)
        w, r = rings("s")
        intake.add_ring(r)
        ticks.push(MarketEvent(kind=EventKind.TRADE, instrument_id=spot.instrument_id, venue_id=1, seq=1,
                               price=spot.price_to_raw("50000"), qty=spot.qty_to_raw("0.01"),
                               flags=EventFlag.LAST_IN_BATCH))
        assert intake.next_order(2) is None               # nothing to take; the trade is read
        w.push(buy(spot, 3, 1, price="60000"))            # 20 % above the last trade
        w.push(buy(spot, 3, 2, price="50100"))
        assert intake.next_order(1)[2] == RejectCode.FAT_FINGER
        assert intake.next_order(1)[2] == 0
    finally:
        reader.close()
        ticks.close()


def test_the_idle_rehearsal_changes_nothing(table, rings):
    spot = spot_of(table)
    rate = {"orders_per_s": 0.001, "burst": 2, "strategy_orders_per_s": 0, "strategy_burst": 0}
    risk = RiskEngine(limits(table, rate_limit=rate), table)      # two orders, then none for ~17 min
    risk.on_trade(spot.instrument_id, spot.price_to_raw("60000"))
    intake = OrderIntake(risk, ClientIds())
    w, r = rings("s")
    intake.add_ring(r)
    w.push(buy(spot, 3, 1))
    assert intake.next_order(1)[2] == 0
    before = risk.state()
    for _ in range(20):
        assert intake.next_order(1000) is None            # rehearses the last order's checks, dry
        assert risk.check_order(buy(spot, 3, 99), dry=True) == 0
    assert risk.state() == before                          # no token spent, nothing reserved, not counted
    w.push(buy(spot, 3, 2))
    w.push(buy(spot, 3, 3))
    assert intake.next_order(1)[2] == 0                     # the second token is still there
    assert intake.next_order(1)[2] == RejectCode.RATE_LIMIT


def test_the_trace_has_a_row_per_new_order(table, rings):
    spot = spot_of(table)
    risk = RiskEngine(limits(table), table)
    risk.on_trade(spot.instrument_id, spot.price_to_raw("60000"))
    intake = OrderIntake(risk, ClientIds())
    w, r = rings("s")
    intake.add_ring(r)
    assert intake.trace is None
    intake.start_trace(3)
    for cid in range(1, 6):
        w.push(buy(spot, 3, cid))
        intake.next_order(1)
    trace = intake.trace
    assert trace.shape == (3, 5)                          # capped at its capacity
    assert list(trace[:, 1]) == [1, 2, 3] and set(trace[:, 0]) == {3}
    assert all(created <= taken <= checked for _, _, created, taken, checked in trace)
