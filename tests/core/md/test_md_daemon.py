"""The md daemon against the simulated venue, both real processes: books synced on the board,
ticks in the ring, every injected fault detected and recovered, clean SIGTERM, SIGKILL + restart."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from ttquant.core.book.book_board import BookBoard
from ttquant.core.md.daemon import read_md_counters
from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, EventKind
from ttquant.core.rings import BroadcastReader, RingNotFoundError

from ttq_testing import attach_ticks, md_config, unlink_venue, wait_for

CLI = [sys.executable, "-m", "ttquant.core.cli"]


@pytest.fixture
def sim_venue(children):
    """A running `ttquant venue-sim binance` at 4x speed; yields (port, fault(kind, **q), status())."""
    proc = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--speed", "4",
                          "--ping-interval", "1", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    line = proc.stdout.readline().decode()
    assert "listening on 127.0.0.1:" in line, line
    port = int(line.split("127.0.0.1:")[1].split()[0])

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def fault(kind, **q):
        query = "&".join(f"{k}={v}" for k, v in {"kind": kind, **q}.items())
        return get(f"/_sim/fault?{query}")

    yield port, fault, lambda: get("/_sim/status")


def write_config(tmp_path, venue, port, tables=None, **connection):
    tables = dict(tables or {})
    tables.setdefault("rings", {})["tick_capacity"] = 262144
    return md_config(tmp_path / "md.toml", venue, port,
                     {"spot": (["BTCUSDT"], None), "usdm": (["BTCUSDT"], ["trade", "bookTicker", "depth@0ms"])},
                     connection={"backoff_initial_s": 0.1, "backoff_max_s": 1.0, **connection}, **tables)


def start_md(children, config):
    return children.start("-m", "ttquant.core.cli", "md", "binance", "--config", config,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env={"TTQ_LOG_LEVEL": "INFO"})


def board_when_ready(venue, timeout=30):
    def ready():
        try:
            board = BookBoard(f"/ttq.{venue}.books")
        except RingNotFoundError:
            return None
        ids = board.instruments()
        if len(ids) == 2 and all(board.read(i).synced for i in ids):
            return board
        board.close()
        return None
    return wait_for(ready, timeout=timeout, interval=0.05, what="both books in sync on the board")


def cleanup(venue):
    unlink_venue(venue)


@pytest.fixture
def md_run(sim_venue, children, venue, tmp_path):
    port, fault, status = sim_venue
    config = write_config(tmp_path, venue, port)
    proc = start_md(children, config)
    yield venue, proc, fault, status, config
    cleanup(venue)


def test_books_sync_ticks_flow_and_sigterm_is_clean(md_run):
    venue, proc, fault, status, _ = md_run
    board = board_when_ready(venue)
    reader = BroadcastReader(f"/ttq.{venue}.ticks", start="oldest")
    wait_for(lambda: read_md_counters(venue)["spot"]["trades"] > 50, timeout=30, what="trades")
    events = np.zeros(200_000, MARKET_EVENT_DTYPE)
    n = reader.poll_into(events)
    events = events[:n]
    kinds = set(events["kind"].tolist())
    assert {EventKind.TRADE, EventKind.BBO, EventKind.BOOK_LEVEL, EventKind.BOOK_RESET} <= kinds
    for inst in board.instruments():
        top = board.read(inst)
        assert len(top.bids) == 20 and len(top.asks) == 20
        assert top.bids[0, 0] < top.asks[0, 0]          # never crossed
    c = read_md_counters(venue)
    for market in ("spot", "usdm"):
        assert c[market]["book_gaps"] == 0 and c[market]["connects"] == 1
        assert not {k: v for k, v in c[market].items() if k.startswith("drop_") and v}
    reader.close()
    board.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.stderr.read().decode()[-3000:]


def test_gap_is_detected_and_the_book_resyncs(md_run):
    venue, proc, fault, status, _ = md_run
    board = board_when_ready(venue)
    fault("gap", market="spot", symbol="BTCUSDT")
    wait_for(lambda: read_md_counters(venue)["spot"]["book_gaps"] >= 1, timeout=30, what="the gap")
    spot_id = board.instruments()[0]
    wait_for(lambda: board.read(spot_id).synced and board.read(spot_id).resets >= 2, timeout=30,
             what="the spot book back in sync")
    assert read_md_counters(venue)["spot"]["book_snapshots"] >= 2
    board.close()


def test_disconnect_reconnects_and_resyncs(md_run):
    venue, proc, fault, status, _ = md_run
    board_when_ready(venue).close()
    t0 = time.monotonic()
    fault("drop")
    wait_for(lambda: all(c["connects"] >= 2 for c in read_md_counters(venue).values()), timeout=30,
             what="both markets reconnected")
    assert time.monotonic() - t0 < 5        # the backoff starts at 100 ms
    board_when_ready(venue).close()
    assert all(c["disconnects"] >= 1 for c in read_md_counters(venue).values())


def test_malformed_frames_are_counted_and_the_feed_goes_on(md_run):
    venue, proc, fault, status, _ = md_run
    board_when_ready(venue).close()
    before = read_md_counters(venue)["spot"]
    fault("malformed", count=5)
    def counted():
        c = read_md_counters(venue)["spot"]
        dropped = sum(v for k, v in c.items() if k.startswith("drop_")) - \
            sum(v for k, v in before.items() if k.startswith("drop_"))
        return dropped >= 5 and c["trades"] > before["trades"] and c
    c = wait_for(counted, timeout=30, what="5 drops and more trades after them")
    assert c["drop_malformed_json"] >= 2 and c["drop_oversized"] >= 1
    fault("malformed", count=200)
    wait_for(lambda: read_md_counters(venue)["spot"]["drop_malformed_json"] >= c["drop_malformed_json"] + 80,
             timeout=30, what="the burst counted")
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    reports = [line for line in proc.stderr.read().decode().splitlines() if "dropped" in line]
    # every drop is reported by reason, at most once a second, however many there are
    assert any("malformed_json" in line and "oversized" in line for line in reports), reports
    assert 1 <= len([r for r in reports if "spot:" in r]) <= 4, reports


def test_refused_connections_back_off_then_recover(md_run):
    """Refused for 4 s: the tries follow the schedule (backoff_initial_s 0.1 doubling to
    backoff_max_s 1.0, each delay jittered down to half), then it connects and resyncs."""
    import re
    venue, proc, fault, status, _ = md_run
    board_when_ready(venue).close()
    fault("refuse", seconds=4)
    fault("drop")
    wait_for(lambda: read_md_counters(venue)["spot"]["connect_failures"] >= 1, timeout=30,
             what="a refused connect")
    wait_for(lambda: all(c["connects"] >= 2 for c in read_md_counters(venue).values()), timeout=30,
             what="connected again once the venue accepts")
    board_when_ready(venue).close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    log = proc.stderr.read().decode()
    for market in ("spot", "usdm"):
        delays = [float(d) for d in re.findall(rf"{market}: (?:disconnected; reconnecting in|connect failed .*?; "
                                              rf"next try in) ([0-9.]+) s", log)]
        assert len(delays) >= 5, (market, delays)       # about 4 s of refusals
        for k, d in enumerate(delays):
            bound = min(0.1 * 2 ** k, 1.0)
            assert 0.5 * bound - 0.01 <= d <= bound + 0.01, (market, k, delays)


def test_sigkill_then_restart_readers_carry_on_with_the_new_epoch(md_run, children):
    venue, proc, fault, status, config = md_run
    board_when_ready(venue).close()
    reader = BroadcastReader(f"/ttq.{venue}.ticks", wait="hybrid")
    epoch = reader.writer_status()["writer_epoch"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    wait_for(lambda: not reader.writer_status()["writer_alive"], what="the writer seen dead")
    log = config.parent / "restarted.log"
    children.start("-m", "ttquant.core.cli", "md", "binance", "--config", config, stdout=subprocess.DEVNULL,
                   stderr=open(log, "wb"))
    status = wait_for(lambda: (st := reader.writer_status())["writer_epoch"] == epoch + 1 and st,
                      timeout=30, what="a new epoch")
    assert status["epoch_changed"] and status["writer_alive"]     # told once, on the first look
    got = wait_for(lambda: reader.wait(timeout=1.0), timeout=30, what="ticks after the restart")
    assert got.instrument_id in (1, 2)
    board_when_ready(venue).close()
    reader.close()
    # a restart takes the table the last run checked, and checks it again in the background
    assert "instruments from the last run's table" in log.read_text()
    wait_for(lambda: all(m["exchange_info_refreshes"] == 1 for m in read_md_counters(venue).values()), timeout=20,
             what="exchangeInfo fetched again after the restart")


def test_bad_config_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[markets.spot]\nsymbols = "BTCUSDT"\n')
    proc = subprocess.run([*CLI, "md", "binance", "--config", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "bad.toml" in proc.stderr and "markets.spot.symbols" in proc.stderr


def test_systemd_notify_ready_after_sync_then_watchdog_and_status(sim_venue, children, venue, tmp_path):
    import socket
    port, fault, status = sim_venue
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    config = write_config(tmp_path, venue, port, {"limits": {"stats_interval_s": 0.5}})
    proc = children.start("-m", "ttquant.core.cli", "md", "binance", "--config", config,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={"NOTIFY_SOCKET": sock_path})
    try:
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ("READY=1" in seen and "WATCHDOG=1" in seen
                                                   and any(m.startswith("STATUS=") for m in seen)):
            msg = sock.recv(4096).decode()
            if msg == "READY=1":
                board = BookBoard(f"/ttq.{venue}.books")      # ready means every book is in sync
                assert all(board.read(i).synced for i in board.instruments()) and len(board.instruments()) == 2
                board.close()
            seen.append(msg)
        assert seen.index("READY=1") < seen.index("WATCHDOG=1")
        status_text = next(m for m in seen if m.startswith("STATUS="))
        assert "spot: connected" in status_text and "books in sync" in status_text and "msg/s" in status_text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        rest = []
        sock.settimeout(0.5)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest
    finally:
        sock.close()
        cleanup(venue)


def test_pings_are_answered(md_run):
    venue, proc, fault, status, _ = md_run
    board_when_ready(venue).close()
    before = status()["pongs"]
    fault("ping")
    wait_for(lambda: status()["pongs"] >= before + 2, timeout=10, what="pongs from both connections")


def test_stalled_venue_without_pings_is_left_and_rejoined(children, venue, tmp_path):
    sim = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--speed", "4",
                         "--ping-interval", "600", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = int(sim.stdout.readline().decode().split("127.0.0.1:")[1].split()[0])
    config = write_config(tmp_path, venue, port, idle_timeout_s=1.0)
    start_md(children, config)
    try:
        board_when_ready(venue).close()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/fault?kind=stall&seconds=3", timeout=10).read()
        wait_for(lambda: all(c["idle_timeouts"] >= 1 for c in read_md_counters(venue).values()), timeout=20,
                 what="the silence noticed on both markets")
        wait_for(lambda: all(c["connects"] >= 2 for c in read_md_counters(venue).values()), timeout=30,
                 what="new connections")
        board_when_ready(venue).close()
    finally:
        cleanup(venue)


def test_threads_are_named_and_pinned_as_configured(sim_venue, children, venue, tmp_path):
    port, fault, status = sim_venue
    config = write_config(tmp_path, venue, port, {"threads": {"ws_cpus": [1], "housekeeping_cpus": [0]}})
    proc = start_md(children, config)
    try:
        board_when_ready(venue).close()
        cpus = {}
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            with open(f"/proc/{proc.pid}/task/{tid}/comm") as f:
                cpus[f.read().strip()] = os.sched_getaffinity(int(tid))
        assert cpus["md-ws"] == {1} and cpus["md-house"] == {0}, cpus
        assert os.sched_getaffinity(proc.pid) == os.sched_getaffinity(0)    # the main thread is left alone
    finally:
        cleanup(venue)


def _capture_ids(market):
    """The capture's trade ids and bookTicker update ids, in order (what the venue sends)."""
    import orjson

    from ttquant.core.sim.captures import read_hftbacktest, sample_data_dir
    trades, tickers = [], []
    for m in read_hftbacktest(sample_data_dir() / "binance" / f"{market}_btcusdt_20240808.gz"):
        if m.source != "ws":
            continue
        doc = orjson.loads(m.payload)
        if doc["stream"].endswith("@trade"):
            trades.append(doc["data"]["t"])
        elif doc["stream"].endswith("@bookTicker"):
            tickers.append(doc["data"]["u"])
    return np.array(trades, np.uint64), np.array(tickers, np.uint64)


