"""The gateway with the Binance adapter as a whole trading system, on real processes against the
simulated venue (venue-sim's signed order entry, md, gateway; ttq_binance_stack): every order type
the gateway sends on spot ends in the exec reports it should and the venue's own record agrees; a
gateway SIGKILLed mid-run and started again places nothing twice and loses no fill; an order on a
market the adapter does not trade never reaches the venue; the key shows up nowhere; a credentials
file others can read stops the gateway as a config error (the whole process: exit 2, one line;
tests/core/venues/binance/test_adapter.py checks the adapter's ServiceError itself). Order entry
over the WebSocket API and over REST both, where the adapter has the choice."""
import os
import random
import signal
import time
from decimal import Decimal

import pytest

from ttquant.core.gateway.order_journal import REPORT, OrderJournal
from ttquant.core.records import OrderAction, OrderStatus, OrderType, RejectCode, Side

from ttq_binance_stack import BinanceStack
from ttq_testing import wait_for

S = OrderStatus
TERMINAL = (S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED)
SID = 11                        # TradingStack.order's strategy id
START = {"USDT": 100_000 * 10**8, "BTC": 2 * 10**8}     # BinanceStack's --balances, at 8 decimals
ORDER_ENTRY = ["ws", "rest"]            # [adapter] order_entry: the WebSocket API (default), signed REST


def cid_text(cid):
    return f"t{SID}-{cid}"      # responses.encode_client_order_id: how the venue knows our orders


def raw8(text) -> int:
    return int(Decimal(text).scaleb(8))


def venue_balances(rest) -> dict[str, int]:
    return {b["asset"]: raw8(b["free"]) + raw8(b["locked"]) for b in rest.account()["balances"]}


def expected_balances(fills, inst) -> dict[str, int]:
    """START moved by fills (exec reports or venue trades as (side, price raw, qty raw, fee raw)); fees in the quote."""
    out = dict(START)
    for side, price, qty, fee in fills:
        base = qty * 10**8 // 10**inst.size_precision
        quote = price * qty * 10**8 // 10**(inst.price_precision + inst.size_precision)
        sign = 1 if side == Side.BUY else -1
        out[inst.base] += sign * base
        out[inst.quote] -= sign * quote + fee
    return {a: v for a, v in out.items() if v}


def fills_of(reports, sid=SID):
    return [r for r in reports if r.strategy_id == sid and r.last_qty]


def final(s, cid, timeout=20):
    """The order's last exec report once it has ended."""
    return s.report_for(cid, timeout=timeout) and wait_for(
        lambda: next((r for r in reversed(s.drain()) if r.client_order_id == cid and r.status in TERMINAL), None),
        timeout=timeout, what=f"order {cid} to end")


