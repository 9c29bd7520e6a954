"""TickDispatch (strategies/tick_dispatch.pyx): each event kind from the tick rings to its
handler (books only when wanted and at a batch's end), only this strategy's exec reports,
events of instruments not in the table skipped, handler errors to on_error (a true answer
stops at once, BaseExceptions are not caught), the trigger ts during a handler and 0 after,
venues taking turns, poll's count of what it handled."""
from types import SimpleNamespace

import numpy as np
import pytest

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
from ttquant.core.records import (
    MARKET_EVENT_DTYPE,
    EventFlag,
    EventKind,
    ExecReport,
    MarketEvent,
    OrderStatus,
    RecordType,
    Side,
)
from ttquant.core.rings import BroadcastReader, BroadcastWriter
from ttquant.strategies.base import BaseStrategy
from ttquant.strategies.events import Bar, Quote, Trade
from ttquant.strategies.order_entry import OrderEntry
from ttquant.strategies.tick_dispatch import TickDispatch

SID = 7
K, F = EventKind, EventFlag


def _inst(iid=1, pp=2, sp=5, symbol="BTCUSDT"):
    return Instrument(iid, "binance", symbol, MarketType.SPOT, "BTC", "USDT", pp, sp, 1, 1, 1, 0, 1, 0, 0)


class Ctx:
    strategy_id = SID

    def __init__(self):
        self.sent = []

    def now_ns(self): return 1

    def next_client_order_id(self): return len(self.sent) + 1

    def send(self, instrument, order): self.sent.append(order)


class Recorder:
    """Every handler call as (name, argument, the entry's trigger ts then); raises on demand."""

    def __init__(self, entry):
        self.calls, self.entry, self.fail = [], entry, {}

    def _got(self, name, arg):
        self.calls.append((name, arg, self.entry.trigger_ts))
        if name in self.fail:
            raise self.fail[name]

    def on_trade(self, t): self._got("trade", t)
    def on_quote(self, q): self._got("quote", q)
    def on_bar(self, b): self._got("bar", b)
    def on_book(self, inst): self._got("book", inst)
    def on_book_reset(self, inst): self._got("reset", inst)
    def _exec_report(self, report, inst): self._got("report", (report.client_order_id, inst))


@pytest.fixture
def feeds(ring):
    """feeds(tag) -> a venue's tick and exec rings: writers and readers from now on."""
    opened = []

    def make(tag="a"):
        tn, en = ring("ticks", tag), ring("exec", tag)
        f = SimpleNamespace(ticks=BroadcastWriter(tn, RecordType.MARKET_EVENT, 2048),
                            exec=BroadcastWriter(en, RecordType.EXEC_REPORT, 64))
        f.ticks_reader, f.exec_reader = BroadcastReader(tn), BroadcastReader(en)
        opened.extend([f.ticks_reader, f.exec_reader, f.ticks, f.exec])
        return f

    yield make
    for x in opened:
        x.close()


def _setup(feed, table, wants_book=True, stop=False, strategy=None):
    entry = OrderEntry(Ctx())
    s = strategy or Recorder(entry)
    errors = []
    d = TickDispatch(s, SID, entry, lambda exc: errors.append(exc) or stop, wants_book)
    assert d.add_venue(feed.ticks_reader, feed.exec_reader, table) == 0
    return d, s, entry, errors


def _trade(ts_pub=1, iid=1, price=6039012, **kw):
    return MarketEvent(kind=K.TRADE, instrument_id=iid, price=price, qty=150, ts_pub=ts_pub, **kw)


def test_poll_returns_zero_when_there_is_nothing(feeds):
    f = feeds()
    d, s, _, errors = _setup(f, InstrumentTable("binance", [_inst()]))
    assert d.poll() == 0 and d.poll(5) == 0 and d.poll(0) == 0
    f.exec.push(ExecReport(strategy_id=SID + 1, client_order_id=1, instrument_id=1))    # someone else's
    assert d.poll() == 0
    assert s.calls == [] and errors == [] and (d.events, d.reports, d.stopped) == (0, 0, False)


