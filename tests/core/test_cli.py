"""The `ttquant` command: --help everywhere, rings ls / inspect / rm, bad input."""
import json
import os
import subprocess
import sys

import pytest

from ttquant.core.cli import build_parser, main
from ttquant.core.records import EventKind, ExecReport, MarketEvent, Order, OrderStatus, OrderType, RecordType, Side
from ttquant.core.rings import BroadcastWriter, SpscReader, SpscWriter, list_segments

from ttq_testing import spot_table, wait_for


def _subcommand_paths(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommand_paths(sub, prefix + (name,))


@pytest.mark.parametrize("path", [()] + list(_subcommand_paths(build_parser())), ids=" ".join)
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ttquant") and len(out.splitlines()) > 3


def test_console_script_is_installed():
    bindir = os.path.dirname(sys.executable)
    proc = subprocess.run([os.path.join(bindir, "ttquant"), "rings", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "inspect" in proc.stdout


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_rings_ls_shows_each_ring_of_the_venue(ring, venue, capsys):
    ticks, orders = ring("ticks"), ring("orders", "mm")
    w = BroadcastWriter(ticks, RecordType.MARKET_EVENT, 1024)
    w.push(MarketEvent(kind=EventKind.TRADE, seq=1))
    SpscReader(orders, RecordType.ORDER, capacity=16, create=True).close()
    assert main(["rings", "ls", "--venue", venue]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "KIND", "RECORD", "CAPACITY", "WRITER"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {ticks, orders}
    assert rows[ticks][1:8] == ["broadcast", "market_event", "1024", str(os.getpid()), "yes", "1", "1"]
    assert rows[orders][1:4] == ["spsc", "order", "16"]

    assert main(["rings", "ls", "--venue", venue, "--json"]) == 0
    listed = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
    assert listed[ticks]["write_position"] == 1 and listed[ticks]["writer_alive"] is True
    assert listed[orders]["read_position"] == 0
    w.close()


def test_rings_ls_with_nothing_to_show(venue, capsys):
    assert main(["rings", "ls", "--venue", venue]) == 0
    assert capsys.readouterr().out == f"no TTQuant rings or files in /dev/shm for venue {venue}\n"


def test_rings_inspect_decodes_the_last_records(ring, capsys):
    name = ring("ticks")
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, 64)
    for i in range(12):
        w.push(MarketEvent(kind=EventKind.TRADE, seq=i, price=5000 + i))
    assert main(["rings", "inspect", name, "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "broadcast of market_event" in out and "epoch 1" in out and "write 12" in out
    assert out.count("no instrument table there") == 1      # said once, not per record
    body = out.split("last 3 records:")[1].strip().splitlines()
    assert [line.split()[0] for line in body] == ["9", "10", "11"]
    assert body[-1].split()[1:5] == ["kind=TRADE", "instrument=0", "price=5011", "qty=0"]

    assert main(["rings", "inspect", name, "-n", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["position"] for r in doc["records"]] == [10, 11]
    assert [r["seq"] for r in doc["records"]] == [10, 11]
    w.close()


T0 = 1767225600123456789        # 2026-01-01T00:00:00.123456789Z


def test_rings_inspect_with_the_instrument_table_reads_for_people(ring, venue, capsys):
    from ttquant.core.rings.names import instruments_file
    ticks, exec_, orders = ring("ticks"), ring("exec"), ring("orders", "mm")
    table = spot_table().save(instruments_file(venue))
    tw = BroadcastWriter(ticks, RecordType.MARKET_EVENT, 16)
    tw.push(MarketEvent(kind=EventKind.TRADE, instrument_id=1, price=6173610, qty=150, seq=7, first_trade_id=7,
                        last_trade_id=7, flags=1, ts_exchange=T0, ts_recv=T0 + 5, ts_pub=T0 + 9))
    ew = BroadcastWriter(exec_, RecordType.EXEC_REPORT, 16)
    ew.push(ExecReport(status=OrderStatus.REJECTED, reject_code=5001, side=Side.BUY, order_type=OrderType.IOC,
                       instrument_id=1, price=6173610, qty=150, client_order_id=77, strategy_id=3, ts_pub=T0))
    reader = SpscReader(orders, RecordType.ORDER, capacity=16, create=True)
    ow = SpscWriter(orders, RecordType.ORDER, create=False, capacity=None)
    ow.offer(Order(action=1, side=Side.SELL, order_type=OrderType.LIMIT, instrument_id=1, price=6173700, qty=5,
                   client_order_id=78, strategy_id=3, ts_created=T0))
    try:
        assert main(["rings", "inspect", ticks]) == 0
        out = capsys.readouterr().out
        assert "instrument table" not in out
        assert out.splitlines()[-1] == (
            "             0  kind=TRADE instrument=BTCUSDT.spot price=61736.10 qty=0.00150 seq=7 first_trade_id=7 "
            "last_trade_id=7 flags=BUYER_AGGRESSOR ts_exchange=2026-01-01T00:00:00.123456789Z "
            "ts_recv=2026-01-01T00:00:00.123456794Z ts_pub=2026-01-01T00:00:00.123456798Z venue_id=0")
        assert main(["rings", "inspect", exec_]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == (
            "             0  status=REJECTED reject_code=KILL_SWITCH(5001) side=BUY order_type=IOC "
            "instrument=BTCUSDT.spot price=61736.10 qty=0.00150 last_price=0.00 last_qty=0.00000 cum_qty=0.00000 "
            "leaves_qty=0.00000 fee=0.00000000 liquidity=NONE trade_id=0 flags=- client_order_id=77 "
            "venue_order_id=0 strategy_id=3 ts_exchange=- ts_recv=- ts_pub=2026-01-01T00:00:00.123456789Z")
        assert main(["rings", "inspect", orders]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == (
            "             0  action=NEW side=SELL order_type=LIMIT instrument=BTCUSDT.spot price=61737.00 "
            "qty=0.00005 reduce_only=no client_order_id=78 target_order_id=0 strategy_id=3 "
            "ts_created=2026-01-01T00:00:00.123456789Z")

        assert main(["rings", "inspect", exec_, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["instruments"] == {"venue": "binance", "count": 1} and "instruments_missing" not in doc
        rec = doc["records"][0]
        assert (rec["status"], rec["status_name"], rec["reject_code"], rec["reject_code_name"]) == \
            (6, "REJECTED", 5001, "KILL_SWITCH")
        assert (rec["price"], rec["price_decimal"], rec["symbol"], rec["order_type_name"]) == \
            (6173610, "61736.10", "BTCUSDT", "IOC")
        assert rec["ts_pub"] == T0 and rec["ts_pub_iso"] == "2026-01-01T00:00:00.123456789Z"
    finally:
        for w in (tw, ew, ow, reader):
            w.close()
        os.unlink(table)


def test_rings_inspect_of_orders(ring, capsys):
    name = ring("orders", "mm")
    r = SpscReader(name, RecordType.ORDER, capacity=16, create=True)
    w = SpscWriter(name, RecordType.ORDER, create=False, capacity=None)
    w.offer(Order(client_order_id=77, price=123))
    assert main(["rings", "inspect", name]) == 0
    out = capsys.readouterr().out
    assert "spsc of order" in out and "1 unread" in out and "client_order_id=77" in out
    w.close()
    r.close()


def test_rings_inspect_missing_or_bad_ring_is_a_clear_error(ring, capsys):
    missing = ring("nothing")
    assert main(["rings", "inspect", missing]) == 2
    assert missing in capsys.readouterr().err
    bad = ring("junk")
    with open(f"/dev/shm{bad}", "wb") as f:
        f.write(b"\0" * 8192)
    assert main(["rings", "inspect", bad]) == 2
    err = capsys.readouterr().err
    assert bad in err and "magic" in err


def test_rings_rm_refuses_a_live_writer_unless_forced(ring, capsys):
    name = ring("ticks")
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, 8)
    assert main(["rings", "rm", name]) == 1
    assert "live writer" in capsys.readouterr().err and name in list_segments()
    assert main(["rings", "rm", "--force", name]) == 0
    assert name not in list_segments()
    w.close()
    assert main(["rings", "rm", name]) == 1
    assert "no such ring" in capsys.readouterr().err


def test_rings_rm_removes_a_ring_whose_writer_is_gone(ring):
    name = ring("ticks")
    BroadcastWriter(name, RecordType.MARKET_EVENT, 8).close()
    assert main(["rings", "rm", name]) == 0
    assert name not in list_segments()


def test_rings_inspect_of_a_book_board(ring, capsys):
    from ttquant.core.book.book_board import BookBoardWriter
    from ttquant.core.book.order_book import OrderBook
    name = ring("books")
    w = BookBoardWriter(name, depth=5, instruments=8)
    book = OrderBook(3)
    book.load([[100, 2]], [[101, 4]])
    w.publish(book, update_id=77)
    assert main(["rings", "inspect", name]) == 0
    out = capsys.readouterr().out
    assert "1 of 8 instruments, top 5 levels" in out
    assert out.count("no instrument table there") == 1
    assert "instrument 3          synced  update 77  bid 100 x 2  ask 101 x 4  levels 1/1" in out
    assert main(["rings", "inspect", name, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["books"][0]["bids"] == [[100, 2]] and doc["kind"] == "board"
    assert "symbol" not in doc["books"][0] and "no instrument table" in doc["instruments_missing"]
    w.close()


def test_rings_inspect_of_a_book_board_names_symbols_and_decimal_prices(ring, venue, capsys):
    from ttquant.core.book.book_board import BookBoardWriter
    from ttquant.core.book.order_book import OrderBook
    from ttquant.core.rings.names import instruments_file
    name = ring("books")
    table = spot_table().save(instruments_file(venue))
    w = BookBoardWriter(name, depth=5, instruments=8)
    book = OrderBook(1)
    book.load([[6173610, 150], [6173600, 5]], [[6173611, 200000]])
    w.publish(book, update_id=77)
    try:
        assert main(["rings", "inspect", name]) == 0
        out = capsys.readouterr().out
        assert "instrument table" not in out
        assert "BTCUSDT.spot          synced  update 77  bid 61736.10 x 0.00150  ask 61736.11 x 2.00000  levels 2/1" \
            in out
        assert main(["rings", "inspect", name, "--json"]) == 0
        top = json.loads(capsys.readouterr().out)["books"][0]
        assert top["bids"] == [[6173610, 150], [6173600, 5]] and top["symbol"] == "BTCUSDT"
        assert top["bids_decimal"] == [["61736.10", "0.00150"], ["61736.00", "0.00005"]]
        assert top["asks_decimal"] == [["61736.11", "2.00000"]] and top["ts_pub_iso"].endswith("Z")
    finally:
        w.close()
        os.unlink(table)


def test_rings_inspect_reads_any_telemetry_segment_by_its_own_names(venue, ring, capsys):
    from ttquant.core.telemetry.telemetry import TelemetryWriter, observe
    name = ring("telemetry", "strategy-mm")
    with TelemetryWriter(venue, "strategy-mm", "strategy", labels={"strategy": "mm"}) as w:
        w.counters(["events_total", "orders_total"])[:] = (12, 0)
        observe(h := w.histogram("handler_seconds"), 2000)
        observe(h, 2000)
        assert main(["rings", "inspect", name]) == 0
        out = capsys.readouterr().out
        assert "role strategy, process strategy-mm, strategy mm" in out and "alive" in out
        assert "events_total" in out and "12" in out and "orders_total" not in out     # zeros: --all
        assert "handler_seconds" in out and "2 samples, p50 < 2.0 us" in out
        assert main(["rings", "inspect", name, "--all"]) == 0
        assert "orders_total" in capsys.readouterr().out
        assert main(["rings", "inspect", name, "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert {s["id"]: s.get("value") for s in got["series"]}["events_total"] == 12


HOLD_LOCK = """
import sys, time
from ttquant.core.daemon.instance_lock import InstanceLock
InstanceLock(sys.argv[1], "md").acquire()
time.sleep(600)
"""


def _stack(venue):
    """A stopped stack's files: ticks and exec rings, md's telemetry, the instrument table, a
    released kill switch, md's lock left by a process that died."""
    from ttquant.core.gateway.kill_switch import KillSwitch
    from ttquant.core.rings.names import instance_lock_file, instruments_file
    from ttquant.core.telemetry.telemetry import TelemetryWriter
    BroadcastWriter(f"/ttq.{venue}.ticks", RecordType.MARKET_EVENT, 8).close()
    BroadcastWriter(f"/ttq.{venue}.exec", RecordType.EXEC_REPORT, 8).close()
    TelemetryWriter(venue, "md", "md").close()
    spot_table().save(instruments_file(venue))
    ks = KillSwitch(venue)
    ks.set(True, "drill", who="ops@desk")
    ks.set(False, who="ops@desk")
    ks.close()
    with open(instance_lock_file(venue, "md"), "w") as f:
        f.write("4194000\n")
    return sorted(f"/dev/shm/ttq.{venue}.{e}" for e in ("ticks", "exec", "telemetry.md", "instruments.json",
                                                         "kill_switch.ctl", "md.lock"))


def test_rings_ls_shows_every_segment_and_file_of_a_venue(venue, capsys, children):
    from ttquant.core.rings.names import instance_lock_file, stack_entries
    _stack(venue)
    child = children.start("-c", HOLD_LOCK, instance_lock_file(venue, "gateway"))
    wait_for(lambda: os.path.exists(instance_lock_file(venue, "gateway")) and
             open(instance_lock_file(venue, "gateway")).read().strip() == str(child.pid), what="the child's lock")
    try:
        assert main(["rings", "ls", "--venue", venue]) == 0
        rings, files = capsys.readouterr().out.split("\n\n")
        rows = {line.split()[0]: line for line in rings.splitlines()[1:]}
        assert set(rows) == {f"/ttq.{venue}.{k}" for k in ("ticks", "exec", "telemetry.md")}
        assert rows[f"/ttq.{venue}.telemetry.md"].split()[1:3] == ["board", "telemetry"]
        assert rows[f"/ttq.{venue}.telemetry.md"].endswith("role md, process md")
        lines = files.splitlines()
        assert lines[0].split() == ["FILE", "WHAT", "STATE"]
        state = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
        assert state[f"/ttq.{venue}.instruments.json"].split(None, 2)[2] == "1 instrument of binance"
        assert state[f"/ttq.{venue}.kill_switch.ctl"].startswith("kill switch       released by ops@desk at 20")
        assert state[f"/ttq.{venue}.md.lock"].split(None, 2)[2] == "md: free (left by a process that stopped)"
        assert state[f"/ttq.{venue}.gateway.lock"].split(None, 2)[2].startswith(
            f"gateway: held by pid {child.pid} ({sys.executable} -c")

        assert main(["rings", "ls", "--venue", venue, "--json"]) == 0
        listed = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
        assert listed[f"/ttq.{venue}.telemetry.md"]["labels"] == {"role": "md", "process": "md"}
        assert listed[f"/ttq.{venue}.instruments.json"]["count"] == 1
        assert listed[f"/ttq.{venue}.kill_switch.ctl"]["engaged"] is False
        assert listed[f"/ttq.{venue}.gateway.lock"]["held"] is True
        assert listed[f"/ttq.{venue}.gateway.lock"]["pid"] == child.pid
        assert len(listed) == len(stack_entries(venue)) == 7
    finally:
        children.kill_all()
        assert main(["rings", "rm", "--venue", venue]) == 0
        capsys.readouterr()


def test_rings_rm_venue_removes_a_stopped_stack_at_once(venue, capsys):
    from ttquant.core.rings.names import stack_entries
    expected = _stack(venue)
    assert stack_entries(venue) == expected
    assert main(["rings", "rm", "--venue", venue]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == [f"removed {p}" for p in expected]
    assert stack_entries(venue) == [] and not [e for e in os.listdir("/dev/shm") if e.startswith(f"ttq.{venue}.")]
    assert main(["rings", "rm", "--venue", venue]) == 1
    assert f"nothing of venue {venue}" in capsys.readouterr().err


def test_rings_rm_venue_refuses_a_live_writer_and_removes_nothing(venue, capsys):
    from ttquant.core.rings.names import stack_entries
    expected = _stack(venue)
    ticks = f"/ttq.{venue}.ticks"
    w = BroadcastWriter(ticks, RecordType.MARKET_EVENT, 8)         # the stack's md back up
    try:
        assert main(["rings", "rm", "--venue", venue]) == 1
        err = capsys.readouterr().err
        assert f"/dev/shm{ticks}: live writer pid {os.getpid()}" in err and "removed nothing" in err
        assert stack_entries(venue) == expected
        assert main(["rings", "rm", "--venue", venue, "--force"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == len(expected) and stack_entries(venue) == []
    finally:
        w.close()


def test_rings_rm_venue_refuses_a_held_lock_and_names_its_holder(venue, capsys, children):
    from ttquant.core.rings.names import instance_lock_file, stack_entries
    expected = _stack(venue)
    lock = instance_lock_file(venue, "md")
    os.unlink(lock)
    child = children.start("-c", HOLD_LOCK, lock)
    wait_for(lambda: os.path.exists(lock) and open(lock).read().strip() == str(child.pid), what="the child's lock")
    assert main(["rings", "rm", "--venue", venue]) == 1
    err = capsys.readouterr().err
    assert f"{lock}: lock held by pid {child.pid} ({sys.executable} -c" in err
    assert stack_entries(venue) == expected
    children.kill_all()
    assert main(["rings", "rm", "--venue", venue]) == 0          # its holder gone, the stack goes
    assert stack_entries(venue) == []
    capsys.readouterr()


def test_rings_rm_venue_keeps_an_engaged_kill_switch_unless_forced(venue, capsys):
    from ttquant.core.gateway.kill_switch import KillSwitch
    from ttquant.core.rings.names import stack_entries
    expected = _stack(venue)
    ks = KillSwitch(venue)
    ks.set(True, "loss limit", who="ops@desk")
    ks.close()
    assert main(["rings", "rm", "--venue", venue]) == 1
    assert "kill switch ENGAGED by ops@desk; removing it would release it" in capsys.readouterr().err
    assert stack_entries(venue) == expected
    assert main(["rings", "rm", "--venue", venue, "--force"]) == 0
    assert stack_entries(venue) == []
    capsys.readouterr()


def test_rings_rm_takes_names_or_a_venue(venue, capsys):
    assert main(["rings", "rm"]) == 2
    assert "give ring names or --venue" in capsys.readouterr().err
    assert main(["rings", "rm", "--venue", venue, f"/ttq.{venue}.ticks"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["rings", "rm", "--venue", "Bad.Name"]) == 2
    assert "must match" in capsys.readouterr().err