def test_connections_roll_over_with_no_gap_and_no_duplicate(sim_venue, children, venue, tmp_path):
    """Connections renewed every 2 s, each successor up and streaming before its predecessor
    closes: the tick ring holds every trade and every ticker the venue sent exactly once, in
    order, and the books never leave sync."""
    from ttquant.core.instruments import InstrumentTable, MarketType, instruments_path
    port, fault, status = sim_venue
    config = write_config(tmp_path, venue, port, max_connection_age_s=2.0, rollover_overlap_s=0.5)
    start_md(children, config)
    try:
        board = board_when_ready(venue)
        resets = {i: board.read(i).resets for i in board.instruments()}
        reader = BroadcastReader(f"/ttq.{venue}.ticks", start="oldest")
        wait_for(lambda: all(c["rollovers"] >= 3 for c in read_md_counters(venue).values()), timeout=40,
                 interval=0.2, what="three rollovers on each market")
        events = np.zeros(1 << 20, MARKET_EVENT_DTYPE)
        events = events[:reader.poll_into(events)]
        assert reader.lost == 0
        c = read_md_counters(venue)
        for market in ("spot", "usdm"):
            m = c[market]
            assert m["book_gaps"] == 0 and m["disconnects"] == 0 and m["rollover_failures"] == 0, m
            assert m["connects"] == 1 + m["rollovers"] and m["duplicates"] > 0, m
        # the books stayed in sync through every rollover: no reset since they first synced
        assert {i: board.read(i).resets for i in board.instruments()} == resets
        assert all(board.read(i).synced for i in board.instruments())
        table = InstrumentTable.load(instruments_path(venue))
        for inst in board.instruments():
            market = "spot" if table[inst].market_type == MarketType.SPOT else "usdm"
            sent_trades, sent_tickers = _capture_ids(market)
            mine = events[events["instrument_id"] == inst]
            for kind, sent in ((EventKind.TRADE, sent_trades), (EventKind.BBO, sent_tickers)):
                sel = mine[(mine["kind"] == kind) & ((mine["flags"] & EventFlag.FROM_BOOK) == 0)]["seq"]
                assert len(sel) > 100, (market, kind)
                lo = int(np.searchsorted(sent, sel[0]))
                expected = sent[lo:lo + len(sel)]
                # exactly the venue's sequence from the first one seen: nothing lost, nothing twice
                assert np.array_equal(sel, expected), (market, kind, np.flatnonzero(sel != expected)[:5])
        board.close()
        reader.close()
    finally:
        cleanup(venue)


