"""`ttquant venue-sim binance --replay FILE|DIR [--loop]` with the real md daemon: a capture given by
path and a directory of two markets replay and md syncs its books; --loop runs past the end and
md re-syncs at every wrap with its books right (tops equal the captured tickers in every pass); the
end of a replay is logged; a file that is not a capture is refused in one line (exit 2); a port in
use in one line (exit 4)."""
import gzip
import itertools
import json
import socket
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest

from ttquant.core.book.book_board import BookBoard
from ttquant.core.md.daemon import read_md_counters
from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, EventKind
from ttquant.core.rings import RingNotFoundError
from ttquant.core.sim.captures import sample_data_dir

from ttq_testing import attach_ticks, md_config, unlink_venue, wait_for

DATA = sample_data_dir() / "binance"
SPOT_STREAMS = ["trade", "bookTicker", "depth@100ms"]
USDM_STREAMS = ["trade", "bookTicker", "depth@0ms"]


def head_of(capture, path, lines):
    """The first `lines` lines of a sample capture, as a gzip file of our own."""
    with gzip.open(DATA / capture, "rb") as src, gzip.open(path, "wb") as out:
        out.writelines(itertools.islice(src, lines))
    return path


class VenueSim:
    """`ttquant venue-sim binance --port 0 ARGS` with its output collected line by line."""

    def __init__(self, children, *args):
        self.proc = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", *args,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.first = self.proc.stdout.readline().decode()
        assert "listening on 127.0.0.1:" in self.first, self.first + self.proc.stdout.read().decode()
        self.port = int(self.first.split("127.0.0.1:")[1].split()[0])
        self.lines = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self):
        try:
            for line in self.proc.stdout:
                self.lines.append(line.decode().rstrip("\n"))
        except (ValueError, OSError):
            pass        # closed at teardown

    def said(self, text):
        return next((line for line in list(self.lines) if text in line), None)

    def status(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_sim/status", timeout=10) as r:
            return json.loads(r.read())


def start_md(children, tmp_path, venue, port, markets):
    config = md_config(tmp_path / "md.toml", venue, port, markets, rings={"tick_capacity": 1 << 20})
    return children.start("-m", "ttquant.core.cli", "md", "binance", "--config", config,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def books_synced(venue, expected):
    try:
        board = BookBoard(f"/ttq.{venue}.books")
    except RingNotFoundError:
        return False
    try:
        ids = board.instruments()
        return len(ids) == expected and all(board.read(i).synced for i in ids)
    finally:
        board.close()


def test_a_capture_file_by_path_replays_and_its_end_is_logged(children, venue, tmp_path):
    capture = head_of("spot_btcusdt_20240808.gz", tmp_path / "capture-a.gz", 2400)     # about 20 s of market
    sim = VenueSim(children, "--replay", capture, "--speed", "10", "--wait-clients", "1")
    assert "(replay of capture-a.gz, speed 10.0)" in sim.first
    md = start_md(children, tmp_path, venue, sim.port, {"spot": (["BTCUSDT"], SPOT_STREAMS)})
    try:
        wait_for(lambda: books_synced(venue, 1), timeout=30, interval=0.05, what="md's book in sync")
        ended = wait_for(lambda: sim.said(f"replay of {capture} ended after 2,399 frames, "), timeout=30,
                         what="the end-of-replay line")
        assert ended.endswith("s of market time; --loop to repeat"), ended
        assert sim.status()["replay_done"] is True
        counters = read_md_counters(venue)["spot"]
        assert counters["book_gaps"] == 0 and counters["depth_updates"] > 100, counters
        assert books_synced(venue, 1)
        assert sim.said("capture-a.gz: spot (depth diffs without pu), 2,399 frames, 1 depth snapshot")
    finally:
        md.terminate()
        md.wait(timeout=20)
        unlink_venue(venue)


def test_a_directory_of_two_markets_replays_both(children, venue, tmp_path):
    head_of("spot_btcusdt_20240808.gz", tmp_path / "binance-spot-20240808.frames.gz", 2400)
    head_of("usdm_btcusdt_20240808.gz", tmp_path / "binance-usdm-20240808.frames.gz", 5000)
    sim = VenueSim(children, "--replay", tmp_path, "--speed", "5", "--wait-clients", "2")
    assert f"(replay of {tmp_path} (2 files, spot and usdm), speed 5.0)" in sim.first
    md = start_md(children, tmp_path, venue, sim.port, {"spot": (["BTCUSDT"], SPOT_STREAMS),
                                                        "usdm": (["BTCUSDT"], USDM_STREAMS)})
    try:
        wait_for(lambda: books_synced(venue, 2), timeout=30, interval=0.05, what="both books in sync")
        wait_for(lambda: all(c["depth_updates"] > 20 and c["trades"] > 20 for c in read_md_counters(venue).values()),
                 timeout=30, what="both markets' frames through md")
        counters = read_md_counters(venue)
        assert set(counters) == {"spot", "usdm"}
        assert all(c["book_gaps"] == 0 for c in counters.values()), counters
    finally:
        md.terminate()
        md.wait(timeout=20)
        unlink_venue(venue)


def test_loop_runs_past_the_end_and_md_resyncs_its_books_at_every_wrap(children, venue, tmp_path):
    capture = head_of("spot_btcusdt_20240808.gz", tmp_path / "short.gz", 1200)      # about 10 s of market
    sim = VenueSim(children, "--replay", capture, "--speed", "4", "--loop")
    md = start_md(children, tmp_path, venue, sim.port, {"spot": (["BTCUSDT"], SPOT_STREAMS)})
    try:
        reader = wait_for(lambda: attach_ticks(venue), timeout=30, what="the tick ring")
        chunks, buf = [], np.zeros(1 << 16, MARKET_EVENT_DTYPE)

        def read():
            while (n := reader.poll_into(buf)):
                chunks.append(buf[:n].copy())

        def wrapped_thrice_and_back_in_sync():
            read()
            return sim.status()["replay_pass"] >= 4 and read_md_counters(venue)["spot"]["connects"] >= 4 \
                and books_synced(venue, 1)
        wait_for(wrapped_thrice_and_back_in_sync, timeout=60, interval=0.05, what="three wraps and md in sync again")
        wait_for(lambda: read() or books_synced(venue, 1) and sim.status()["replay_position"] > 600, timeout=30,
                 what="half a pass more")
        read()
        assert reader.lost == 0
        assert sim.said(f"replay of {capture} ended after 1,199 frames, ") and \
            sim.said("; starting again (pass 2): connections closed, clients re-sync their books")
        counters = read_md_counters(venue)["spot"]
        assert counters["book_gaps"] == 0 and counters["book_snapshots"] >= 3, counters
        lost, spans = _syncs(np.concatenate(chunks))
        # a reset and a new sync a connection, and in each pass the book's top equals the captured
        # bookTicker wherever both reached the same update id
        assert lost >= 4 and len(spans) >= 4, (lost, spans)
        assert sum(compared >= 5 for _, compared in spans) >= 3, spans     # the two whole passes at least
        reader.close()
    finally:
        md.terminate()
        md.wait(timeout=20)
        unlink_venue(venue)


def _syncs(events):
    """md's book in the events, connection by connection: a BOOK_RESET at seq 0 when a connection
    starts it again, a BOOK_RESET at the update id it is in sync from when it is (then its levels).
    Returns (resets at 0, [(in sync from, tickers whose update id the book also reached, and whose
    top they equal)]) for each span from an announcement to the next reset."""
    lost, spans = 0, []
    top, top_at, tickers = None, {}, []

    def close_span():
        if spans and spans[-1][1] is None:
            wrong = [seq for seq, ticker in tickers if seq in top_at and top_at[seq] != ticker]
            assert not wrong, f"the book's top differs from the captured ticker at {wrong[:5]}"
            spans[-1][1] = sum(1 for seq, _ in tickers if seq in top_at)
    for e in events:
        kind, flags, seq = int(e["kind"]), int(e["flags"]), int(e["seq"])
        quote = (int(e["price"]), int(e["qty"]), int(e["ask_price"]), int(e["ask_qty"]))
        if kind == EventKind.BOOK_RESET:
            close_span()
            top, top_at, tickers = None, {}, []
            if seq == 0:
                lost += 1
            else:
                spans.append([seq, None])
        elif kind == EventKind.BBO and flags & EventFlag.FROM_BOOK:
            assert quote[0] < quote[2], f"crossed book at {seq}: {quote}"
            top = top_at[seq] = quote
        elif kind == EventKind.BOOK_LEVEL and flags & EventFlag.LAST_IN_BATCH and top is not None:
            top_at[seq] = top       # a FROM_BOOK BBO with this seq follows when the top moved
        elif kind == EventKind.BBO:
            tickers.append((seq, quote))
    close_span()
    return lost, [tuple(s) for s in spans]


def run_venue_sim(*args):
    return subprocess.run([sys.executable, "-m", "ttquant.core.cli", "venue-sim", "binance", *map(str, args)],
                          capture_output=True, timeout=120)


@pytest.mark.parametrize("body, line", [(b"hello, not a capture\n", 1),
                                        (b'1723161253937085768 {"stream":"btcusdt@trade","data":{"e":"trade"}}\n'
                                         b"17231612539.37085769 {broken\n", 2)])
def test_a_file_that_is_not_a_capture_is_refused_in_one_line(tmp_path, body, line):
    path = tmp_path / "not-a-capture.gz"
    path.write_bytes(body)
    done = run_venue_sim("--port", "0", "--replay", path)
    err = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b"", (done.returncode, done.stdout, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"venue-sim binance: {path}:{line}: "), err


def test_a_port_in_use_is_said_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_venue_sim("--port", port, "--replay", "cryptofeed-spot")
    err = done.stderr.decode()
    assert done.returncode == 4, (done.returncode, err)
    assert err == f"venue-sim binance: 127.0.0.1:{port} is in use (another venue-sim? --port 0 takes a free one)\n"


def test_mds_own_recording_replays_broken_frames_and_all(children, venue, tmp_path):
    """md records what venue-sim sends ([record_frames], broken frames too); venue-sim --replay DIR
    serves the recording to a second md, which syncs both books and counts the same broken frames."""
    sim = VenueSim(children, "--speed", "8", "--wait-clients", "2")
    markets = {"spot": (["BTCUSDT"], SPOT_STREAMS), "usdm": (["BTCUSDT"], USDM_STREAMS)}
    config = md_config(tmp_path / "md.toml", venue, sim.port, markets, record_frames={"dir": "frames"})
    md = children.start("-m", "ttquant.core.cli", "md", "binance", "--config", config,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dropped = lambda counters: {m: sum(v for k, v in c.items() if k.startswith("drop_")) for m, c in counters.items()}
    try:
        wait_for(lambda: books_synced(venue, 2), timeout=30, interval=0.05, what="the recording md in sync")
        with urllib.request.urlopen(f"http://127.0.0.1:{sim.port}/_sim/fault?kind=malformed&count=3", timeout=10):
            pass
        wait_for(lambda: all(n >= 3 for n in dropped(read_md_counters(venue)).values()), timeout=30,
                 what="the broken frames counted")
        wait_for(lambda: all(c["trades"] > 100 for c in read_md_counters(venue).values()), timeout=30,
                 what="trades after them")
        md.terminate()
        assert md.wait(timeout=30) == 0
        recorded = read_md_counters(venue)
    finally:
        unlink_venue(venue)
    replay = VenueSim(children, "--replay", tmp_path / "frames", "--speed", "8", "--wait-clients", "2")
    assert "2 files" not in replay.first and "spot and usdm" in replay.first, replay.first
    (tmp_path / "again").mkdir()
    md2 = start_md(children, tmp_path / "again", venue, replay.port, markets)
    try:
        def replayed():
            st = replay.status()
            try:
                counters = read_md_counters(venue)
            except RingNotFoundError:
                return False
            return st["replay_done"] and sum(c["frames"] for c in counters.values()) >= st["frames_sent"] and counters
        counters = wait_for(replayed, timeout=60, interval=0.05, what="the whole recording through md again")
        assert books_synced(venue, 2)
        assert replay.said("lines are not stream frames (the first, line "), replay.lines
        for market in ("spot", "usdm"):
            assert counters[market]["frames"] == recorded[market]["frames"], (market, counters, recorded)
            assert counters[market]["book_gaps"] == 0
        assert dropped(counters) == dropped(recorded)
    finally:
        md2.terminate()
        md2.wait(timeout=20)
        unlink_venue(venue)
