"""The gateway SIGKILLed at random points while orders rest, fill partly and fill, and started
again each time: the venue's own record shows no order placed twice, every fill the venue made
reaches the strategy (once, by trade id), and the strategy's position equals the venue's; the
venue's balances become the gateway's shadow balances on every start."""
import random
import signal
import time
from decimal import Decimal

from ttquant.core.records import OrderAction, OrderType, RejectCode, Side

from ttq_stack import TradingStack
from ttq_testing import wait_for


def test_sigkill_at_random_points_then_restart_sends_nothing_twice_and_loses_no_fill(children, venue, tmp_path):
    rng = random.Random(20261201)
    s = TradingStack(children, venue, tmp_path, speed="8", venue_args=("--latency-ms", "2"))
    try:
        s.wait_ready()
        inst = s.perp
        lot = "0.001"
        deadline = time.monotonic() + 14
        kills = sorted(rng.uniform(2, 12) for _ in range(3))
        restarts = 0
        sent = 0
        while time.monotonic() < deadline:
            if kills and time.monotonic() > deadline - 14 + kills[0]:
                kills.pop(0)
                s.gateway.send_signal(signal.SIGKILL)       # mid-flight: whatever it was doing
                s.gateway.wait(timeout=10)
                s.start_gateway()
                restarts += 1
                s.wait_ready(timeout=60)
            bid, ask = s.touch(inst)
            tick = inst.tick_size
            kind = rng.random()
            if kind < 0.5:                                   # rests at the touch: queue, then partial fills
                side = rng.choice((Side.BUY, Side.SELL))
                price = bid if side == Side.BUY else ask
                s.order(inst, side, price, qty=rng.choice(("0.001", "0.005", "0.02")))
            elif kind < 0.8:                                 # takes: fills now
                side = rng.choice((Side.BUY, Side.SELL))
                price = ask + 5 * tick if side == Side.BUY else bid - 5 * tick
                s.order(inst, side, price, qty=lot, order_type=OrderType.IOC)
            else:
                s.cancel(0, inst=inst, action=OrderAction.CANCEL_ALL)
            sent += 1
            s.drain()
            time.sleep(0.03)
        assert restarts == 3 and sent > 100
        s.cancel(0, inst=inst, action=OrderAction.CANCEL_ALL)
        wait_for(lambda: not [o for o in s.venue_state()["open"] if o["strategy_id"] == 11], timeout=30,
                 what="every order of the strategy closed on the venue")
        time.sleep(1.0)
        s.drain()
        state = s.venue_state()
        # no order placed twice: the venue saw every client order id it was sent once
        assert state["new_requests"] and max(state["new_requests"].values()) == 1
        assert state["counts"]["duplicates"] == 0
        venue_fills = {f["trade_id"]: f for f in state["fills"] if f["strategy_id"] == 11}
        assert len(venue_fills) > 20
        seen = {}
        for r in s.reports:
            if r.strategy_id == 11 and r.last_qty:
                seen.setdefault(r.trade_id, r)
        # every fill reached the strategy, and nothing it saw is made up
        assert set(seen) == set(venue_fills), (len(seen), len(venue_fills))
        position = sum(r.last_qty if r.side == Side.BUY else -r.last_qty for r in seen.values())
        venue_position = sum(f["qty"] if f["side"] == Side.BUY else -f["qty"] for f in venue_fills.values())
        assert position == venue_position
        # the gateway's own books agree too, after the last restart's reconciliation
        assert s.stop_gateway() == 0
        logs = "".join(s.gateway_log(i) for i in range(len(s.gw_logs)))
        assert logs.count("ready:") == 4
    finally:
        s.close()


def _logged_balances(log):
    """{asset: raw} from the gateway's last 'balances from the venue:' line."""
    line = [x for x in log.splitlines() if "balances from the venue:" in x][-1]
    out = {}
    for item in line.split("balances from the venue:")[1].split(","):
        asset, amount = item.split()[:2]
        out[asset] = int(Decimal(amount).scaleb(8))
    return out


def test_the_venues_balances_are_the_gateways_after_a_restart(children, venue, tmp_path):
    s = TradingStack(children, venue, tmp_path, venue_args=("--balances", "USDT=50000,BTC=2"))
    try:
        s.wait_ready()
        assert _logged_balances(s.gateway_log()) == {"BTC": 2 * 10**8, "USDT": 50_000 * 10**8}   # not risk.toml's
        for _ in range(4):                          # spot takers: BTC in, USDT and fees out
            bid, ask = s.touch(s.spot)
            o = s.order(s.spot, Side.BUY, ask + 5 * s.spot.tick_size, qty="0.01", order_type=OrderType.IOC)
            s.report_for(o.client_order_id)
        wait_for(lambda: len([f for f in s.venue_state()["fills"] if f["strategy_id"] == 11]) >= 4, timeout=30,
                 what="four fills on the venue")
        time.sleep(0.5)
        s.gateway.send_signal(signal.SIGKILL)
        s.gateway.wait(timeout=10)
        s.start_gateway()
        s.wait_ready(timeout=60)
        venue_balances = s.venue_state()["balances"]
        assert venue_balances["BTC"] > 2 * 10**8 and venue_balances["USDT"] < 50_000 * 10**8
        assert _logged_balances(s.gateway_log()) == venue_balances
        # funds are checked against them: risk.toml's 100 BTC no longer count
        bid, ask = s.touch(s.spot)
        o = s.order(s.spot, Side.SELL, bid, qty="2.5")
        assert s.report_for(o.client_order_id).reject_code == RejectCode.INSUFFICIENT_FUNDS
    finally:
        s.close()
