"""`ttquant demo`: the whole trading path on the embedded default, about 30 seconds.

    venue-sim (the real BTCUSDT captures from $TTQ_SAMPLE_DATA, default the project's data/,
    else the synthetic market; taking orders) -> md -> an example strategy (the
    Avellaneda-Stoikov market maker on the USDT-M perpetual by default) -> gateway with the
    sim adapter -> exec reports

With adapter "binance" the gateway trades through the Binance adapter instead, against the
venue-sim's Binance order entry, signed with an ephemeral random HMAC key: the venue's copy and
the gateway's credentials file are each a 0600 file in the demo's private directory, removed at
the end. The strategy trades its own market (the USDT-M perpetual by default: signed REST and a listen
key; spot: the WebSocket API); spread_arb, which trades both, is refused (a Binance gateway trades one).

each its own process. Every second it prints the strategy's new orders, fills, canceled orders,
rejects, position and PnL, all read from the exec ring; at the end a summary (what became of
the orders, every reject by reason in words, positions by market) with tick-to-order latency (a
tick's ts_pub in the ring -> the gateway has checked the order it caused) and one
machine-readable line `demo: events=N orders=N fills=N rejects=N pnl=X tick_to_order_p50_ns=N
tick_to_order_p99_ns=N`. One count throughout: orders = new orders the strategy sent (a cancel is
not an order), rejects = refused new orders plus refused cancels.
Everything it started is stopped and its segments removed, whatever happens.
"""
from __future__ import annotations

import os
import secrets
import string
import subprocess
import tempfile
import textwrap
import time

import numpy as np

from ttquant.core.instruments import MarketType
from ttquant.core.md.demo import _spawn, _start_venue, _stop
from ttquant.core.md.fixed_point import format_fixed
from ttquant.core.records import OrderStatus, OrderType, RejectCode
from ttquant.core.rings.names import exec_ring, stack_entries, tick_ring

__all__ = ["run_trading_demo", "STRATEGIES", "ADAPTERS"]

STRATEGIES = {
    "market_maker": ("ttquant.strategies.examples.market_maker:AvellanedaStoikov",
                     {"market": "usdm", "qty": 0.002, "max_inventory": 5, "gamma": 0.1, "requote_ticks": 2,
                      "vol_window": 30}),
    "ema_cross": ("ttquant.strategies.examples.ema_cross:EmaCross", {"market": "usdm", "qty": 0.002}),
    "mean_reversion": ("ttquant.strategies.examples.mean_reversion:MeanReversion", {"market": "usdm", "qty": 0.002}),
    "grid": ("ttquant.strategies.examples.grid:Grid", {"market": "usdm", "qty": 0.002, "spacing_ticks": 20}),
    "spread_arb": ("ttquant.strategies.examples.spread_arb:SpreadArb",
                   {"qty": 0.002, "entry_bps": -3, "exit_bps": -3.5}),
}
# the gateway's adapter -> how the demo says it
ADAPTERS = {"sim": "sim adapter", "binance": "Binance adapter: signed orders to the simulated venue"}
# the demo's limits, put over the package's example risk file (core/daemon/examples/risk.toml)
RISK = {
    "max_order_age_ms": 1000, "fat_finger_pct": 2.0, "max_notional": 100000, "max_open_orders": 50,
    "max_open_orders_per_strategy": 20, "daily_loss_limit": 500,
    "rate_limit": {"orders_per_s": 200, "burst": 400, "strategy_orders_per_s": 100, "strategy_burst": 200},
    "balances": {"USDT": 100000, "BTC": 1},
    "instruments": {"usdm": {"BTCUSDT": {"max_position": 0.1}}, "spot": {"BTCUSDT": {"max_position": 0.1,
                                                                                    "max_notional": None}}},
    "strategies": None,
}


