"""Order entry (strategies/order_entry.pyx): floats to the instrument's grid (buys down, sells up,
quantities down, binary noise snapped), refusals named before anything is sent or entered, the
generic path through a context and the live path into the SPSC order ring (own client ids and
clock, trace rows, a full ring refused and counted), beyond the 32 instruments kept in C too."""
import math
import time
from decimal import Decimal

import pytest

from ttquant.core.instruments import Instrument, MarketType
from ttquant.core.records import Order, OrderAction, OrderStatus, OrderType, RecordType, Side
from ttquant.core.rings import SpscReader, SpscWriter
from ttquant.strategies.base import BaseStrategy
from ttquant.strategies.order_entry import (
    OpenOrder,
    OrderEntry,
    OrderRefused,
    RingOrderEntry,
    price_to_raw,
    qty_to_raw,
    to_units,
)

BUY, SELL = Side.BUY, Side.SELL


def _inst(iid=1, pp=2, sp=5, tick=1, step=1, venue="binance", symbol="BTCUSDT"):
    return Instrument(iid, venue, symbol, MarketType.SPOT, "BTC", "USDT", pp, sp, tick, step, step, 0, tick, 0, 0)


class FakeCtx:
    """What OrderEntry needs of a context: a clock, client ids and send(instrument, order)."""
    strategy_id = 9

    def __init__(self):
        self.sent, self.last_id, self.clock, self.refuse = [], 100, 5_000, None

    def now_ns(self):
        self.clock += 1
        return self.clock

    def next_client_order_id(self):
        self.last_id += 1
        return self.last_id

    def send(self, instrument, order):
        if self.refuse:
            raise OrderRefused(self.refuse)     # an OrderRefused is a RuntimeError
        self.sent.append((instrument, order))


def test_prices_round_away_from_aggression_and_quantities_down():
    inst = _inst(pp=2, sp=5, tick=5, step=10)      # tick 0.05, step 0.0001
    assert price_to_raw(inst, 100.07, True) == 10005 and price_to_raw(inst, 100.07, False) == 10010
    assert price_to_raw(inst, 100.05, True) == price_to_raw(inst, 100.05, False) == 10005
    assert qty_to_raw(inst, 0.12349) == 12340 and qty_to_raw(inst, 0.00019) == 10
    assert BaseStrategy.price_to_raw(inst, 100.01, Side.SELL) == 10005
    assert BaseStrategy.price_to_raw(inst, 100.09, Side.BUY) == 10005


def test_binary_noise_is_snapped_to_the_grid_both_ways():
    inst = _inst(pp=2, sp=8)
    assert price_to_raw(inst, 60390.0, True) == price_to_raw(inst, 60390.0, False) == 6039000
    assert price_to_raw(_inst(pp=0), 60390.0, True) == 60390
    noisy = 0.1 + 0.2                                   # 0.30000000000000004
    assert price_to_raw(inst, noisy, False) == 30 and price_to_raw(inst, 0.3, True) == 30
    assert qty_to_raw(inst, 1.1 * 3) == 330000000        # 3.3000000000000003
    assert qty_to_raw(inst, 0.7 - 0.4) == 30000000       # 0.29999999999999993, not 0.29999999
    assert price_to_raw(inst, 603.90, True) == 60390 and price_to_raw(inst, 100.015, False) == 10002