def test_a_refused_successor_keeps_the_old_connection_until_a_later_rollover(sim_venue, children, venue, tmp_path):
    port, fault, status = sim_venue
    config = write_config(tmp_path, venue, port, max_connection_age_s=1.0, rollover_overlap_s=0.3,
                          snapshot_retry_s=0.2)
    start_md(children, config)
    try:
        board_when_ready(venue).close()
        fault("refuse", seconds=2.5)
        wait_for(lambda: read_md_counters(venue)["spot"]["rollover_failures"] >= 1, timeout=20,
                 what="a successor refused")
        before = read_md_counters(venue)["spot"]
        wait_for(lambda: read_md_counters(venue)["spot"]["rollovers"] > before["rollovers"], timeout=30,
                 what="a rollover once the venue accepts again")
        c = read_md_counters(venue)
        for m in c.values():
            assert m["disconnects"] == 0 and m["book_gaps"] == 0, m    # the old one carried the stream
        board = board_when_ready(venue)
        assert all(board.read(i).synced for i in board.instruments())
        board.close()
    finally:
        cleanup(venue)


def _watchdog_times(sock, seconds):
    """Monotonic times of the WATCHDOG=1 messages on sock over the next `seconds`."""
    times = []
    deadline = time.monotonic() + seconds
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"WATCHDOG=1":
                times.append(time.monotonic())
        except TimeoutError:
            pass
    return times