def test_every_kind_reaches_its_handler_with_the_trigger_ts(feeds):
    f, inst = feeds(), _inst()
    d, s, entry, errors = _setup(f, InstrumentTable("binance", [inst]))
    for ev in (_trade(11, flags=F.BUYER_AGGRESSOR, seq=5),
               MarketEvent(kind=K.BBO, instrument_id=1, price=100, qty=1, ask_price=102, ask_qty=2, ts_pub=12),
               MarketEvent(kind=K.BOOK_LEVEL, instrument_id=1, price=100, qty=3, ts_pub=13),
               MarketEvent(kind=K.BOOK_LEVEL, instrument_id=1, price=99, qty=3, ts_pub=14, flags=F.LAST_IN_BATCH),
               MarketEvent(kind=K.BOOK_RESET, instrument_id=1, ts_pub=15),
               MarketEvent(kind=K.KLINE, instrument_id=1, open=100, high=110, low=90, price=105, ts_pub=16),
               MarketEvent(kind=K.MARK, instrument_id=1, price=101, ts_pub=17)):
        f.ticks.push(ev)
    assert d.poll() == 7 and d.events == 7 and errors == []
    assert [(name, ts) for name, _, ts in s.calls] == [("trade", 11), ("quote", 12), ("book", 14),
                                                       ("reset", 15), ("bar", 16)]
    (_, t, _), (_, q, _), (_, book, _), (_, reset, _), (_, b, _) = s.calls
    assert type(t) is Trade and t.instrument is inst
    assert t.price == 60390.12 and t.buyer_aggressor and t.trade_id == 5
    assert type(q) is Quote and (q.bid, q.ask, q.mid) == (1.0, 1.02, 1.01)
    assert book is inst and reset is inst
    assert type(b) is Bar and (b.open, b.high, b.low, b.close) == (1.0, 1.1, 0.9, 1.05)
    assert entry.trigger_ts == 0


def test_books_only_when_the_strategy_reads_them(feeds):
    f = feeds()
    d, s, _, _ = _setup(f, InstrumentTable("binance", [_inst()]), wants_book=False)
    f.ticks.push(MarketEvent(kind=K.BOOK_LEVEL, instrument_id=1, price=99, qty=3, flags=F.LAST_IN_BATCH))
    f.ticks.push(MarketEvent(kind=K.BOOK_RESET, instrument_id=1))
    assert d.poll() == 2 and [c[0] for c in s.calls] == ["reset"]


def test_only_this_strategys_exec_reports_arrive_with_their_instrument(feeds):
    f, inst = feeds(), _inst()
    d, s, _, _ = _setup(f, InstrumentTable("binance", [inst]))
    f.ticks.push(_trade(55))
    for sid, cid, iid in ((SID, 1, 1), (SID + 1, 2, 1), (0, 3, 1), (SID, 4, 99)):
        f.exec.push(ExecReport(strategy_id=sid, client_order_id=cid, instrument_id=iid))
    assert d.poll() == 3 and d.reports == 2
    assert [(n, a, ts) for n, a, ts in s.calls[1:]] == [("report", (1, inst), 0), ("report", (4, None), 0)]


def test_an_unknown_instrument_is_skipped_until_the_table_has_it(feeds):
    f, table = feeds(), InstrumentTable("binance", [_inst()])
    d, s, _, errors = _setup(f, table)
    f.ticks.push(_trade(1, iid=42, price=123))
    d.poll()
    assert s.calls == [] and d.events == 0 and errors == []
    late = table.add(_inst(42, pp=1, symbol="ETHUSDT"))
    f.ticks.push(_trade(2, iid=42, price=123))
    assert d.poll() == 1 and s.calls[0][1].instrument is late and s.calls[0][1].price == 12.3


def test_handler_errors_go_to_on_error_and_the_dispatch_carries_on(feeds):
    f = feeds()
    d, s, _, errors = _setup(f, InstrumentTable("binance", [_inst()]), stop=False)
    s.fail["trade"] = boom = ValueError("boom")
    for k in range(3):
        f.ticks.push(_trade(k + 1))
    f.exec.push(ExecReport(strategy_id=SID, client_order_id=9, instrument_id=1))
    assert d.poll() == 4 and not d.stopped
    assert errors == [boom] * 3 and [c[0] for c in s.calls] == ["trade"] * 3 + ["report"]


def test_a_true_answer_from_on_error_stops_at_once(feeds):
    f = feeds()
    d, s, _, errors = _setup(f, InstrumentTable("binance", [_inst()]), stop=True)
    s.fail["trade"] = RuntimeError("deliberate")
    for k in range(3):
        f.ticks.push(_trade(k + 1))
    f.exec.push(ExecReport(strategy_id=SID, client_order_id=9, instrument_id=1))
    assert d.poll() == 1 and d.stopped and len(s.calls) == 1 and len(errors) == 1
    d.stopped, s.fail = False, {"report": KeyError("r")}        # the rest is still there
    f.exec.push(ExecReport(strategy_id=SID, client_order_id=10, instrument_id=1))
    assert d.poll() == 3 and d.stopped                          # two trades, then the failing report
    assert [c[0] for c in s.calls] == ["trade"] * 3 + ["report"] and len(errors) == 2
    d.stopped, s.fail = False, {}
    assert d.poll() == 1 and s.calls[-1][1][0] == 10


def test_the_trigger_ts_is_zero_after_a_stop(feeds):
    f = feeds()
    d, s, entry, _ = _setup(f, InstrumentTable("binance", [_inst()]), stop=True)
    s.fail["trade"] = RuntimeError("deliberate")
    f.ticks.push(_trade(77))
    assert d.poll() == 1 and d.stopped and s.calls[0][2] == 77
    assert entry.trigger_ts == 0


