"""`ttquant demo`: the whole trading path runs on the embedded default, trades, reports the
machine-readable line, and leaves nothing behind; its numbers are one count, said in words."""
import os
import re
import stat
import subprocess
from types import SimpleNamespace

from ttquant.core.instruments import MarketType
from ttquant.core.records import ExecReport, OrderStatus, OrderType, RejectCode
from ttquant.core.rings import list_segments
from ttquant.core.trading_demo import _OrderTally, _position_name, _signed_qty

from ttq_testing import wait_for

S = OrderStatus
KEYS = {"events", "orders", "fills", "rejects", "pnl", "tick_to_order_p50_ns", "tick_to_order_p99_ns"}


def _run(children, *args, env=None, while_running=None):
    proc = children.start("-m", "ttquant.core.cli", "demo", *args,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if while_running is not None:
        while_running(proc)
    out, _ = proc.communicate(timeout=240)
    out = out.decode()
    assert proc.returncode == 0, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("demo: events=") and last.endswith(" ok"), out[-3000:]
    fields = dict(kv.split("=") for kv in last.split()[1:-1])
    assert set(fields) == KEYS
    assert "E-" not in out and "E+" not in out, out[-3000:]         # no Decimal exponent anywhere
    # the demo names its segments /ttq.demo<its pid>.*: none may be left (other tests' may come and go)
    assert not [n for n in list_segments() if n.startswith(f"/ttq.demo{proc.pid}.")]
    return out, {k: (float(v) if k == "pnl" else int(v)) for k, v in fields.items()}


def _one_count(out, fields):
    """The per-second lines, the summary and the last line count orders and rejects alike."""
    m = re.search(r"^orders: (\d+) new orders sent: (\d+) filled, (\d+) canceled, (\d+) expired .*?, "
                  r"(\d+) rejected, (\d+) open at the end$", out, re.M)
    assert m, out[-3000:]
    orders, *outcomes = map(int, m.groups())
    assert orders == fields["orders"] == sum(outcomes)
    seconds = re.findall(r"^  t=.* orders +(\d+) +fills +(\d+) +canceled +(\d+) +rejects +(\d+) ", out, re.M)
    seconds = [tuple(map(int, t)) for t in seconds]
    assert seconds and all(x <= y for a, b in zip(seconds, seconds[1:]) for x, y in zip(a, b))   # only grow
    assert seconds[-1][0] <= orders and seconds[-1][3] <= fields["rejects"]
    assert int(re.search(r"^rejects: (\d+)", out, re.M).group(1)) == fields["rejects"]
    by_reason = re.findall(r"^  (.+) \[([A-Z_]+)\]: (\d+)", out, re.M)
    assert sum(int(n) for *_, n in by_reason) == fields["rejects"]
    assert all(name in RejectCode.__members__ for _, name, _ in by_reason)
    return by_reason


def test_the_trading_demo_runs_trades_and_cleans_up(children):
    out, fields = _run(children, "--seconds", "12", "--speed", "4")
    assert fields["events"] > 1000 and fields["orders"] > 5 and fields["fills"] > 0, fields
    assert 0 < fields["tick_to_order_p50_ns"] <= fields["tick_to_order_p99_ns"]
    assert "tick-to-order" in out and "strategy exit 0, gateway exit 0" in out
    # the market maker's post-only quotes are refused when the book moved onto them: said in words
    for reason, name, _ in _one_count(out, fields):
        if name == "VENUE":
            assert reason == "post-only would cross"
            assert "rather than let it take liquidity" in " ".join(out.split())
    assert re.search(r"^BTCUSDT usdm-perp: position (0|[+-]0\.\d+), ", out, re.M), out[-3000:]


def test_spread_arb_names_each_leg_by_market(children):
    out, fields = _run(children, "--seconds", "10", "--speed", "4", "--strategy", "spread_arb")
    assert fields["fills"] > 0, out[-3000:]
    _one_count(out, fields)
    for market in ("spot", "usdm-perp"):      # both legs, each by its market, zero as 0
        assert re.search(rf"^BTCUSDT {market}: position (0|[+-]0\.\d*[1-9]), ", out, re.M), out[-3000:]
    assert re.search(r"position BTCUSDT spot (0|[+-]0\.\d+)  BTCUSDT usdm-perp (0|[+-]0\.\d+)  pnl", out)


def test_the_demo_with_the_binance_adapter_trades_spot_with_a_key_of_its_own_then_removes_it(children, tmp_path):
    key_files = {}

    def look_at_the_key(proc):
        """The venue's copy of the key and the gateway's credentials, while the demo runs: each 0600."""
        def found():
            for name in ("venue-keys", "binance.toml"):
                for path in tmp_path.glob(f"ttq-demo-*/{name}"):
                    if path.stat().st_size:
                        key_files[name] = (stat.S_IMODE(path.stat().st_mode), path.read_text())
            return len(key_files) == 2 or proc.poll() is not None
        wait_for(found, timeout=60, interval=0.05, what="the demo's key files")

    out, fields = _run(children, "--seconds", "12", "--speed", "4", "--adapter", "binance", "--strategy", "ema_cross",
                       env={"TMPDIR": str(tmp_path)}, while_running=look_at_the_key)
    assert fields["events"] > 1000 and fields["orders"] > 2 and fields["fills"] > 0, out[-3000:]
    # ema_cross trades the perpetual: the Binance adapter on USDT-M futures, its user data over a listen key
    assert "the Binance adapter on BTCUSDT USDT-M futures: signed REST, user data over a listen key" in out
    assert "strategy exit 0, gateway exit 0" in out
    _one_count(out, fields)
    assert re.search(r"^BTCUSDT usdm-perp: position (0|[+-]0\.\d+), ", out, re.M), out[-3000:]
    assert "BTCUSDT spot:" not in out
    # a key made up for this run, 0600 on both sides, never printed, gone with the demo's directory
    assert {name: mode for name, (mode, _) in key_files.items()} == {"venue-keys": 0o600, "binance.toml": 0o600}
    api_key, kind, secret = key_files["venue-keys"][1].split()
    assert kind == "hmac" and len(secret) == 64 and f'secret = "{secret}"' in key_files["binance.toml"][1]
    assert api_key not in out and secret not in out
    assert os.listdir(tmp_path) == []


def test_the_binance_adapter_demo_refuses_a_strategy_with_a_perpetual_leg(children):
    proc = children.start("-m", "ttquant.core.cli", "demo", "--adapter", "binance", "--strategy", "spread_arb",
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "a Binance gateway trades one market" in out.decode(), out


def _report(cid, status, order_type=OrderType.POST_ONLY, code=0, last_qty=0):
    return ExecReport(client_order_id=cid, strategy_id=7, instrument_id=1, status=status,
                      order_type=order_type, reject_code=code, last_qty=last_qty, cum_qty=last_qty, side=1)


def test_the_tally_counts_each_new_order_once_and_cancels_apart():
    t = _OrderTally()
    for r in [_report(1, S.ACCEPTED), _report(1, S.PARTIALLY_FILLED, last_qty=1),
              _report(1, S.FILLED, last_qty=1),
              _report(2, S.REJECTED, code=RejectCode.VENUE),
              _report(3, S.ACCEPTED), _report(3, S.CANCELED),
              _report(4, S.REJECTED, order_type=0, code=RejectCode.UNKNOWN_ORDER),    # a cancel, refused
              _report(5, S.ACCEPTED, order_type=OrderType.IOC),
              _report(5, S.EXPIRED, order_type=OrderType.IOC),
              _report(6, S.REJECTED, order_type=OrderType.LIMIT, code=RejectCode.POSITION_LIMIT),
              _report(7, S.ACCEPTED),
              _report(3, S.CANCELED)]:                                                  # a late copy
        t.on_report(r)
    assert t.orders == 6 and t.reject_count == 3 and t.cancels_refused == 1
    assert [t.ended(s) for s in (S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED)] == [1, 1, 1, 2]
    text = "\n".join(t.summary())
    assert "orders: 6 new orders sent: 1 filled, 1 canceled, 1 expired" in text
    assert "2 rejected, 1 open at the end\ncancels: 1 orders canceled, 1 cancel requests rejected\n" in text
    assert "rejects: 3 (2 new orders, 1 cancels), by reason:" in text
    assert "  post-only would cross [VENUE]: 1 (17 % of the new orders)\n    A post-only order" in text
    assert "  cancel of an order no longer open [UNKNOWN_ORDER]: 1\n" in text
    assert "  position limit [POSITION_LIMIT]: 1 (17 % of the new orders)" in text


def test_quantities_print_exactly_and_positions_by_market():
    assert [_signed_qty(r, p) for r, p in ((0, 8), (200_000, 8), (-2, 3), (0, 0), (15, 1))] == \
        ["0", "+0.002", "-0.002", "0", "+1.5"]
    table = {1: SimpleNamespace(market_type=MarketType.SPOT),
             2: SimpleNamespace(market_type=MarketType.LINEAR_PERPETUAL)}
    assert _position_name(SimpleNamespace(symbol="BTCUSDT", instrument_id=1), table) == "BTCUSDT spot"
    assert _position_name(SimpleNamespace(symbol="BTCUSDT", instrument_id=2), table) == "BTCUSDT usdm-perp"