@pytest.mark.parametrize("order_entry", ORDER_ENTRY)
def test_every_spot_order_type_ends_as_it_should_and_the_venue_agrees(children, venue, tmp_path, order_entry):
    s = BinanceStack(children, venue, tmp_path, order_entry=order_entry)
    rest = None
    try:
        s.wait_ready()
        assert f"Binance spot at {s.rest_url}" in s.gateway_log()
        # the path asked for is the one taken: the WebSocket API connection is named in the log, or never opened
        assert (f"ws://127.0.0.1:{s.port}/ws-api/v3" in s.gateway_log()) == (order_entry == "ws")
        inst, tick = s.spot, s.spot.tick_size
        far = 10_000 * tick                 # 100 USDT off the touch: nothing trades there for a while
        take = 5_000 * tick                 # 50 USDT through the touch: the book md showed may have moved since,
        # and a FOK needs its whole quantity within its price (the capture's top levels are thin)
        # (type, side, price from the touch (bid, ask) as md shows it just before, qty) -> how it ends at once;
        # resting ones are canceled below
        cases = {
            "gtc rests": (OrderType.LIMIT, Side.BUY, lambda b, a: b - far, "0.001", S.ACCEPTED),
            "gtc takes": (OrderType.LIMIT, Side.BUY, lambda b, a: a + take, "0.001", S.FILLED),
            "ioc takes": (OrderType.IOC, Side.SELL, lambda b, a: b - take, "0.001", S.FILLED),
            "ioc misses": (OrderType.IOC, Side.BUY, lambda b, a: b - far, "0.001", S.EXPIRED),
            "fok takes": (OrderType.FOK, Side.BUY, lambda b, a: a + take, "0.002", S.FILLED),
            "fok misses": (OrderType.FOK, Side.SELL, lambda b, a: a + far, "0.001", S.EXPIRED),
            "market buys": (OrderType.MARKET, Side.BUY, None, "0.001", S.FILLED),
            "market sells": (OrderType.MARKET, Side.SELL, None, "0.003", S.FILLED),
            "post-only rests": (OrderType.POST_ONLY, Side.SELL, lambda b, a: a + far, "0.001", S.ACCEPTED),
            "post-only would take": (OrderType.POST_ONLY, Side.BUY, lambda b, a: a + take, "0.001", S.REJECTED),
        }
        sent = {}
        for name, (kind, side, price_of, qty, _) in cases.items():
            # the touch again for each: the replay moves on while the orders before it end
            sent[name] = s.order(inst, side, price_of(*s.touch(inst)) if price_of else None, qty=qty, order_type=kind)
            if cases[name][4] == S.ACCEPTED:
                s.report_for(sent[name].client_order_id, S.ACCEPTED)
            else:
                final(s, sent[name].client_order_id)
        rest = s.rest()
        # the resting two are on the venue's book, at their price, ours by client order id
        open_at_venue = {o["clientOrderId"]: o for o in rest.open_orders("BTCUSDT")}
        resting = [n for n, c in cases.items() if c[4] == S.ACCEPTED]
        assert set(open_at_venue) == {cid_text(sent[n].client_order_id) for n in resting}
        for n in resting:
            o = open_at_venue[cid_text(sent[n].client_order_id)]
            assert (inst.price_to_raw(o["price"]), o["status"]) == (sent[n].price, "NEW")
            s.cancel(sent[n].client_order_id)
            assert final(s, sent[n].client_order_id).status == S.CANCELED
        wait_for(lambda: not rest.open_orders("BTCUSDT"), timeout=10, what="the venue's book without our orders")

        s.drain()
        last = {n: [r for r in s.reports if r.client_order_id == o.client_order_id][-1] for n, o in sent.items()}
        for name, (*_, ends) in cases.items():
            r = last[name]
            want = S.CANCELED if ends == S.ACCEPTED else ends
            assert r.status == want, (name, r)
        # the venue's -2010 "Order would immediately match and take" (errors.py: a LIMIT_MAKER that would cross)
        assert last["post-only would take"].reject_code == RejectCode.BAD_PRICE
        assert rest.order_status("BTCUSDT", SID, sent["post-only would take"].client_order_id) is None

        # the venue's record: each order's status and executed quantity, and its trades, by trade id
        venue_status = {"FILLED": S.FILLED, "CANCELED": S.CANCELED, "EXPIRED": S.EXPIRED}
        trades = {t["id"]: t for t in s.our_trades(rest)}
        fills = fills_of(s.reports)
        assert len({f.trade_id for f in fills}) == len(fills)            # each fill once
        assert {f.trade_id for f in fills} == set(trades)
        for name, o in sent.items():
            if name == "post-only would take":
                continue
            body = rest.order_status("BTCUSDT", SID, o.client_order_id)
            assert venue_status[body["status"]] == last[name].status, (name, body)
            assert inst.qty_to_raw(body["executedQty"]) == last[name].cum_qty, (name, body)
            mine = [f for f in fills if f.client_order_id == o.client_order_id]
            assert sorted(f.trade_id for f in mine) == sorted(
                t["id"] for t in trades.values() if t["clientOrderId"] == cid_text(o.client_order_id))
        for f in fills:
            t = trades[f.trade_id]
            assert (inst.price_to_raw(t["price"]), inst.qty_to_raw(t["qty"]), raw8(t["commission"]),
                    Side.BUY if t["isBuyer"] else Side.SELL) == (f.last_price, f.last_qty, f.fee, f.side)
        assert {n for n, c in cases.items() if c[4] == S.FILLED} == {
            n for n, o in sent.items() if any(f.client_order_id == o.client_order_id for f in fills)}
        # and the account moved by exactly what the exec reports said, fees included
        assert venue_balances(rest) == expected_balances(
            [(f.side, f.last_price, f.last_qty, f.fee) for f in fills], inst)
        assert s.stop_gateway() == 0
        assert "Traceback" not in s.gateway_log() + open(s.sim_log).read()
    finally:
        if rest is not None:
            rest.close()
        s.close()


