"""`ttquant demo` at the spine stage: moves ticks and orders across processes and says so."""
import subprocess

from ttquant.core.rings import list_segments


def test_demo_moves_ticks_and_orders_and_cleans_up(venue, children):
    proc = children.start("-m", "ttquant.core.cli", "rings", "demo", "--seconds", "3", "--venue", venue,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    out, err = out.decode(), err.decode()
    assert proc.returncode == 0, out + err
    last = out.strip().splitlines()[-1]
    assert last.startswith("demo: ") and last.endswith(" ok"), out
    fields = dict(kv.split("=") for kv in last.split()[1:-1])
    assert int(fields["ticks"]) > 10_000
    assert int(fields["orders"]) > 100 and fields["orders"] == fields["orders_received"]
    assert int(fields["slow_reader_laps"]) > 0
    assert 0 < int(fields["tick_hop_p50_ns"]) <= int(fields["tick_hop_p99_ns"])
    assert not [n for n in list_segments() if n.startswith(f"/ttq.{venue}.")]