# Why an order was refused, in words, by reject code (RejectCode's comments say the same).
REJECT_WORDS = {
    RejectCode.ORDER_TOO_OLD: ("too old when the gateway saw it", "The order waited longer than "
                               "max_order_age_ms between the strategy and the gateway's check."),
    RejectCode.POSITION_LIMIT: ("position limit", "The position plus the open orders would pass "
                                "max_position."),
    RejectCode.INSUFFICIENT_FUNDS: ("not enough funds", "The shadow balance, open orders reserved, could not "
                                    "pay for it."),
    RejectCode.RATE_LIMIT: ("rate limit", "The strategy's or the gateway's order budget per second was "
                            "spent."),
    RejectCode.MAX_OPEN_ORDERS: ("too many open orders", "The strategy (or everyone) had as many orders "
                                 "open as risk.toml's max_open_orders allows; orders being canceled still "
                                 "count."),
    RejectCode.BAD_PRICE: ("price off the tick or out of bounds", "The price is not a multiple of the tick "
                           "size or lies outside the instrument's limits."),
    RejectCode.BAD_QTY: ("quantity off the step or too small", "The quantity is not a multiple of the step "
                         "size, or under the minimum quantity or notional."),
    RejectCode.FAT_FINGER: ("too far from the market", "The price is further than fat_finger_pct from the "
                            "last trade or the mid."),
    RejectCode.MAX_NOTIONAL: ("order too large", "One order worth more than max_notional."),
    RejectCode.DUPLICATE_ORDER_ID: ("client order id used before", "The strategy reused a client order id."),
    RejectCode.UNKNOWN_INSTRUMENT: ("unknown instrument", "The instrument is not in the venue's table."),
    RejectCode.UNKNOWN_ORDER: ("cancel of an order no longer open", "The order had filled, expired or been "
                               "canceled before the cancel was checked: nothing was left to cancel."),
    RejectCode.BAD_FIELD: ("malformed request", "An action, side or type that does not exist."),
    RejectCode.REDUCE_ONLY: ("reduce-only would not reduce", "A reduce-only order that would not reduce the "
                             "position."),
    RejectCode.KILL_SWITCH: ("kill switch", "The kill switch is on or the daily loss limit was reached."),
    RejectCode.VENUE: ("the venue refused it", "The venue's own checks refused the order."),
    RejectCode.VENUE_UNAVAILABLE: ("venue unavailable", "The gateway could not reach the venue."),
}
POST_ONLY_CROSS = ("post-only would cross", "A post-only order may only rest on the book. The market "
                   "maker quotes at the touch (its bid at or under the best bid, its ask at or over the best "
                   "ask it saw); when the other side of the book has moved onto that price by the time the "
                   "order reaches the venue, the venue refuses it rather than let it take liquidity, and the "
                   "strategy quotes again on its next tick.")
# the markets the demo runs, named as md.toml names them
MARKET_LABELS = {MarketType.SPOT: "spot", MarketType.LINEAR_PERPETUAL: "usdm-perp"}
# Binance refuses a post-only order that would take (spot -2010, futures GTX -5022): the adapter says BAD_PRICE
BINANCE_POST_ONLY_CROSS = (POST_ONLY_CROSS[0], POST_ONLY_CROSS[1] + " (Binance says -2010 \"Order would immediately "
                           "match and take.\" on spot, -5022 on futures, which the Binance adapter reports as "
                           "BAD_PRICE.)")


def _reject_reason(code: int, order_type: int, adapter: str = "sim") -> tuple[str, str, str]:
    """(short reason, the reject code's name, why) of a refused request; order_type 0: a cancel."""
    try:
        name = RejectCode(code).name
    except ValueError:
        return f"reject code {code}", str(code), "A code this demo has no words for."
    if code == RejectCode.VENUE and order_type == OrderType.POST_ONLY:
        return POST_ONLY_CROSS[0], name, POST_ONLY_CROSS[1]     # the sim venue's only post-only refusal
    if adapter == "binance" and code == RejectCode.BAD_PRICE and order_type == OrderType.POST_ONLY:
        return BINANCE_POST_ONLY_CROSS[0], name, BINANCE_POST_ONLY_CROSS[1]     # the strategies quote on the tick
    reason, why = REJECT_WORDS.get(RejectCode(code), (name.lower().replace("_", " "), "See RejectCode."))
    return reason, name, why