def test_an_order_on_a_market_the_adapter_does_not_trade_never_reaches_the_venue(children, venue, tmp_path):
    """md carries the USDT-M perpetual too, under the same symbol; the adapter trades spot only, so an
    order on the perpetual must be refused, not placed as a spot order of the same symbol."""
    s = BinanceStack(children, venue, tmp_path)
    try:
        s.wait_ready()
        bid, ask = s.touch(s.perp)
        o = s.order(s.perp, Side.BUY, ask + 50 * s.perp.tick_size, qty="0.002", order_type=OrderType.IOC)
        r = final(s, o.client_order_id)
        assert (r.status, r.last_qty) == (S.REJECTED, 0), r
        assert not [x for x in s.venue_record()["orders"] if x["clientOrderId"] == cid_text(o.client_order_id)]
    finally:
        s.close()


def test_the_gateway_sends_no_faster_than_the_venues_own_order_limit(children, venue, tmp_path):
    """The risk file allows 1000 orders/s; the venue (its exchangeInfo) 20 per 10 s: the gateway's token
    bucket takes the venue's, so a burst is refused by the gateway (RATE_LIMIT) and the venue never says 429."""
    s = BinanceStack(children, venue, tmp_path, venue_args=("--orders-10s", "20"))
    try:
        s.wait_ready()
        assert "is over what the venue allows" in s.gateway_log()
        bid, _ = s.touch(s.spot)
        price = bid * 97 // 100 // s.spot.tick_size * s.spot.tick_size     # an IOC there expires at once
        sent = [s.order(s.spot, Side.BUY, price, order_type=OrderType.IOC) for _ in range(30)]
        ends = [final(s, o.client_order_id) for o in sent]
        refused = [r for r in ends if r.status == S.REJECTED]
        assert {r.reject_code for r in refused} == {RejectCode.RATE_LIMIT}, ends
        placed = [x for x in s.venue_record()["orders"] if x["clientOrderId"].startswith(f"t{SID}-")]
        # what the venue took is what the gateway let through, all within the venue's limit: nothing met a 429
        assert len(placed) == len(ends) - len(refused) and 0 < len(placed) <= 20, (len(placed), len(refused))
        assert all(x["status"] == "EXPIRED" for x in placed)
    finally:
        s.close()


