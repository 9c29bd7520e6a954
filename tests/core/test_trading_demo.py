"""`ttquant demo`: the whole trading path runs on the embedded default, trades, reports the
machine-readable line, and leaves nothing behind."""
import subprocess

from ttquant.core.rings import list_segments


def test_the_trading_demo_runs_trades_and_cleans_up(children):
    before = set(list_segments())
    proc = children.start("-m", "ttquant.core.cli", "demo", "--seconds", "12", "--speed", "4",
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=240)
    out = out.decode()
    assert proc.returncode == 0, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("demo: events=") and last.endswith(" ok"), out[-3000:]
    fields = dict(kv.split("=") for kv in last.split()[1:-1])
    assert set(fields) == {"events", "orders", "fills", "rejects", "pnl", "tick_to_order_p50_ns", "tick_to_order_p99_ns"}
    assert int(fields["events"]) > 1000 and int(fields["orders"]) > 5 and int(fields["fills"]) > 0, last
    assert 0 < int(fields["tick_to_order_p50_ns"]) <= int(fields["tick_to_order_p99_ns"])
    assert "tick-to-order" in out and "strategy exit 0, gateway exit 0" in out
    assert set(list_segments()) == before
