"""The original design's tick-to-order chain over pyzmq ipc (PUB/SUB ticks, PUSH/PULL orders),
doing the same work as TTQuant's: the same strategy class decides, the same OMS and risk engine
check. Each function runs in its own process and writes its trace to a .npy file."""
import os
import time


def _pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


class _ZmqContext:
    """The strategy's context over zmq: orders go out as Order bytes on a PUSH socket."""

    def __init__(self, table, push):
        self.table, self.push, self.strategy_id = table, push, 9
        self._id = time.time_ns() // 1000
        self.trigger_ts = 0
        self.trace = []

    def now_ns(self):
        return time.time_ns()

    def next_client_order_id(self):
        self._id += 1
        return self._id

    def instrument(self, symbol, market_type, venue=None):
        return self.table.by_symbol(symbol, market_type)

    def send(self, instrument, order):
        self.push.send(order.tobytes())
        self.trace.append((order.client_order_id, self.trigger_ts))


def strategy(table_path, tick_endpoint, order_endpoint, n, cpu, ready, trace_path):
    _pin(cpu)
    import numpy as np
    import zmq

    from ttquant.core.instruments import InstrumentTable
    from ttquant.core.records import MarketEvent
    from ttquant.strategies.base import Trade

    from bench_strategies import TradeEveryTick
    table = InstrumentTable.load(table_path)
    zctx = zmq.Context()
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(tick_endpoint)
    push = zctx.socket(zmq.PUSH)
    push.connect(order_endpoint)
    ctx = _ZmqContext(table, push)
    s = TradeEveryTick(ctx, {})
    s.on_start()
    ready.set()
    for _ in range(n):
        ev = MarketEvent.frombytes(sub.recv())
        ctx.trigger_ts = ev.ts_pub
        s.on_trade(Trade(ev, table.get(ev.instrument_id)))
    np.save(trace_path, np.array(ctx.trace, dtype=np.int64).reshape(-1, 2))
    sub.close(0)
    push.close(0)
    zctx.term()


def gateway(table_path, risk_path, order_endpoint, n, cpu, ready, trace_path):
    _pin(cpu)
    import numpy as np
    import zmq

    from ttquant.core.gateway.oms import OrderBookKeeper
    from ttquant.core.gateway.risk import RiskEngine
    from ttquant.core.gateway.risk_config import load_risk_limits
    from ttquant.core.instruments import InstrumentTable
    from ttquant.core.records import Order
    table = InstrumentTable.load(table_path)
    risk = RiskEngine(load_risk_limits(risk_path, table), table)
    oms = OrderBookKeeper(risk)
    zctx = zmq.Context()
    pull = zctx.socket(zmq.PULL)
    pull.bind(order_endpoint)
    ready.set()
    trace = []
    for _ in range(n):
        order = Order.frombytes(pull.recv())
        now = time.time_ns()
        # the gateway's checks, timed; their verdict is not needed here
        oms.take_id(order.strategy_id, order.client_order_id) or risk.check_and_reserve(order, now)
        trace.append((order.strategy_id, order.client_order_id, order.ts_created, time.time_ns()))
    np.save(trace_path, np.array(trace, dtype=np.int64).reshape(-1, 4))
    pull.close(0)
    zctx.term()
