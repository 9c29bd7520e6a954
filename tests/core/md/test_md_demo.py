"""`ttquant demo` at the md stage: venue, md daemon and reader run and end cleanly."""
import subprocess

from ttquant.core.rings import list_segments


def test_md_demo_runs_and_cleans_up(children):
    proc = children.start("-m", "ttquant.core.cli", "demo", "--md-only", "--seconds", "4", "--speed", "3",
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=180)
    out = out.decode()
    assert proc.returncode == 0, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("demo: ") and last.endswith(" ok"), out[-3000:]
    fields = dict(kv.split("=") for kv in last.split()[1:-1])
    assert int(fields["trades"]) > 0 and fields["books_synced"] == "2/2"
    assert fields["gaps"] == "0" and fields["drops"] == "0"
    assert "BTCUSDT spot" in out and "BTCUSDT linear_perpetual" in out
    # its own segments, /ttq.demo<its pid>.*, are gone (other test sessions' come and go meanwhile)
    assert not [n for n in list_segments() if n.startswith(f"/ttq.demo{proc.pid}.")]


def test_md_demo_without_captures_uses_the_synthetic_market(children, tmp_path):
    proc = children.start("-m", "ttquant.core.cli", "demo", "--md-only", "--seconds", "3", "--speed", "3",
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={"TTQ_SAMPLE_DATA": str(tmp_path)})
    out, _ = proc.communicate(timeout=180)
    out = out.decode()
    assert proc.returncode == 0, out[-3000:]
    assert "using the synthetic market" in out and "synthetic random-walk market" in out
    assert out.strip().splitlines()[-1].endswith(" ok"), out[-3000:]