def test_a_418_stops_order_entry_and_the_gateway_says_so_for_the_alert(children, venue, tmp_path):
    """The venue bans the account's IP (418): that order is rejected, every later one too without a request
    to the venue, the log says it at ERROR, and the gateway's telemetry raises venue_halted (the alert's)."""
    import urllib.request

    from ttquant.core.rings.names import telemetry_segment
    from ttquant.core.telemetry.telemetry import read_telemetry

    def venue_halted():
        series = read_telemetry(telemetry_segment(venue, "gateway"))["series"]
        return next(x["value"] for x in series if x["name"] == "venue_halted")

    s = BinanceStack(children, venue, tmp_path)
    try:
        s.wait_ready()
        wait_for(lambda: venue_halted() == 0, timeout=10, what="the gateway's telemetry")
        bid, _ = s.touch(s.spot)
        urllib.request.urlopen(f"http://127.0.0.1:{s.port}/_sim/fault?kind=ban&seconds=120", timeout=10).read()
        first = s.order(s.spot, Side.BUY, bid * 97 // 100 // s.spot.tick_size * s.spot.tick_size,
                        order_type=OrderType.IOC)
        assert final(s, first.client_order_id).status == S.REJECTED
        later = s.order(s.spot, Side.BUY, bid * 97 // 100 // s.spot.tick_size * s.spot.tick_size,
                        order_type=OrderType.IOC)
        r = final(s, later.client_order_id)
        assert (r.status, r.reject_code) == (S.REJECTED, RejectCode.VENUE_UNAVAILABLE), r
        wait_for(lambda: venue_halted() == 1, timeout=10, what="venue_halted in the gateway's telemetry")
        assert "ERROR" in s.gateway_log() and "418" in s.gateway_log()
        mine = [x for x in s.venue_record()["orders"] if x["clientOrderId"].startswith(f"t{SID}-")]
        assert mine == []                   # banned: the venue placed nothing
    finally:
        s.close()


def _journal_fills(path):
    j = OrderJournal(str(path), "binance")
    try:
        return [r for kind, r in j.entries() if kind == REPORT and r.strategy_id == SID and r.last_qty]
    finally:
        j.close()