@pytest.mark.parametrize("pings", [True, False])
def test_watchdog_goes_on_through_a_quiet_venue_only_while_pings_are_answered(children, venue, tmp_path, pings):
    """A stalled venue that still pings: the md is healthy, WATCHDOG=1 goes on and the connection
    stays. One that sends nothing at all: WATCHDOG=1 stops until frames come again."""
    import socket
    sim = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--speed", "4",
                         "--ping-interval", "0.3" if pings else "600",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = int(sim.stdout.readline().decode().split("127.0.0.1:")[1].split()[0])
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    config = write_config(tmp_path, venue, port, idle_timeout_s=1.5)
    # as systemd's WatchdogSec=0.9s would: WATCHDOG=1 is sent every third of it
    children.start("-m", "ttquant.core.cli", "md", "binance", "--config", config,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "900000"})
    try:
        board_when_ready(venue).close()
        assert len(_watchdog_times(sock, 1.0)) >= 2                # healthy and streaming
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/fault?kind=stall&seconds=4", timeout=10).read()
        stall_start = time.monotonic()
        times = _watchdog_times(sock, 3.5)
        during = [t - stall_start for t in times]
        c = read_md_counters(venue)
        if pings:
            assert max(np.diff([0.0] + during + [3.5])) < 1.0, during      # never quiet for long
            assert all(m["idle_timeouts"] == 0 and m["disconnects"] == 0 for m in c.values()), c
        else:
            assert not [t for t in during if t > 2.0], during              # silent past the idle limit
            assert all(m["idle_timeouts"] >= 1 for m in c.values()), c
            wait_for(lambda: len(_watchdog_times(sock, 0.5)) >= 1, timeout=20, what="WATCHDOG=1 again")
    finally:
        sock.close()
        cleanup(venue)


