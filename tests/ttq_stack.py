"""The whole trading path as real processes, for tests, benchmarks and the demo's checks:
venue-sim (replaying a capture, taking orders), md, gateway (the sim adapter here; a subclass says
another's [adapter], as ttq_binance_stack does); strategies are the test's own
order rings or `ttquant strategy run` processes. Everything runs in its own process group
(ttq_testing.Children) and the venue's segments are removed at the end."""
from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request

from ttquant.core.instruments import InstrumentTable, MarketType, instruments_path
from ttquant.core.records import Order, OrderAction, OrderType, RecordType, Side
from ttquant.core.rings import BroadcastReader, RingNotFoundError, SpscWriter

from ttq_testing import config_file, md_config, unlink_venue, wait_for

RISK = """max_order_age_ms = 3000
fat_finger_pct = 5
max_open_orders = 100
[rate_limit]
orders_per_s = 1000
burst = 1000
[balances]
USDT = 10000000
BTC = 100
"""


class TradingStack:
    def __init__(self, children, venue, tmp_path, speed="4", replay="btcusdt", risk=RISK, fsync="every",
                 venue_args=(), sim_log=None):
        """sim_log: a path the venue-sim's output goes to (else a pipe only its first line is read from)."""
        self.children, self.venue, self.dir = children, venue, tmp_path
        self.sim_log = sim_log
        argv = ("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--speed", speed,
                "--replay", replay, "--orders", venue, "--latency-ms", "1", *venue_args)
        if sim_log is None:
            self.sim = children.start(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            line = self.sim.stdout.readline().decode()
        else:
            with open(sim_log, "wb") as out:
                self.sim = children.start(*argv, stdout=out, stderr=subprocess.STDOUT)
            # a venue-sim that exited says why in its log: the assert below shows it
            line = wait_for(lambda: self._first_line(sim_log) or (self.sim.poll() is not None and
                                                                  open(sim_log).read() or None),
                            timeout=60, what="venue-sim's first line")
        assert "listening on 127.0.0.1:" in line, line
        self.port = int(line.split("127.0.0.1:")[1].split()[0])
        # Binance's signed REST order entry, when the venue says where ("..., REST order entry on 127.0.0.1:R")
        rest = line.rpartition("REST order entry on 127.0.0.1:")
        self.rest_port = int(rest[2].split()[0]) if rest[1] else None
        md_config(tmp_path / "md.toml", venue, self.port, rings={"tick_capacity": 262144})
        self.md = children.start("-m", "ttquant.core.cli", "md", "binance", "--config", tmp_path / "md.toml",
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.risk_path = tmp_path / "risk.toml"
        self.risk_path.write_text(risk)
        self.gw_config = config_file(tmp_path / "gateway.toml", "gateway", {
            "rings": {"name": venue}, "adapter": self.adapter_table(),
            "journal": {"path": "orders.journal", "fsync": fsync}, "risk": {"file": "risk.toml"},
            "loop": {"discover_interval_s": 0.1}})
        self.gateway = None
        self.gw_logs = []
        self.start_gateway()
        self.table = wait_for(self._table, timeout=60, what="the instrument table")
        self.spot = self.table.by_symbol("BTCUSDT", MarketType.SPOT)
        self.perp = self.table.by_symbol("BTCUSDT", MarketType.LINEAR_PERPETUAL)
        self.exec = wait_for(lambda: self._attach(f"/ttq.{venue}.exec"), timeout=60, what="the exec ring")
        self.ticks = wait_for(lambda: self._attach(f"/ttq.{venue}.ticks"), timeout=60, what="the tick ring")
        self.reports: list = []
        self._writers = {}
        self._cid = int(time.time() * 1e6)

    def adapter_table(self) -> dict:
        """The gateway config's [adapter]: the sim adapter on the venue's main port (a subclass may say another)."""
        return {"kind": "sim", "http_url": f"http://127.0.0.1:{self.port}"}

    @staticmethod
    def _first_line(path):
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
        return text.partition("\n")[0] if "\n" in text else None

    def _table(self):
        try:
            return InstrumentTable.load(instruments_path(self.venue))
        except Exception:
            return None

    @staticmethod
    def _attach(name):
        try:
            return BroadcastReader(name, start="oldest")
        except RingNotFoundError:
            return None

    def start_gateway(self, env=None):
        log = open(self.dir / f"gateway{len(self.gw_logs)}.log", "wb")
        self.gw_logs.append(log.name)
        self.gateway = self.children.start("-m", "ttquant.core.cli", "gateway", "binance", "--config", self.gw_config,
                                           stdout=log, stderr=subprocess.STDOUT, env=env)
        return self.gateway

    def gateway_log(self, index=-1):
        with open(self.gw_logs[index]) as f:
            return f.read()

    def wait_ready(self, index=-1, timeout=60):
        wait_for(lambda: "ready:" in self.gateway_log(index), timeout=timeout, what="the gateway ready")

    # -- a test strategy: its own order ring -------------------------------------------------------
    def writer(self, owner="t1"):
        w = self._writers.get(owner)
        if w is None:
            w = self._writers[owner] = SpscWriter(f"/ttq.{self.venue}.orders.{owner}", RecordType.ORDER)
        return w

    def next_id(self):
        self._cid += 1
        return self._cid

    def order(self, inst=None, side=Side.BUY, price=None, qty="0.001", order_type=OrderType.LIMIT, sid=11,
              owner="t1", **fields):
        inst = inst or self.spot
        values = dict(ts_created=time.time_ns(), client_order_id=self.next_id(), strategy_id=sid,
                      instrument_id=inst.instrument_id, action=OrderAction.NEW, side=side, order_type=order_type,
                      price=0 if price is None else price, qty=inst.qty_to_raw(qty))
        values.update(fields)
        o = Order(**values)
        self.writer(owner).push(o)
        return o

    def cancel(self, target, sid=11, owner="t1", inst=None, action=OrderAction.CANCEL):
        o = Order(ts_created=time.time_ns(), client_order_id=self.next_id(), strategy_id=sid,
                  instrument_id=(inst or self.spot).instrument_id, action=action, target_order_id=target)
        self.writer(owner).push(o)
        return o

    def last_trade(self, inst=None, timeout=30):
        inst = inst or self.spot
        found = []

        def look():
            ev = self.ticks.poll()
            while ev is not None:
                if ev.kind == 1 and ev.instrument_id == inst.instrument_id:
                    found.append(ev.price)
                ev = self.ticks.poll()
            return found[-1] if found else None
        return wait_for(look, timeout=timeout, what="a trade")

    def touch(self, inst=None):
        inst = inst or self.spot
        board = wait_for(lambda: self._board(), timeout=30, what="the board")
        try:
            # None until md has put the instrument on the board at all
            top = wait_for(lambda: (t := board.read(inst.instrument_id)) is not None and t.synced
                           and len(t.bids) and len(t.asks) and t, timeout=30, what="a synced book")
            return int(top.bids[0][0]), int(top.asks[0][0])
        finally:
            board.close()

    def _board(self):
        from ttquant.core.book.book_board import BookBoard
        try:
            return BookBoard(f"/ttq.{self.venue}.books")
        except (RingNotFoundError, OSError):
            return None

    def drain(self):
        r = self.exec.poll()
        while r is not None:
            self.reports.append(r)
            r = self.exec.poll()
        return self.reports

    def report_for(self, cid, status=None, timeout=20):
        def find():
            for r in self.drain():
                if r.client_order_id == cid and (status is None or r.status == status):
                    return r
            return None
        return wait_for(find, timeout=timeout, what=f"a report for {cid} ({status})")

    def venue_state(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_sim/orders", timeout=10) as r:
            return json.loads(r.read())

    def stop_gateway(self, sig=signal.SIGTERM, timeout=20):
        self.gateway.send_signal(sig)
        return self.gateway.wait(timeout=timeout)

    def close(self):
        for w in self._writers.values():
            w.close()
        self.exec.close()
        self.ticks.close()
        unlink_venue(self.venue)


T0 = 1_723_075_200_000_000_000


def record_market(root, seconds=40, every_ms=20, waves=False):
    """A journal of what md records of BTCUSDT spot (the real instrument from the captured
    exchangeInfo in the file header): its book's top (FROM_BOOK quotes, a tick wide) and trades,
    alternating every_ms / 2 apart. The mid climbs 50 ticks and starts again; with waves, it
    swings on two sine waves instead (an EMA cross every few dozen trades). Returns the instrument."""
    import numpy as np
    import orjson

    from ttquant.core.journal import JournalWriter
    from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info, merge_instruments
    from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, EventKind
    from ttquant.core.sim.captures import read_cryptofeed_http, sample_data_dir
    (msg,) = list(read_cryptofeed_http(sample_data_dir() / "binance" / "cryptofeed_spot_exchangeinfo.0"))
    table = InstrumentTable("binance")
    (inst,) = merge_instruments(table, instruments_from_exchange_info(orjson.loads(msg.payload), "spot",
                                                                      symbols=["BTCUSDT"])[0])
    n = seconds * 1000 // every_ms
    i = np.arange(2 * n)
    ev = np.zeros(2 * n, MARKET_EVENT_DTYPE)
    ev["ts_pub"] = ev["ts_exchange"] = ev["ts_recv"] = T0 + i * every_ms * 500_000
    base = 61_000 * 10 ** inst.price_precision
    steps = np.round(20 * np.sin(i / 31) + 8 * np.sin(i / 9)).astype(np.int64) + 30 if waves else (i // 10) % 50
    mid = base + steps * inst.tick_size
    ev["instrument_id"] = inst.instrument_id
    ev["kind"] = [EventKind.BBO, EventKind.TRADE] * n
    ev["flags"] = [EventFlag.FROM_BOOK, 0] * n
    ev["price"], ev["qty"] = mid, 10 ** inst.size_precision // 2
    quotes = ev["kind"] == EventKind.BBO
    ev["ask_price"][quotes] = mid[quotes] + inst.tick_size
    ev["ask_qty"][quotes] = 10 ** inst.size_precision // 2
    ev["seq"] = i
    w = JournalWriter(str(root / "binance.ticks"), "/ttq.binance.ticks", RecordType.MARKET_EVENT,
                      MARKET_EVENT_DTYPE.itemsize, 0, table.to_json(), ring_created_ns=T0)
    w.append(ev)
    w.close()
    return inst