def _signed_qty(raw: int, precision: int) -> str:
    """+0.002, -0.002 or 0: exact at the instrument's size precision, never 0E-8."""
    text = format_fixed(raw, precision)
    return "+" + text if raw > 0 else text


class _OrderTally:
    """The one count of the strategy's orders, from its exec reports, for the per-second line and
    the summary alike. A report with an order type is about a new order (counted once, by client
    id); a cancel carries none, and the exec ring only shows one when it is refused. (An amend
    carries its order's type; the example strategies never amend.)"""

    TERMINAL = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED)

    def __init__(self, adapter: str = "sim"):
        self.adapter = adapter                      # whose reject codes these are (words for the summary)
        self.status: dict[int, int] = {}            # new order's client id -> its latest status
        self.rejects: dict[tuple[int, int, bool], int] = {}     # (code, order type, cancel?) -> n
        self.cancels_refused = 0

    def on_report(self, r) -> None:
        cid, status = int(r.client_order_id), int(r.status)
        if r.order_type == 0:                       # a cancel / cancel-all request
            if status == OrderStatus.REJECTED:
                self.cancels_refused += 1
                key = (int(r.reject_code), 0, True)
                self.rejects[key] = self.rejects.get(key, 0) + 1
            return
        before = self.status.get(cid)
        if before in self.TERMINAL:
            return                                  # a late copy: the order had ended
        self.status[cid] = status
        if status == OrderStatus.REJECTED:
            key = (int(r.reject_code), int(r.order_type), False)
            self.rejects[key] = self.rejects.get(key, 0) + 1

    @property
    def orders(self) -> int:
        return len(self.status)

    @property
    def reject_count(self) -> int:
        return sum(self.rejects.values())

    def ended(self, status) -> int:
        return sum(1 for s in self.status.values() if s == status)

    def summary(self) -> list[str]:
        filled, canceled, rejected, expired = (self.ended(s) for s in self.TERMINAL)
        still_open = self.orders - filled - canceled - expired - rejected
        lines = [f"orders: {self.orders} new orders sent: {filled} filled, {canceled} canceled, {expired} "
                 f"expired (IOC, FOK or market orders the book did not fill), {rejected} rejected, "
                 f"{still_open} open at the end",
                 f"cancels: {canceled} orders canceled, {self.cancels_refused} cancel requests rejected"]
        if not self.rejects:
            return lines + ["rejects: 0"]
        lines.append(f"rejects: {self.reject_count} ({self.reject_count - self.cancels_refused} new orders, "
                     f"{self.cancels_refused} cancels), by reason:")
        for (code, order_type, cancel), n in sorted(self.rejects.items(), key=lambda kv: -kv[1]):
            reason, name, why = _reject_reason(code, order_type, self.adapter)
            share = "" if cancel or not self.orders else f" ({100 * n / self.orders:.0f} % of the new orders)"
            lines.append(f"  {reason} [{name}]: {n}{share}")
            lines.append(textwrap.fill(why, 100, initial_indent="    ", subsequent_indent="    "))
        return lines


def _write(path, role, overrides):
    from ttquant.core.daemon.config import render_example
    with open(path, "w") as f:
        f.write(render_example(role, overrides))