def test_a_base_exception_is_not_caught(feeds):
    class Halt(BaseException):
        pass

    f = feeds()
    d, s, _, errors = _setup(f, InstrumentTable("binance", [_inst()]))
    s.fail["trade"] = Halt()
    f.ticks.push(_trade())
    with pytest.raises(Halt):
        d.poll()
    assert errors == [] and not d.stopped


def test_dispatch_handles_one_event_read_elsewhere(feeds):
    f, inst = feeds(), _inst()
    d, s, entry, _ = _setup(f, InstrumentTable("binance", [inst]))
    d.dispatch(0, _trade(31))
    d.dispatch(0, _trade(32, iid=5))                            # not in the table
    assert [(n, a.price, ts) for n, a, ts in s.calls] == [("trade", 60390.12, 31)]
    assert entry.trigger_ts == 0 and d.events == 1 and d.poll() == 0


def test_venues_keep_their_own_tables_and_take_turns(feeds):
    a, b = feeds("a"), feeds("b")
    ia, ib = _inst(1, pp=2), _inst(1, pp=4)                    # the same id on two venues
    d, s, _, _ = _setup(a, InstrumentTable("binance", [ia]))
    assert d.add_venue(b.ticks_reader, b.exec_reader, InstrumentTable("binance", [ib])) == 1
    batch = np.zeros(1100, MARKET_EVENT_DTYPE)
    batch["kind"], batch["instrument_id"], batch["price"], batch["seq"] = K.TRADE, 1, 12345, np.arange(1100)
    assert a.ticks.push_many(batch) == 1100
    b.ticks.push(_trade(price=12345, seq=5000))
    assert d.poll() == 1025                                    # 1024 from a, then b gets its turn
    assert s.calls[-1][1].instrument is ib and s.calls[-1][1].price == pytest.approx(1.2345)
    assert {c[1].instrument for c in s.calls[:-1]} == {ia} and s.calls[0][1].price == 123.45
    assert d.poll() == 76 and [c[1].trade_id for c in s.calls[1025:]] == list(range(1024, 1100))


def test_instrument_ids_past_the_cache_are_delivered(feeds):
    f = feeds()
    big, top = _inst(2**20 + 5, symbol="A"), _inst(2**32 - 1, pp=3, symbol="B")
    d, s, _, _ = _setup(f, InstrumentTable("binance", [big, top]))
    for iid in (big.instrument_id, top.instrument_id, big.instrument_id):
        f.ticks.push(_trade(iid=iid, price=5000))
    assert d.poll() == 3
    assert [(c[1].instrument, c[1].price) for c in s.calls] == [(big, 50.0), (top, 5.0), (big, 50.0)]


def test_a_closed_ring_is_passed_over(feeds):
    a, b = feeds("a"), feeds("b")
    d, s, _, _ = _setup(a, InstrumentTable("binance", [_inst()]))
    d.add_venue(b.ticks_reader, b.exec_reader, InstrumentTable("binance", [_inst()]))
    a.ticks.push(_trade(1))
    b.ticks.push(_trade(2))
    a.ticks_reader.close()
    assert d.poll() == 1 and [c[2] for c in s.calls] == [2]


def test_exec_reports_reach_a_base_strategy(feeds):
    class Fills(BaseStrategy):
        def on_fill(self, fill): self.fills.append(fill)

    f, inst, ctx = feeds(), _inst(), Ctx()
    s = Fills(ctx)
    s.fills = []
    d, _, _, errors = _setup(f, InstrumentTable("binance", [inst]), strategy=s)
    cid = s.buy(inst, 0.0015, 60390.12)
    f.exec.push(ExecReport(strategy_id=SID, client_order_id=cid, instrument_id=1, status=OrderStatus.ACCEPTED))
    assert d.poll() == 1 and s.orders[cid].status == OrderStatus.ACCEPTED
    f.exec.push(ExecReport(strategy_id=SID, client_order_id=cid, instrument_id=1, status=OrderStatus.FILLED,
                           side=Side.BUY, last_price=6039012, last_qty=150, cum_qty=150, trade_id=3))
    assert d.poll() == 1 and errors == [] and cid not in s.orders
    assert [(x.instrument, x.price_raw, x.qty_raw) for x in s.fills] == [(inst, 6039012, 150)]
    assert s.position(inst) == pytest.approx(0.0015)



def test_dispatch_to_a_venue_never_added_is_an_error_not_a_crash():
    d = TickDispatch(Recorder(OrderEntry(Ctx())), 1, None, lambda exc: True, False)
    with pytest.raises(IndexError, match="venue 0: 0 added"):
        d.dispatch(0, MarketEvent(kind=EventKind.TRADE))