def test_exchange_info_refresh_updates_filters_and_refuses_a_precision_change(sim_venue, children, venue, tmp_path):
    from ttquant.core.instruments import InstrumentTable, MarketType, instruments_path
    port, fault, status = sim_venue
    config = write_config(tmp_path, venue, port, exchange_info_refresh_s=0.5)
    start_md(children, config)
    try:
        board_when_ready(venue).close()
        spot = lambda: InstrumentTable.load(instruments_path(venue)).by_symbol("BTCUSDT", MarketType.SPOT)
        before = spot()
        assert fault("filter", market="spot", symbol="BTCUSDT", filter="PRICE_FILTER", field="tickSize",
                     value="0.10000000")["ok"] == "filter"
        after = wait_for(lambda: (i := spot()).tick_size != before.tick_size and i, timeout=20,
                         what="the new tick size in the saved table")
        assert after.tick_size == 10 * before.tick_size and after.instrument_id == before.instrument_id
        assert read_md_counters(venue)["spot"]["instrument_updates"] == 1
        fault("filter", market="spot", symbol="BTCUSDT", filter="LOT_SIZE", field="stepSize", value="0.0000000001")
        wait_for(lambda: read_md_counters(venue)["spot"]["instrument_changes_refused"] >= 1, timeout=20,
                 what="the precision change refused")
        assert spot().size_precision == before.size_precision and spot().tick_size == after.tick_size
        # marked unchecked: the next start fetches exchangeInfo first and takes the new precision
        # md counts the refusal as it meets it and marks the file once the refresh is through
        wait_for(lambda: os.stat(instruments_path(venue)).st_mtime == 0, timeout=20, what="the table marked unchecked")
        c = wait_for(lambda: (c := read_md_counters(venue))["usdm"]["exchange_info_refreshes"] >= 2 and c,
                     timeout=20, what="usdm refreshed too")
        assert c["spot"]["exchange_info_errors"] == 0 and c["usdm"]["instrument_updates"] == 0
    finally:
        cleanup(venue)


def test_klines_and_mark_prices_from_the_synthetic_market(children, venue, tmp_path):
    from ttquant.core.records import FUNDING_RATE_PRECISION
    sim = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--speed", "20",
                         "--replay", "synthetic", "--wait-clients", "2",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = int(sim.stdout.readline().decode().split("127.0.0.1:")[1].split()[0])
    path = md_config(tmp_path / "md.toml", venue, port, {"spot": (["BTCUSDT"], ["trade", "kline_1m"]),
                                                         "usdm": (["BTCUSDT"], ["trade", "markPrice@1s", "kline_1m"])},
                     rings={"tick_capacity": 1048576})
    start_md(children, path)
    try:
        reader = wait_for(lambda: attach_ticks(venue), timeout=30, what="the tick ring")
        wait_for(lambda: (c := read_md_counters(venue))["usdm"]["mark_prices"] >= 20 and c["spot"]["klines"] >= 20,
                 timeout=60, what="klines and marks")
        events = np.zeros(1 << 20, MARKET_EVENT_DTYPE)
        events = events[:reader.poll_into(events)]
        klines = events[events["kind"] == EventKind.KLINE]
        marks = events[events["kind"] == EventKind.MARK]
        assert len(klines) >= 20 and len(marks) >= 20
        assert (klines["high"] >= klines["low"]).all() and (klines["high"] >= klines["price"]).all()
        assert (klines["close_time_ns"] - klines["open_time_ns"] == 59_999_000_000).all()
        assert (klines["flags"] & EventFlag.CLOSED).any() or len(klines) < 60
        assert (marks["funding_rate"] == 10 ** FUNDING_RATE_PRECISION // 10_000).all()
        assert (marks["price"] >= marks["index_price"]).all() and (np.diff(marks["seq"].astype(np.int64)) > 0).all()
        c = read_md_counters(venue)
        assert not [k for m in c.values() for k, v in m.items() if k.startswith("drop_") and v], c
        reader.close()
    finally:
        cleanup(venue)