@pytest.mark.parametrize("order_entry", ORDER_ENTRY)
def test_sigkill_mid_run_then_restart_places_nothing_twice_and_loses_no_fill(children, venue, tmp_path,
                                                                             order_entry):
    rng = random.Random(20261205)
    s = BinanceStack(children, venue, tmp_path, speed="8", order_entry=order_entry)
    rest = None
    try:
        s.wait_ready()
        inst, tick = s.spot, s.spot.tick_size
        start = time.monotonic()
        kills = [4.0, 9.0, 13.0]
        restarts = sent = 0
        cids = []
        while time.monotonic() - start < 16:
            if kills and time.monotonic() - start > kills[0]:
                kills.pop(0)
                s.gateway.send_signal(signal.SIGKILL)       # whatever it was doing: sending, answering, journaling
                s.gateway.wait(timeout=10)
                s.start_gateway()
                restarts += 1
                s.wait_ready(timeout=60)
            bid, ask = s.touch(inst)
            kind = rng.random()
            side = rng.choice((Side.BUY, Side.SELL))
            if kind < 0.55:                                  # rests at the touch: the replayed book fills it later
                o = s.order(inst, side, bid if side == Side.BUY else ask, qty=rng.choice(("0.001", "0.002", "0.005")))
            elif kind < 0.85:                                # takes now
                o = s.order(inst, side, ask + 5 * tick if side == Side.BUY else bid - 5 * tick, qty="0.001",
                            order_type=OrderType.IOC)
            else:
                o = None
                s.cancel(0, inst=inst, action=OrderAction.CANCEL_ALL)
            if o is not None:
                cids.append(o.client_order_id)
                sent += 1
            s.drain()
            time.sleep(0.25)            # ~4 orders a second: under the 50 per 10 s the venue's exchangeInfo allows
        assert restarts == 3 and sent > 20
        rest = s.rest()
        s.cancel(0, inst=inst, action=OrderAction.CANCEL_ALL)
        wait_for(lambda: not [o for o in rest.open_orders("BTCUSDT") if o["clientOrderId"].startswith(f"t{SID}-")],
                 timeout=30, what="every order of the strategy closed on the venue")
        # once more mid-run, then started: what the venue did since is reconciled from its own record
        s.gateway.send_signal(signal.SIGKILL)
        s.gateway.wait(timeout=10)
        s.start_gateway()
        s.wait_ready(timeout=60)
        time.sleep(0.5)
        s.drain()

        # no order placed twice: the venue's record has each client order id once, and only ours
        record = s.venue_record()
        placed = [o["clientOrderId"] for o in record["orders"]]
        assert len(placed) == len(set(placed)) and set(placed) <= {cid_text(c) for c in cids}
        trades = [t for t in s.our_trades(rest) if t["clientOrderId"].startswith(f"t{SID}-")]
        assert len(trades) > 10, len(trades)
        assert any(t["isMaker"] for t in trades)        # resting orders the replayed book filled later
        assert {t["id"] for t in trades} == {t["id"] for t in record["trades"]}
        # each order id of a trade belongs to one client order id, and each client order id to one order id
        order_of = {}
        for t in trades:
            assert order_of.setdefault(t["clientOrderId"], t["orderId"]) == t["orderId"], t

        # every order the venue has of ours ended here as it did there, with the quantity it executed
        last = {}
        for r in s.reports:
            if r.strategy_id == SID and r.status not in (S.POSITION, S.SYNCED):
                last[cid_text(r.client_order_id)] = r
        venue_status = {"FILLED": S.FILLED, "CANCELED": S.CANCELED, "EXPIRED": S.EXPIRED}
        for o in record["orders"]:
            r = last[o["clientOrderId"]]
            assert (r.status, r.cum_qty) == (venue_status[o["status"]], inst.qty_to_raw(o["executedQty"])), (o, r)
        # no fill lost, none made up: the exec ring has every venue trade of ours (a kill between publishing
        # and journaling a report publishes it again after the restart: at most one per kill)
        fills = fills_of(s.reports)
        venue_trades = {t["id"]: t for t in trades}
        assert {f.trade_id for f in fills} == set(venue_trades), (len(fills), len(venue_trades))
        assert len(fills) - len({f.trade_id for f in fills}) <= restarts + 1
        for f in fills:
            t = venue_trades[f.trade_id]
            assert (cid_text(f.client_order_id), f.last_qty, f.last_price) == (
                t["clientOrderId"], inst.qty_to_raw(t["qty"]), inst.price_to_raw(t["price"]))
        # positions and balances agree: the strategy's (from its fills) and the venue's account
        once = {f.trade_id: f for f in fills}.values()
        position = sum(f.last_qty if f.side == Side.BUY else -f.last_qty for f in once)
        venue_position = sum(inst.qty_to_raw(t["qty"]) * (1 if t["isBuyer"] else -1) for t in trades)
        assert position == venue_position
        balances = venue_balances(rest)
        assert balances == expected_balances(
            [(Side.BUY if t["isBuyer"] else Side.SELL, inst.price_to_raw(t["price"]), inst.qty_to_raw(t["qty"]),
              raw8(t["commission"])) for t in trades], inst)
        assert _logged_balances(s.gateway_log()) == balances        # the gateway took them at its last start

        assert s.stop_gateway() == 0
        logs = "".join(s.gateway_log(i) for i in range(len(s.gw_logs)))
        assert logs.count("ready:") == restarts + 2
        # the order journal has every venue trade of ours exactly once
        journaled = _journal_fills(s.dir / "orders.journal")
        assert sorted(r.trade_id for r in journaled) == sorted(venue_trades)
    finally:
        if rest is not None:
            rest.close()
        s.close()