@pytest.mark.parametrize("unit", [1, 7, 9])
def test_to_units_is_exact_past_a_doubles_integers(unit):
    x, precision = 987654321.987, 8                 # 9.9e16 raw: past 2**53, the Decimal way
    n = int(Decimal(repr(x)).scaleb(precision))
    assert n / unit > 9e15 and (unit == 1 or n % unit)     # off the grid: the direction shows
    assert to_units(x, precision, unit, True) == n // unit * unit
    assert to_units(x, precision, unit, False) == -(-n // unit) * unit
    assert to_units(0.0, 2, 1, True) == -1 and to_units(-1.0, 2, 1, False) == -1
    assert to_units(math.nan, 2, 1, True) == -1 and to_units(math.inf, 2, 1, True) == -1


def test_rounding_keeps_its_direction_with_many_units():
    pepe = _inst(pp=8, sp=0, symbol="PEPEUSDT")
    assert qty_to_raw(pepe, 1_000_000_000.6) == 1_000_000_000            # gives 1000000001: more than asked
    assert price_to_raw(pepe, 60390.123456789, True) == 6039012345678    # gives ...679: above the buy
    assert to_units(123456789.123, 8, 7, False) >= 12345678912300000     # gives ...299999: below the sell


def test_a_limit_order_through_the_context_carries_everything():
    ctx, orders, inst = FakeCtx(), {}, _inst(pp=2, sp=5)
    entry = OrderEntry(ctx)
    assert entry.strategy_id == 9
    cid = entry.place(orders, inst, BUY, 0.0015, 60390.129, OrderType.POST_ONLY, True)
    assert cid == 101
    (sent_inst, o), = ctx.sent
    assert sent_inst is inst and isinstance(o, Order)
    assert (o.client_order_id, o.ts_created, o.strategy_id, o.instrument_id) == (101, 5_001, 9, 1)
    assert (o.action, o.side, o.order_type, o.price, o.qty, o.reduce_only) == (
        OrderAction.NEW, BUY, OrderType.POST_ONLY, 6039012, 150, 1)
    oo = orders[cid]
    assert isinstance(oo, OpenOrder) and oo.instrument is inst
    assert (oo.client_order_id, oo.side, oo.order_type, oo.price_raw, oo.qty_raw, oo.cum_qty_raw) == (
        101, BUY, OrderType.POST_ONLY, 6039012, 150, 0)
    assert oo.status == OrderStatus.NEW and oo.cancel_sent is False and oo.leaves_raw == 150
    assert oo.price == pytest.approx(60390.12) and oo.qty == pytest.approx(0.0015)
    entry.place(orders, inst, SELL, 1, 60390.121)
    assert ctx.sent[-1][1].reduce_only == 0 and ctx.sent[-1][1].price == 6039013
    assert ctx.sent[-1][1].order_type == OrderType.LIMIT and list(orders) == [101, 102]


def test_market_orders_have_price_zero():
    ctx, orders, inst = FakeCtx(), {}, _inst()
    entry = OrderEntry(ctx)
    entry.place(orders, inst, SELL, 2.0)
    entry.place(orders, inst, BUY, 2.0, 60000.0, OrderType.MARKET)      # a price given is dropped
    for _, o in ctx.sent:
        assert o.order_type == OrderType.MARKET and o.price == 0 and o.qty == 200000
    assert [oo.price_raw for oo in orders.values()] == [0, 0]


ALL_TYPES = r"\['LIMIT', 'MARKET', 'IOC', 'FOK', 'POST_ONLY'\]"
REFUSALS = [
    ({"side": 0}, r"side 0 is neither BUY \(1\) nor SELL \(2\)"), ({"side": 3}, r"side 3 is neither"),
    ({"side": "BUY"}, r"side 'BUY' is neither"), ({"price": 0.0}, r"BTCUSDT: price 0.0 is not a positive number"),
    ({"price": -5}, r"price -5 is not a positive"), ({"price": math.nan}, r"price nan is not a positive"),
    ({"price": math.inf}, r"price inf is not a positive"), ({"price": "cheap"}, r"price 'cheap' is not a pos"),
    ({"price": None, "order_type": OrderType.LIMIT}, r"price None is not a positive number"),
    ({"qty": 0}, r"BTCUSDT: quantity 0 is not a positive number"), ({"qty": -1.0}, r"quantity -1.0 is not a"),
    ({"qty": math.nan}, r"quantity nan is not a positive"), ({"qty": None}, r"quantity None is not a positive"),
    ({"qty": 0.000009}, r"BTCUSDT: quantity 9e-06 rounds to zero at step 0.00001"),
] + [({"order_type": t}, rf"order type {t} is not one of {ALL_TYPES}") for t in (0, 6, 2.5)] + [
    ({"side": 1.0}, r"side 1.0 is neither BUY \(1\) nor SELL \(2\)"),
    ({"qty": 1e30}, r"BTCUSDT: quantity 1e\+30 is too large to send"),
    ({"price": 1e300}, r"BTCUSDT: price 1e\+300 is too large to send"),
]


@pytest.mark.parametrize("change,message", REFUSALS)
def test_refusals_name_the_problem_and_leave_nothing_behind(change, message):
    ctx, inst = FakeCtx(), _inst()
    strategy = BaseStrategy(ctx)
    args = {"side": BUY, "qty": 0.01, "price": 100.0, "order_type": None}
    args.update(change)
    with pytest.raises(OrderRefused, match=message):
        strategy.place_order(inst, args["side"], args["qty"], args["price"], args["order_type"])
    assert strategy.orders == {} and ctx.sent == [] and ctx.last_id == 100


def test_a_send_that_fails_enters_no_open_order():
    ctx = FakeCtx()
    strategy = BaseStrategy(ctx)
    ctx.refuse = "gateway gone"
    with pytest.raises(RuntimeError, match="gateway gone"):
        strategy.buy(_inst(), 0.01, 100.0)
    assert strategy.orders == {}
    ctx.refuse = None
    cid = strategy.sell(_inst(), 0.01, 100.0)
    assert list(strategy.orders) == [cid] and strategy.orders[cid].side == SELL


def test_a_python_override_of_place_order_is_honoured_by_buy_and_sell():
    class Halving(BaseStrategy):
        def place_order(self, instrument, side, qty, price=None, order_type=None, reduce_only=False):
            self.calls.append((side, qty, price, order_type, reduce_only))
            return super().place_order(instrument, side, qty / 2, price, order_type, reduce_only)

    ctx, inst = FakeCtx(), _inst()
    s = Halving(ctx)
    s.calls = []
    a = s.buy(inst, 0.02, 100.0)
    b = s.sell(inst, 0.04, reduce_only=True)
    assert s.calls == [(BUY, 0.02, 100.0, None, False), (SELL, 0.04, None, None, True)]
    assert [(o.side, o.qty, o.reduce_only) for _, o in ctx.sent] == [(BUY, 1000, 0), (SELL, 2000, 1)]
    assert list(s.orders) == [a, b]


def _many(n=40):
    """n instruments, each with its own tick, step and precisions; a price one raw unit above a
    tick and a quantity one raw unit above a step, so every rounding shows."""
    out = []
    for k in range(n):
        pp, sp, tick, step = 1 + k % 8, 1 + k % 6, 2 + k, 3 + k
        p_raw, q_raw = tick * (1000 + 37 * k) + 1, step * (10 + k) + 1
        price, qty = float(Decimal(p_raw).scaleb(-pp)), float(Decimal(q_raw).scaleb(-sp))
        out.append((_inst(100 + k, pp, sp, tick, step, symbol=f"C{k}USDT"), price, qty, p_raw - 1, q_raw - 1))
    return out


def _check_many(place, sent):
    many = _many()
    for inst, price, qty, buy_raw, qty_raw in many + many[::-1] + many:
        tick = inst.tick_size
        for side, want in ((BUY, buy_raw), (SELL, buy_raw + tick)):
            place(inst, side, qty, price)
            o = sent()
            assert (o.instrument_id, o.side, o.price, o.qty) == (inst.instrument_id, side, want, qty_raw), inst


def test_forty_instruments_each_round_on_their_own_grid(ring):
    ctx = FakeCtx()                         # past the 32 specs kept in C, through the context ...
    s = BaseStrategy(ctx)
    _check_many(s.place_order, lambda: ctx.sent[-1][1])
    assert {i.instrument_id for i, _ in ctx.sent} == set(range(100, 140))
    assert all(i.instrument_id == o.instrument_id for i, o in ctx.sent)
    name = ring("orders", "many")           # ... and into the ring
    with SpscWriter(name, RecordType.ORDER, 8) as w, SpscReader(name) as r:
        entry = RingOrderEntry(None, "many", 4)
        entry.add_venue("binance", w)
        orders = {}
        _check_many(lambda *a: entry.place(orders, *a), r.poll)
        assert len(orders) == 40 * 3 * 2 and list(orders) == sorted(orders) and r.poll() is None


@pytest.fixture
def live(ring):
    """A RingOrderEntry with one venue's order ring (capacity 4) and its reader."""
    name = ring("orders", "oe")
    with SpscWriter(name, RecordType.ORDER, 4) as w, SpscReader(name) as r:
        entry = RingOrderEntry(None, "oe", 21)
        entry.add_venue("binance", w)
        yield entry, w, r


def test_live_orders_go_into_the_ring_with_their_own_ids_and_clock(live):
    _, w, r = live
    before_us, before_ns = time.time_ns() // 1000, time.time_ns()
    orders, inst = {}, _inst(3)
    entry = RingOrderEntry(None, "oe", 21)          # ids start at the wall clock in microseconds
    entry.add_venue("binance", w)
    ids = [entry.place(orders, inst, BUY, 0.01, 100.0), entry.place(orders, inst, SELL, 0.01, None, None, True)]
    ids.append(entry.place(orders, inst, BUY, 0.01, 100.0))
    got = [r.poll() for _ in range(3)]
    assert r.poll() is None and entry.strategy_id == 21 and entry.name == "oe" and entry.ctx is None
    assert ids[0] > before_us and ids[0] < ids[1] < ids[2]
    assert [o.client_order_id for o in got] == ids and list(orders) == ids
    assert all(o.strategy_id == 21 and o.instrument_id == 3 and o.action == OrderAction.NEW for o in got)
    assert all(before_ns <= o.ts_created <= time.time_ns() for o in got)
    assert (got[1].side, got[1].order_type, got[1].price, got[1].reduce_only) == (SELL, OrderType.MARKET, 0, 1)
    assert entry.next_client_order_id() < entry.next_client_order_id()


def test_a_full_ring_is_refused_counted_and_not_entered(live):
    entry, w, r = live
    orders, inst = {}, _inst()
    entry.start_trace(16)
    sent = [entry.place(orders, inst, BUY, 0.01, 100.0) for _ in range(4)]
    with pytest.raises(OrderRefused, match="order ring of oe is full: the gateway is not reading it"):
        entry.place(orders, inst, BUY, 0.01, 100.0)
    assert entry.orders_refused == 1 and list(orders) == sent and len(entry.trace) == 4
    with pytest.raises(OrderRefused, match="full"):
        entry.send(inst, Order(client_order_id=1, action=OrderAction.CANCEL))
    assert entry.orders_refused == 2
    assert [r.poll().client_order_id for _ in range(4)] == sent
    later = entry.place(orders, inst, SELL, 0.01, 100.0)           # room again once it is read
    assert r.poll().client_order_id == later and later > sent[-1]
    w.close()
    with pytest.raises(OrderRefused, match="order ring of oe is closed"):
        entry.place(orders, inst, BUY, 0.01, 100.0)
    assert later in orders and len(orders) == 5


def test_trace_rows_are_client_id_and_trigger_ts_of_new_orders(live):
    entry, _, r = live
    orders, inst = {}, _inst()
    assert entry.trace is None
    entry.place(orders, inst, BUY, 0.01, 100.0)                 # before start_trace: not recorded
    entry.start_trace(2)
    assert entry.trace.shape == (0, 2)
    entry.trigger_ts = 1_700_000_000_123_456_789
    a = entry.place(orders, inst, BUY, 0.01, 100.0)
    entry.send(inst, Order(client_order_id=entry.next_client_order_id(), action=OrderAction.CANCEL,
                           target_order_id=a))                    # not a new order: no row
    entry.trigger_ts = 0
    b = entry.place(orders, inst, SELL, 0.01, 100.0)
    assert entry.trace.tolist() == [[a, 1_700_000_000_123_456_789], [b, 0]]
    assert [r.poll().action for _ in range(4)] == [OrderAction.NEW, OrderAction.NEW, OrderAction.CANCEL,
                                                   OrderAction.NEW]
    c = entry.place(orders, inst, SELL, 0.01, 100.0)             # past its capacity: sent, not traced
    assert r.poll().client_order_id == c
    assert len(entry.trace) == 2


def test_an_unknown_venue_is_refused_until_it_is_added(live, ring):
    entry, _, r = live
    orders, other = {}, _inst(5, venue="okx", symbol="ETHUSDT")
    with pytest.raises(OrderRefused, match="ETHUSDT: venue okx is not one this strategy trades"):
        entry.place(orders, other, BUY, 0.01, 100.0)
    assert orders == {} and r.poll() is None
    name = ring("orders", "oe2")
    with SpscWriter(name, RecordType.ORDER, 4) as w2, SpscReader(name) as r2:
        entry.add_venue("okx", w2)
        cid = entry.place(orders, other, BUY, 0.01, 100.0)
        assert r2.poll().client_order_id == cid and r.poll() is None


def test_a_strategy_without_its_base_init_gets_an_error_not_a_crash():
    class Forgetful(BaseStrategy):
        def __init__(self, ctx, params=None):
            self.ctx = ctx                  # BaseStrategy.__init__ not called: no order entry
    with pytest.raises(TypeError, match="BaseStrategy.__init__"):
        Forgetful(FakeCtx()).buy(_inst(), 0.01, 100.0)
