"""md's raw-frame recording ([record_frames]): every frame the venue sent and each REST snapshot,
with md's receive time, in gzip files of the public captures' format (what venue-sim replays),
the exchangeInfo beside them; writing never holds up the feed."""
import gzip
import json
import os
import signal
import subprocess

from ttquant.core.md.daemon import read_md_counters
from ttquant.core.md.frame_tee import FrameTee
from ttquant.core.sim.captures import read_hftbacktest

from ttq_testing import md_config, unlink_venue, wait_for


def test_md_tees_every_frame_and_snapshot_into_capture_files(children, venue, tmp_path):
    sim = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--speed", "8",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = int(sim.stdout.readline().decode().split("127.0.0.1:")[1].split()[0])
    config = md_config(tmp_path / "md.toml", venue, port, record_frames={"dir": "frames"})
    log = open(tmp_path / "md.log", "wb")
    md = children.start("-m", "ttquant.core.cli", "md", "binance", "--config", config, stdout=log,
                        stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "ready:" in open(log.name).read(), timeout=60, what="md ready")
        wait_for(lambda: sum(m["trades"] for m in read_md_counters(venue).values()) > 200, timeout=60,
                 what="trades")
        md.send_signal(signal.SIGTERM)
        assert md.wait(timeout=30) == 0
        frames_seen = {m: c["frames"] for m, c in read_md_counters(venue).items()}
    finally:
        unlink_venue(venue)
    files = sorted(os.listdir(tmp_path / "frames"))
    captures = [f for f in files if f.endswith(".frames.gz")]
    assert {f.split("-")[1] for f in captures} == {"spot", "usdm"}
    assert {"binance-spot-exchangeinfo.json", "binance-usdm-exchangeinfo.json"} <= set(files)
    assert json.loads((tmp_path / "frames" / "binance-spot-exchangeinfo.json").read_text())["symbols"]
    for market in ("spot", "usdm"):
        (name,) = [f for f in captures if f.split("-")[1] == market]
        messages = list(read_hftbacktest(tmp_path / "frames" / name))        # the public captures' reader
        stream = [m for m in messages if m.source == "ws"]
        snapshots = [m for m in messages if m.source == "rest:depth"]
        assert len(stream) == frames_seen[market]                           # every frame md counted
        assert snapshots and all(json.loads(s.payload)["lastUpdateId"] for s in snapshots)
        assert all(a.recv_ns <= b.recv_ns for a, b in zip(stream, stream[1:]))
        assert all(json.loads(m.payload)["stream"] for m in stream[:50])


def test_a_disk_that_cannot_keep_up_drops_and_counts_instead_of_waiting(tmp_path):
    tee = FrameTee(str(tmp_path), "binance", "spot", max_queued=10)
    tee._stop.set()                       # the writer thread stopped: nothing drains the queue
    tee._thread.join()
    for k in range(25):
        tee.put(k, b'{"stream":"x","data":{}}')
    assert len(tee.queue) == 10 and tee.dropped == 15
    tee._drain()
    tee.close()
    (name,) = os.listdir(tmp_path)
    with gzip.open(tmp_path / name) as f:
        assert [line.split(b" ", 1)[0] for line in f] == [str(k).encode() for k in range(10)]