def run_trading_demo(seconds: float = 30.0, speed: float = 1.0, strategy: str = "market_maker",
                     synthetic: bool = False, out=print, adapter: str = "sim") -> int:
    from ttquant.core.instruments import InstrumentTable, instruments_path
    from ttquant.core.portfolio import Portfolio
    from ttquant.core.rings import BroadcastReader, RingNotFoundError
    from ttquant.core.sim.captures import sample_data_dir

    if strategy not in STRATEGIES:
        out(f"demo: unknown strategy {strategy!r} ({', '.join(STRATEGIES)})")
        return 2
    if adapter not in ADAPTERS:
        out(f"demo: unknown adapter {adapter!r} ({', '.join(ADAPTERS)})")
        return 2
    if adapter == "binance" and "market" not in STRATEGIES[strategy][1]:
        out(f"demo: {strategy} trades spot against the USDT-M perpetual; a Binance gateway trades one market "
            f"(choose another strategy, or --adapter sim)")
        return 2
    market = STRATEGIES[strategy][1].get("market", "usdm")
    source = "synthetic" if synthetic else "btcusdt"
    if not synthetic and not (sample_data_dir() / "binance" / "spot_btcusdt_20240808.gz").exists():
        out(f"demo: no captures at {sample_data_dir()} (TTQ_SAMPLE_DATA): using the synthetic market instead")
        source = "synthetic"
    name = f"demo{os.getpid()}"
    tmp = tempfile.TemporaryDirectory(prefix="ttq-demo-")
    d = tmp.name
    procs = {}
    try:
        # the venue's account: the gateway takes these balances on start (risk.toml's are the fallback)
        venue_args = ["--speed", str(speed), "--replay", source, "--orders", name, "--balances", "USDT=100000,BTC=1"]
        if adapter == "binance":
            # the account's key, made up now; the venue's copy and the gateway's are the demo's, 0600
            api_key, secret = _random_key(), _random_key()
            _write_private(f"{d}/venue-keys", f"{api_key} hmac {secret}\n")
            _write_private(f"{d}/binance.toml", f'api_key = "{api_key}"\nsecret = "{secret}"\n')
            venue_args += ["--rest-port", "0", "--api-keys", f"{d}/venue-keys"]
        said = []                   # the venue's first line, as the demo prints it: it names the ports
        procs["venue"], port = _start_venue(lambda text: (said.append(text), out(text)), *venue_args)
        if port is None:
            return 1
        if adapter == "binance":
            where = said[-1].rpartition("REST order entry on 127.0.0.1:")
            if not where[1]:
                out("demo: the simulated venue named no REST order entry port")
                return 1
            rest_port = int(where[2].split()[0])
            gateway_adapter = {"kind": "binance", "environment": "custom", "rest_url": f"http://127.0.0.1:{rest_port}",
                               "market": market, "credentials": "./binance.toml"}
            if market == "spot":        # order entry and user data: the WebSocket API
                gateway_adapter["ws_api_url"] = f"ws://127.0.0.1:{port}/ws-api/v3"
            else:                       # order entry over the futures WebSocket API, user data over a listen key
                gateway_adapter.update(ws_api_url=f"ws://127.0.0.1:{port}/ws-fapi/v1",
                                       user_stream_url=f"ws://127.0.0.1:{port}/ws")
        else:
            gateway_adapter = {"kind": "sim", "http_url": f"http://127.0.0.1:{port}"}
        # every file from the package's example config, with the demo's values put over it
        _write(f"{d}/md.toml", "md", {"rings": {"name": name}, "markets": {
            m: {"symbols": ["BTCUSDT"], "ws_url": f"ws://127.0.0.1:{port}/{m}", "rest_url": f"http://127.0.0.1:{port}"}
            for m in ("spot", "usdm")}})
        procs["md"] = _spawn("md", "binance", "--config", f"{d}/md.toml", stdout=subprocess.DEVNULL,
                             stderr=open(f"{d}/md.log", "w"))
        _write(f"{d}/risk.toml", "risk", RISK)
        _write(f"{d}/gateway.toml", "gateway", {
            "rings": {"name": name}, "adapter": gateway_adapter,
            "journal": {"path": "orders.journal", "fsync": "interval"}, "risk": {"file": "risk.toml"},
            "loop": {"discover_interval_s": 0.2}})
        procs["gateway"] = _spawn("gateway", "binance", "--config", f"{d}/gateway.toml",
                                  stdout=subprocess.DEVNULL, stderr=open(f"{d}/gateway.log", "w"),
                                  env={"TTQ_GATEWAY_TRACE": f"{d}/gateway_trace.npy"})
        class_path, params = STRATEGIES[strategy]
        _write(f"{d}/strategy.toml", "strategy", {
            "name": strategy.replace("_", "-"), "strategy_id": 7, "class": class_path,
            "venues": {"binance": {"rings": name}}, "params": {"market": None, "qty": None, **params},
            "runtime": {"on_error": "stop", "cancel_all_on_stop": True}})
        deadline = time.monotonic() + 60
        exec_reader = ticks = None
        while time.monotonic() < deadline and (exec_reader is None or ticks is None):
            for p, what in ((procs["md"], "md"), (procs["gateway"], "gateway")):
                if p.poll() is not None:
                    out(f"demo: {what} exited with {p.returncode}: {open(f'{d}/{what}.log').read()[-2000:]}")
                    return 1
            try:
                ticks = ticks or BroadcastReader(tick_ring(name), start="latest", wait="sleep")
                exec_reader = exec_reader or BroadcastReader(exec_ring(name), start="latest")
            except RingNotFoundError:
                time.sleep(0.1)
        if exec_reader is None:
            out("demo: the md daemon and the gateway did not come up in 60 s")
            return 1
        while "ready:" not in open(f"{d}/gateway.log").read():
            if time.monotonic() > deadline or procs["gateway"].poll() is not None:
                out(f"demo: the gateway did not get ready: {open(f'{d}/gateway.log').read()[-2000:]}")
                return 1
            time.sleep(0.1)
        procs["strategy"] = _spawn("strategy", "run", strategy.replace("_", "-"), "--config", f"{d}/strategy.toml",
                                   stdout=subprocess.DEVNULL, stderr=open(f"{d}/strategy.log", "w"),
                                   env={"TTQ_STRATEGY_TRACE": f"{d}/strategy_trace.npy"})
        table = InstrumentTable.load(instruments_path(name))
        out(f"demo: md, gateway ({ADAPTERS[adapter]}) and strategy {strategy} running on /ttq.{name}.*; "
            f"{seconds:.0f} s")
        if adapter == "binance":
            how = ("spot: WebSocket API and its user data" if market == "spot"
                   else "USDT-M futures: signed REST, user data over a listen key")
            out(f"  (the Binance adapter on BTCUSDT {how})")
        out("  (orders: new orders the strategy sent; canceled: orders a cancel took off the book; "
            "rejects: new orders and cancels refused)")
        portfolio = Portfolio(fee_precision=8)
        marks, fills_seen = {}, set()
        tally = _OrderTally(adapter)
        events = 0
        t0 = time.monotonic()
        next_print = t0 + 1
        from ttquant.core.records import MARKET_EVENT_DTYPE
        buf = np.zeros(1 << 14, MARKET_EVENT_DTYPE)
        while time.monotonic() - t0 < seconds:
            n = ticks.wait_into(buf, timeout=0.05)
            events += n
            for e in buf[:n][buf[:n]["kind"] == 1]:
                marks[(table.venue, int(e["instrument_id"]))] = int(e["price"])
            _drain_exec(exec_reader, tally, portfolio, fills_seen, table)
            if procs["strategy"].poll() is not None:
                out(f"demo: the strategy exited with {procs['strategy'].returncode}: "
                    f"{open(f'{d}/strategy.log').read()[-2000:]}")
                break
            if time.monotonic() >= next_print:
                next_print += 1
                pos = "  ".join(f"{_position_name(p, table)} {_signed_qty(p.qty_raw, p.size_precision)}"
                                for p in portfolio.positions()) or "flat"
                pnl = portfolio.equity(marks) if marks else 0
                out(f"  t={time.monotonic() - t0:4.1f}s  events {events:>7,}  orders {tally.orders:>5}  "
                    f"fills {len(fills_seen):>4}  canceled {tally.ended(OrderStatus.CANCELED):>4}  "
                    f"rejects {tally.reject_count:>4}  position {pos}  pnl {float(pnl):+.4f}")
        strategy_rc = _stop(procs.pop("strategy"))
        time.sleep(0.5)                     # its cancel-all comes back
        _drain_exec(exec_reader, tally, portfolio, fills_seen, table)
        gateway_rc = _stop(procs.pop("gateway"))
        _drain_exec(exec_reader, tally, portfolio, fills_seen, table)   # the ring outlives the gateway
        latency = _tick_to_order(f"{d}/strategy_trace.npy", f"{d}/gateway_trace.npy")
        orders = tally.orders
        try:
            sent = len(np.load(f"{d}/strategy_trace.npy"))     # the strategy's own count of new orders
        except (FileNotFoundError, ValueError):
            sent = orders
        pnl = portfolio.equity(marks) if marks else 0
        out("")
        for p in portfolio.positions():
            avg = f"{float(p.avg_price):.2f}" if p.avg_price is not None else "- (flat)"
            out(f"{_position_name(p, table)}: position {_signed_qty(p.qty_raw, p.size_precision)}, average "
                f"{avg}, realised {float(p.realised):+.4f} (fees {float(p.fees):.4f})")
        for line in tally.summary():
            out(line)
        if sent != orders:
            out(f"  (the strategy sent {sent} new orders; {sent - orders} of them had no report from the "
                f"gateway)")
        out(f"fills {len(fills_seen)}; strategy exit {strategy_rc}, gateway exit {gateway_rc}")
        if latency is not None:
            out(f"tick-to-order (tick in the ring -> order checked by the gateway), {latency['n']} orders: "
                f"p50 {latency['p50']} ns, p99 {latency['p99']} ns, max {latency['max']} ns; p50 of its legs: "
                f"tick to order created {latency['decide_p50']} ns, created to checked {latency['hop_p50']} ns")
        ok = strategy_rc == 0 and gateway_rc == 0 and events > 0
        out(f"demo: events={events} orders={orders} fills={len(fills_seen)} rejects={tally.reject_count} "
            f"pnl={float(pnl):.6f} tick_to_order_p50_ns={latency['p50'] if latency else -1} "
            f"tick_to_order_p99_ns={latency['p99'] if latency else -1}" + (" ok" if ok else " FAILED"))
        return 0 if ok else 1
    finally:
        for p in procs.values():
            _stop(p)
        _unlink_all(name)
        for secret_file in ("venue-keys", "binance.toml"):      # the key's two copies, first
            try:
                os.unlink(os.path.join(d, secret_file))
            except FileNotFoundError:
                pass
        tmp.cleanup()