@pytest.mark.parametrize("order_entry", ORDER_ENTRY)
def test_sigkill_on_futures_places_nothing_twice_and_loses_no_fill(children, venue, tmp_path, order_entry):
    """The same on USDT-M futures (the futures WebSocket API or signed REST, user data over a listen key):
    SIGKILLed twice while orders rest and take; the venue's own record and the journal agree, the position too."""
    rng = random.Random(20261206)
    s = BinanceStack(children, venue, tmp_path, speed="8", market="usdm", order_entry=order_entry)
    try:
        s.wait_ready()
        wait_for(lambda: "connected to ws://" in s.gateway_log() or order_entry == "rest", timeout=10,
                 what="the futures WebSocket API connected")
        assert (f"ws://127.0.0.1:{s.port}/ws-fapi/v1" in s.gateway_log()) == (order_entry == "ws")
        inst, tick = s.perp, s.perp.tick_size
        start, kills, cids = time.monotonic(), [4.0, 8.0], []
        while time.monotonic() - start < 11:
            if kills and time.monotonic() - start > kills[0]:
                kills.pop(0)
                s.gateway.send_signal(signal.SIGKILL)
                s.gateway.wait(timeout=10)
                s.start_gateway()
                s.wait_ready(timeout=60)
            bid, ask = s.touch(inst)
            side = rng.choice((Side.BUY, Side.SELL))
            if rng.random() < 0.6:                           # rests at the touch: the replayed book fills it later
                o = s.order(inst, side, bid if side == Side.BUY else ask, qty="0.002")
            else:                                            # takes now
                o = s.order(inst, side, ask + 500 * tick if side == Side.BUY else bid - 500 * tick, qty="0.002",
                            order_type=OrderType.IOC)
            cids.append(o.client_order_id)
            s.drain()
            time.sleep(0.25)
        s.cancel(0, inst=inst, action=OrderAction.CANCEL_ALL)
        ours = lambda: [o for o in s.venue_record()["orders"]           # noqa: E731
                        if o["market"] == "usdm" and o["clientOrderId"].startswith(f"t{SID}-")]
        wait_for(lambda: all(o["status"] in ("FILLED", "CANCELED", "EXPIRED") for o in ours()), timeout=30,
                 what="every futures order of the strategy closed on the venue")
        s.gateway.send_signal(signal.SIGKILL)               # and once more, then started: reconciled at start
        s.gateway.wait(timeout=10)
        s.start_gateway()
        s.wait_ready(timeout=60)
        time.sleep(0.5)
        s.drain()
        record = s.venue_record()
        placed = ours()
        assert len(placed) == len({o["clientOrderId"] for o in placed}) and \
            {o["clientOrderId"] for o in placed} <= {cid_text(c) for c in cids}
        client_of = {o["orderId"]: o["clientOrderId"] for o in placed}
        trades = {t["id"]: t for t in record["trades"] if t["market"] == "usdm" and t["orderId"] in client_of}
        assert len(trades) > 5 and any(t["isMaker"] for t in trades.values()), len(trades)
        last = {cid_text(r.client_order_id): r for r in s.reports
                if r.strategy_id == SID and r.status not in (S.POSITION, S.SYNCED)}
        venue_status = {"FILLED": S.FILLED, "CANCELED": S.CANCELED, "EXPIRED": S.EXPIRED}
        for o in placed:
            r = last[o["clientOrderId"]]
            assert (r.status, r.cum_qty) == (venue_status[o["status"]], inst.qty_to_raw(o["executedQty"])), (o, r)
        fills = fills_of(s.reports)
        assert {f.trade_id for f in fills} == set(trades)
        once = {f.trade_id: f for f in fills}.values()
        sides = {o["orderId"]: 1 if o["side"] == "BUY" else -1 for o in placed}
        assert sum(f.last_qty if f.side == Side.BUY else -f.last_qty for f in once) == \
            sum(inst.qty_to_raw(t["qty"]) * sides[t["orderId"]] for t in trades.values())
        assert s.stop_gateway() == 0
        assert sorted(r.trade_id for r in _journal_fills(s.dir / "orders.journal")) == sorted(trades)
    finally:
        s.close()


def _logged_balances(log):
    """{asset: raw} from the gateway's last 'balances from the venue:' line."""
    line = [x for x in log.splitlines() if "balances from the venue:" in x][-1]
    return {asset: raw8(amount) for asset, amount, *_ in
            (item.split() for item in line.split("balances from the venue:")[1].split(","))}


def _proc(pid, what) -> bytes:
    with open(f"/proc/{pid}/{what}", "rb") as f:
        return f.read()


