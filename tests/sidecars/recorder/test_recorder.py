"""The recorder: every record of the rings in the journal once, at its ring position; what the
ring overwrote before it was read is a counted gap; a restart (clean or SIGKILL) carries on
where the journal ends; systemd notify; a bad config names the file and the key."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType, instruments_path
from ttquant.core.journal import journal_files, read_journal
from ttquant.core.records import EXEC_REPORT_DTYPE, MARKET_EVENT_DTYPE, RecordType
from ttquant.core.rings import BroadcastWriter
from ttquant.sidecars.recorder.config import RecorderConfigError, load_recorder_config
from ttquant.sidecars.recorder.daemon import Recorder, RecorderBusy

from ttq_testing import config_file, unlink_venue, wait_for

CLI = [sys.executable, "-m", "ttquant.core.cli"]


def _events(first, n):
    a = np.zeros(n, MARKET_EVENT_DTYPE)
    a["seq"] = np.arange(first, first + n)
    a["price"] = 61_000_00 + np.arange(first, first + n) % 100
    return a


def _config(tmp_path, venue, journal=None):
    return config_file(tmp_path / "record.toml", "record", {
        "rings": {"name": venue, "record": ["ticks", "exec"]},
        "journal": {"dir": "journal", "fsync_interval_ms": 50, **(journal or {})}, "loop": {"batch": 256}})


def _recorder(tmp_path, venue, journal=None):
    cfg = load_recorder_config(str(_config(tmp_path, venue, journal)))
    return cfg, Recorder(cfg)


def _drain(rec, until):
    wait_for(lambda: rec.step() == 0 and until(), timeout=20, what="the recorder to catch up")


@pytest.fixture
def stack(venue, request):
    capacity = getattr(request, "param", 1024)
    ticks = BroadcastWriter(f"/ttq.{venue}.ticks", RecordType.MARKET_EVENT, capacity)
    execs = BroadcastWriter(f"/ttq.{venue}.exec", RecordType.EXEC_REPORT, 1024)
    yield ticks, execs
    ticks.close()
    execs.close()
    unlink_venue(venue)


def test_everything_published_is_recorded_once_at_its_position(stack, venue, tmp_path):
    ticks, execs = stack
    table = InstrumentTable(venue)
    table.add(Instrument(instrument_id=1, venue=venue, symbol="BTCUSDT", market_type=MarketType.SPOT,
                         base="BTC", quote="USDT", price_precision=2, size_precision=5, tick_size=1,
                         step_size=1, min_qty=1, max_qty=0, min_price=1, max_price=0, min_notional=0))
    table.save(instruments_path(venue))
    ticks.push_many(_events(0, 300))                  # before the recorder: still in the ring
    cfg, rec = _recorder(tmp_path, venue)
    for r in rec.rings:
        assert r.attach()
    reports = np.zeros(40, EXEC_REPORT_DTYPE)
    reports["client_order_id"] = np.arange(40)
    execs.push_many(reports)
    for k in range(300, 2300, 100):                   # more than the ring holds, read as it goes
        ticks.push_many(_events(k, 100))
        rec.step()
    _drain(rec, lambda: rec.rings[0].recorded == 2300)
    for r in rec.rings:
        r.close()
    records, positions, gaps = read_journal(cfg.journal_path("ticks"))
    assert list(positions) == list(range(2300)) and gaps == []
    assert records.tobytes() == _events(0, 2300).tobytes()
    (exec_file,) = journal_files(cfg.journal_path("exec"))
    assert list(exec_file.records["client_order_id"]) == list(range(40))
    assert journal_files(cfg.journal_path("ticks"))[0].instruments == table
    assert rec.rings[0].lost == 0


def test_what_the_ring_overwrote_unread_is_a_counted_gap(stack, venue, tmp_path):
    ticks, _ = stack
    cfg, rec = _recorder(tmp_path, venue)
    ticks.push_many(_events(0, 100))
    _drain(rec, lambda: rec.rings[0].recorded == 100)
    ticks.push_many(_events(100, 3000))               # the ring (1024) laps the recorder
    _drain(rec, lambda: rec.rings[0].reader.lag == 0)
    ticks.push_many(_events(3100, 10))
    _drain(rec, lambda: rec.rings[0].reader.lag == 0)
    rec.rings[0].close()
    records, positions, gaps = read_journal(cfg.journal_path("ticks"))
    assert list(records["seq"]) == list(positions)    # each record where the ring had it
    assert len(gaps) == 1 and gaps[0][0] == 100
    missing = gaps[0][1]
    assert missing == rec.rings[0].lost > 0
    assert list(positions) == list(range(100)) + list(range(100 + missing, 3110))
    out = subprocess.run([*CLI, "journal", "ls", cfg.journal_path("ticks")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["file", "ring", "first"] and len(lines) == 3
    assert lines[1].split()[2:5] == ["0", "99", "100"]
    assert lines[2].split()[2:6] == [str(100 + missing), "3109", str(3010 - missing), str(missing)]


def test_journal_ls_lists_every_ring_under_a_parent_and_names_a_missing_directory(stack, venue, tmp_path):
    ticks, execs = stack
    cfg, rec = _recorder(tmp_path, venue)
    ticks.push_many(_events(0, 10))
    execs.push_many(np.zeros(3, EXEC_REPORT_DTYPE))
    _drain(rec, lambda: rec.rings[0].recorded == 10 and rec.rings[1].recorded == 3)
    for r in rec.rings:
        r.close()
    parent = subprocess.run([*CLI, "journal", "ls", cfg.journal_dir], capture_output=True, text=True, timeout=60)
    assert parent.returncode == 0, parent.stderr
    assert f"{cfg.journal_path('exec')}:" in parent.stdout and f"{cfg.journal_path('ticks')}:" in parent.stdout
    gone = subprocess.run([*CLI, "journal", "ls", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2 and f"{tmp_path / 'nope'}: no such directory" in gone.stderr
    (tmp_path / "empty").mkdir()
    empty = subprocess.run([*CLI, "journal", "ls", str(tmp_path / "empty")], capture_output=True, text=True,
                           timeout=60)
    assert empty.returncode == 1 and "no journal files here or below" in empty.stderr


def test_a_restarted_recorder_carries_on_where_the_journal_ends(stack, venue, tmp_path):
    ticks, _ = stack
    cfg, first = _recorder(tmp_path, venue)
    ticks.push_many(_events(0, 500))
    _drain(first, lambda: first.rings[0].recorded == 500)
    for r in first.rings:
        r.close()
    ticks.push_many(_events(500, 300))                # while no recorder runs
    second = Recorder(cfg)
    ticks.push_many(_events(800, 200))
    _drain(second, lambda: second.rings[0].recorded == 500)
    for r in second.rings:
        r.close()
    records, positions, gaps = read_journal(cfg.journal_path("ticks"))
    assert list(positions) == list(range(1000)) and gaps == []
    assert list(records["seq"]) == list(range(1000))
    assert len(journal_files(cfg.journal_path("ticks"))) == 2


def test_a_ring_made_again_is_recorded_anew(stack, venue, tmp_path):
    ticks, _ = stack
    cfg, rec = _recorder(tmp_path, venue)
    ticks.push_many(_events(0, 50))
    _drain(rec, lambda: rec.rings[0].recorded == 50)
    ticks.unlink()
    ticks.close()
    with BroadcastWriter(f"/ttq.{venue}.ticks", RecordType.MARKET_EVENT, 1024) as again:
        again.push_many(_events(1000, 70))      # past where the journal ended: all of it anyway
        rec.rings[0].check_ring()
        _drain(rec, lambda: rec.rings[0].recorded == 120)
        rec.rings[0].close()
        again.unlink()
    with BroadcastWriter(f"/ttq.{venue}.ticks", RecordType.MARKET_EVENT, 1024) as third:
        third.push_many(_events(2000, 80))      # made again while no recorder ran
        later = Recorder(cfg)
        _drain(later, lambda: later.rings[0].recorded == 80)
        later.rings[0].close()
    files = journal_files(cfg.journal_path("ticks"))
    assert [(f.first_position, f.count) for f in files] == [(0, 50), (0, 70), (0, 80)]
    assert list(files[1].records["seq"]) == list(range(1000, 1070))
    assert list(files[2].records["seq"]) == list(range(2000, 2080))
    assert len({f.ring_created_ns for f in files}) == 3


@pytest.mark.parametrize("stack", [1 << 16], indirect=True)     # room for a slow start on a busy host
def test_the_daemon_killed_and_restarted_then_stopped_loses_and_repeats_nothing(stack, venue, tmp_path, children):
    ticks, _ = stack
    config = _config(tmp_path, venue)
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    journal = str(tmp_path / "journal" / f"{venue}.ticks")
    seen = []

    def on_disk():
        return sum(f.count for f in journal_files(journal))

    def listen_until(done, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done():
            try:
                seen.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
        assert done(), seen

    def start():
        seen.clear()
        proc = children.start("-m", "ttquant.core.cli", "record", venue, "--config", config,
                              env={"NOTIFY_SOCKET": sock_path}, stderr=subprocess.PIPE)
        listen_until(lambda: "READY=1" in seen)
        return proc

    sent = 0
    rec = start()
    for _ in range(20):
        ticks.push_many(_events(sent, 200))
        sent += 200
        time.sleep(0.01)
    wait_for(lambda: on_disk() >= 2000, timeout=30, what="records on disk")
    os.killpg(rec.pid, signal.SIGKILL)                # mid-stream, its last batch maybe half-written
    rec.wait(timeout=10)
    ticks.push_many(_events(sent, 300))               # while it is down
    sent += 300
    rec = start()
    for _ in range(10):
        ticks.push_many(_events(sent, 100))
        sent += 100
        time.sleep(0.01)
    listen_until(lambda: "WATCHDOG=1" in seen)
    ticks.push_many(_events(sent, 700))               # then stopped at once: it drains the ring first
    sent += 700
    rec.send_signal(signal.SIGTERM)
    assert rec.wait(timeout=20) == 0, rec.stderr.read().decode()[-2000:]
    listen_until(lambda: "STOPPING=1" in seen, timeout=5)
    assert seen.index("READY=1") < seen.index("WATCHDOG=1") < seen.index("STOPPING=1"), seen
    assert any(m.startswith("STATUS=ticks: ") for m in seen), seen
    records, positions, gaps = read_journal(journal)
    assert list(positions) == list(range(sent)) and gaps == []
    assert records.tobytes() == _events(0, sent).tobytes()


@pytest.mark.parametrize("body,key", [
    ('[rings]\nname = "v"\nrecord = ["ticks", "books"]\n[journal]\ndir = "j"\n', "rings.record"),
    ('[rings]\nname = "v"\n[journal]\ndir = "j"\nmax_file_mb = "big"\n', "journal.max_file_mb"),
    ('[rings]\nname = "v"\n[journal]\n', "journal.dir"),
    ('[rings]\nname = "v"\n[journal]\ndir = "j"\n[loop]\nspin = true\n', "loop.spin"),
    ('[rings]\nname = "v.x"\n[journal]\ndir = "j"\n', "rings.name"),
])
def test_a_bad_config_names_the_file_and_the_key(tmp_path, body, key):
    path = tmp_path / "record.toml"
    path.write_text(body)
    with pytest.raises(RecorderConfigError) as exc:
        load_recorder_config(str(path))
    assert str(path) in str(exc.value) and key in str(exc.value)
    out = subprocess.run([*CLI, "record", "v", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and key in out.stderr


def test_files_roll_at_their_size_and_at_their_age_when_the_ring_is_quiet(stack, venue, tmp_path):
    ticks, _ = stack
    cfg, rec = _recorder(tmp_path, venue, {"max_file_mb": 1, "max_file_s": 0.3})
    sent = 0
    while sent < 20_000:                              # 2.4 MB of ticks
        ticks.push_many(_events(sent, 500))
        sent += 500
        _drain(rec, lambda: rec.rings[0].reader.lag == 0)
    files = journal_files(cfg.journal_path("ticks"))
    assert len(files) >= 3 and all(f.count * MARKET_EVENT_DTYPE.itemsize < (1 << 20) + 256 * 120 for f in files)
    records, positions, gaps = read_journal(cfg.journal_path("ticks"))
    assert list(positions) == list(range(sent)) and gaps == []
    time.sleep(0.35)
    rec.rings[0].roll_if_old()                        # nothing came: the file is closed at its age
    assert rec.rings[0].writer is None
    ticks.push_many(_events(sent, 5))
    _drain(rec, lambda: rec.rings[0].reader.lag == 0)
    rec.rings[0].close()
    assert len(journal_files(cfg.journal_path("ticks"))) == len(files) + 1
    assert list(read_journal(cfg.journal_path("ticks"))[1]) == list(range(sent + 5))


def test_a_ring_that_is_not_there_yet_is_waited_for(venue, tmp_path):
    cfg, rec = _recorder(tmp_path, venue)
    try:
        with BroadcastWriter(f"/ttq.{venue}.ticks", RecordType.MARKET_EVENT, 1024) as ticks:
            ticks.push_many(_events(0, 10))
            _drain(rec, lambda: rec.rings[0].recorded == 10)
            assert rec.rings[1].reader is None
            assert "exec: 0 recorded, 0 lost, 0 files (waiting for the ring)" in rec.status_text()
            with BroadcastWriter(f"/ttq.{venue}.exec", RecordType.EXEC_REPORT, 1024) as execs:
                execs.push_many(np.zeros(3, EXEC_REPORT_DTYPE))
                _drain(rec, lambda: rec.rings[1].recorded == 3)
            for r in rec.rings:
                r.close()
    finally:
        unlink_venue(venue)


def test_a_ring_that_lapped_before_the_first_start_says_so_in_words_that_fit(stack, venue, tmp_path, caplog):
    ticks, _ = stack
    ticks.push_many(_events(0, 3000))                 # 1024 slots: the first ~2000 are gone
    cfg, rec = _recorder(tmp_path, venue)
    with caplog.at_level("INFO", logger="ttquant.recorder"):
        _drain(rec, lambda: rec.rings[0].reader is not None and rec.rings[0].reader.lag == 0)
    rec.rings[0].close()
    (f,) = journal_files(cfg.journal_path("ticks"))
    # published before the recorder started (md came first): not a loss of the recorder's
    assert f.next_position == 3000 and rec.rings[0].before_start == f.first_position > 1900
    assert rec.rings[0].lost == 0 and "overwritten" not in caplog.text
    assert f"{f.first_position} records were published before the recorder started" in caplog.text
    assert f"{f.first_position} from before it started" in rec.status_text()
    assert list(f.records["seq"]) == list(range(f.first_position, 3000))


def test_an_empty_last_file_does_not_stop_a_restart(stack, venue, tmp_path):
    ticks, _ = stack
    cfg, first = _recorder(tmp_path, venue)
    ticks.push_many(_events(0, 100))
    _drain(first, lambda: first.rings[0].recorded == 100)
    first.rings[0].close()
    directory = cfg.journal_path("ticks")
    (tmp_path / directory / "20990101T000000-09999999999999999999-00000000000000000100.ttqj").write_bytes(b"")
    ticks.push_many(_events(100, 50))
    _, second = _recorder(tmp_path, venue)
    _drain(second, lambda: second.rings[0].recorded == 50)
    second.rings[0].close()
    assert list(read_journal(directory)[1]) == list(range(150))


def test_two_recorders_never_record_one_ring(stack, venue, tmp_path):
    _, one = _recorder(tmp_path, venue)
    _, two = _recorder(tmp_path, venue)
    one.rings[0].lock()
    with pytest.raises(RecorderBusy, match="another recorder"):
        two.rings[0].lock()
    one.rings[0].unlock()
    two.rings[0].lock()
    two.rings[0].unlock()


def test_runs_broken_inside_a_batch_keep_every_record_at_its_position(venue, tmp_path):
    """A writer thread laps a small ring while the recorder reads it: jumps land inside
    batches, and every recorded record must still sit at the position it had in the ring."""
    import threading
    cfg, rec = _recorder(tmp_path, venue)
    n = 200_000
    try:
        with BroadcastWriter(f"/ttq.{venue}.ticks", RecordType.MARKET_EVENT, 64) as ticks:
            assert rec.rings[0].attach()
            batch = _events(0, n)

            def write():
                for k in range(0, n, 16):
                    ticks.push_many(batch[k:k + 16])

            writer = threading.Thread(target=write)
            writer.start()
            while writer.is_alive():
                rec.rings[0].step()
            writer.join()
            _drain(rec, lambda: rec.rings[0].reader.lag == 0)
            rec.rings[0].close()
    finally:
        unlink_venue(venue)
    records, positions, gaps = read_journal(cfg.journal_path("ticks"))
    assert list(records["seq"]) == list(positions)
    assert positions[-1] == n - 1 and len(positions) + rec.rings[0].lost == n
    assert sum(g[1] for g in gaps) + positions[0] == rec.rings[0].lost    # laps or not, as the host lets it


def test_a_jump_inside_a_batch_starts_a_new_file_at_the_record_after_it(venue, tmp_path):
    """Made by hand: the slot of position 20 holds a later lap's record, so the reader jumps
    right there, in the middle of a batch; 21 must start the next file, not be dropped."""
    import struct
    cfg, rec = _recorder(tmp_path, venue)
    name = f"/ttq.{venue}.ticks"
    try:
        with BroadcastWriter(name, RecordType.MARKET_EVENT, 64) as ticks:
            ticks.push_many(_events(0, 40))
            assert rec.rings[0].attach()
            with open("/dev/shm" + name, "r+b") as f:
                f.seek(128)                                 # write_position: the writer is at 85
                f.write(struct.pack("<Q", 85))
                f.seek(4096 + 20 * 128)                     # slot 20 now holds position 84
                f.write(struct.pack("<Q", 2 * 84 + 2))
            assert rec.rings[0].step() == 20
            assert rec.rings[0].step() == 19
            rec.rings[0].close()
    finally:
        unlink_venue(venue)
    records, positions, gaps = read_journal(cfg.journal_path("ticks"))
    assert list(positions) == list(range(20)) + list(range(21, 40)) and gaps == [(20, 1)]
    assert list(records["seq"]) == list(positions) and rec.rings[0].lost == 1