def _random_key() -> str:
    """64 letters and digits, as Binance issues API keys and HMAC secrets."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64))


def _write_private(path, text):
    """A file only its owner can read, never readable by others even for a moment."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(text)


def _drain_exec(exec_reader, tally, portfolio, fills_seen, table, strategy_id=7):
    """Every exec report waiting in the ring: the strategy's go to the tally, its fills (each once,
    by trade id) to the portfolio."""
    r = exec_reader.poll()
    while r is not None:
        if r.strategy_id == strategy_id:
            tally.on_report(r)
            if r.last_qty and (r.client_order_id, r.trade_id) not in fills_seen:
                fills_seen.add((r.client_order_id, r.trade_id))
                portfolio.on_fill(table[r.instrument_id], r.side, r.last_price, r.last_qty, r.fee)
        r = exec_reader.poll()


def _position_name(p, table) -> str:
    """BTCUSDT spot / BTCUSDT usdm-perp: the symbol alone does not say which leg."""
    market = table[p.instrument_id].market_type
    return f"{p.symbol} {MARKET_LABELS.get(market, MarketType(market).name.lower())}"


def _tick_to_order(strategy_trace, gateway_trace):
    """Per order: the gateway's check time minus the ts_pub of the tick the strategy answered."""
    try:
        st = np.load(strategy_trace)
        gw = np.load(gateway_trace)
    except (FileNotFoundError, ValueError):
        return None
    trigger = {int(c): int(t) for c, t in st if t > 0}
    rows = [(int(checked) - trigger[int(cid)], int(created) - trigger[int(cid)], int(checked) - int(created))
            for sid, cid, created, _taken, checked in gw if int(cid) in trigger]
    if not rows:
        return None
    lat, decide, hop = (np.array(col, dtype=np.int64) for col in zip(*rows))
    return {"n": len(lat), "p50": int(np.percentile(lat, 50)), "p99": int(np.percentile(lat, 99)),
            "max": int(lat.max()), "samples": lat,
            "decide_p50": int(np.percentile(decide, 50)), "hop_p50": int(np.percentile(hop, 50))}


def _unlink_all(name):
    for path in stack_entries(name):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