@pytest.mark.parametrize("key_type", ["hmac", "ed25519"])
def test_the_key_shows_up_nowhere_after_a_whole_run(children, venue, tmp_path, key_type):
    s = BinanceStack(children, venue, tmp_path, key_type=key_type)
    seen = {}
    try:
        s.wait_ready()
        inst, tick = s.spot, s.spot.tick_size

        def trade_a_little():
            bid, ask = s.touch(inst)
            taker = s.order(inst, Side.BUY, ask + 500 * tick, qty="0.001", order_type=OrderType.IOC)
            resting = s.order(inst, Side.SELL, ask + 10_000 * tick, qty="0.001")
            refused = s.order(inst, Side.BUY, ask + 500 * tick, qty="0.001", order_type=OrderType.POST_ONLY)
            assert final(s, taker.client_order_id).cum_qty
            assert final(s, refused.client_order_id).status == S.REJECTED
            s.report_for(resting.client_order_id, S.ACCEPTED)
            return resting

        resting = trade_a_little()
        seen["gateway 0 environ"] = _proc(s.gateway.pid, "environ")
        seen["gateway 0 cmdline"] = _proc(s.gateway.pid, "cmdline")
        # the process holding the key writes no core file (and is not dumpable: process.keep_out_of_dumps)
        limits = _proc(s.gateway.pid, "limits").decode()
        assert [line.split()[4:6] for line in limits.splitlines() if line.startswith("Max core file size")] == \
            [["0", "0"]], limits
        s.gateway.send_signal(signal.SIGHUP)                 # a risk reload: an audit entry in the journal
        wait_for(lambda: "risk limits reloaded" in s.gateway_log(), timeout=20, what="the risk reload")
        s.gateway.send_signal(signal.SIGKILL)
        s.gateway.wait(timeout=10)
        s.start_gateway()
        s.wait_ready()
        s.cancel(resting.client_order_id)
        assert final(s, resting.client_order_id).status == S.CANCELED
        trade_a_little()
        seen["gateway 1 environ"] = _proc(s.gateway.pid, "environ")
        seen["gateway 1 cmdline"] = _proc(s.gateway.pid, "cmdline")
        assert s.stop_gateway() == 0
        s.drain()
        assert len(fills_of(s.reports)) >= 2

        secret_files = {s.keys_path, s.credentials_path}
        for path in sorted(tmp_path.rglob("*")):             # logs, configs, the order (and audit) journal
            if path.is_file() and path not in secret_files:
                seen[str(path)] = path.read_bytes()
        assert {"venue-sim.log", "gateway0.log", "gateway1.log", "orders.journal"} <= {
            os.path.basename(p) for p in seen}
        segments = [e for e in os.listdir("/dev/shm") if e.startswith(f"ttq.{venue}.")]
        assert len(segments) >= 5, segments                 # ticks, books, exec, the order ring, ...
        for entry in segments:
            with open(f"/dev/shm/{entry}", "rb") as f:
                seen[f"/dev/shm/{entry}"] = f.read()
        forms = s.secret_forms()
        # the key is there to be found where it belongs: the search would see it
        creds = s.credentials_path.read_bytes()
        assert forms["api key"] in creds and (forms["secret 0"] in creds)
        found = [(where, name) for where, data in seen.items() for name, form in forms.items() if form in data]
        assert not found, found
    finally:
        s.close()


def test_a_credentials_file_others_can_read_stops_the_gateway_with_exit_2(children, venue, tmp_path):
    s = BinanceStack(children, venue, tmp_path)
    try:
        s.wait_ready()
        assert s.stop_gateway() == 0
        s.credentials_path.chmod(0o644)
        s.start_gateway()
        assert s.gateway.wait(timeout=60) == 2
        log = s.gateway_log()
        said = [line for line in log.splitlines() if "adapter.credentials" in line]
        assert len(said) == 1, log
        assert str(s.credentials_path) in said[0] and "0644" in said[0], said
        assert "Traceback" not in log
        assert not [name for name, form in s.secret_forms().items() if form.decode(errors="replace") in log]
    finally:
        s.close()
