"""The `ttquant` command: --help everywhere, rings ls / inspect / rm, bad input."""
import json
import os
import subprocess
import sys

import pytest

from ttquant.core.cli import build_parser, main
from ttquant.core.records import EventKind, MarketEvent, Order, RecordType
from ttquant.core.rings import BroadcastWriter, SpscReader, list_segments


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
    assert "no TTQuant rings" in capsys.readouterr().out


def test_rings_inspect_decodes_the_last_records(ring, capsys):
    name = ring("ticks")
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, 64)
    for i in range(12):
        w.push(MarketEvent(kind=EventKind.TRADE, seq=i, price=5000 + i))
    assert main(["rings", "inspect", name, "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "broadcast of market_event" in out and "epoch 1" in out and "write 12" in out
    body = out.split("last 3 records:")[1].strip().splitlines()
    assert [line.split()[0] for line in body] == ["9", "10", "11"]
    assert "price=5011" in body[-1]

    assert main(["rings", "inspect", name, "-n", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["position"] for r in doc["records"]] == [10, 11]
    assert [r["seq"] for r in doc["records"]] == [10, 11]
    w.close()


def test_rings_inspect_of_orders(ring, capsys):
    name = ring("orders", "mm")
    r = SpscReader(name, RecordType.ORDER, capacity=16, create=True)
    from ttquant.core.rings import SpscWriter
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
    assert "instrument      3  synced  update 77  bid 100 x 2  ask 101 x 4" in out
    assert main(["rings", "inspect", name, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["books"][0]["bids"] == [[100, 2]] and doc["kind"] == "board"
    w.close()


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
