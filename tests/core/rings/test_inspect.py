"""Read-only views of a stack used by `ttquant rings ls/inspect/rm`: ring headers, records
decoded for people, the files beside the rings and what is still in use."""
import os
import sys

import numpy as np
import pytest

from ttquant.core.records import (
    EventFlag,
    EventKind,
    ExecReport,
    MarketEvent,
    Order,
    OrderAction,
    OrderStatus,
    OrderType,
    RecordType,
    Side,
    dtype_for,
)
from ttquant.core.rings import BroadcastWriter, RingError, SpscReader, SpscWriter
from ttquant.core.rings.inspect import (
    RecordDecoder,
    decimal_text,
    file_infos,
    iso_ns,
    last_records,
    ring_info,
    ring_infos,
    stack_in_use,
)

from ttq_testing import spot_table, unlink_venue, wait_for


def test_broadcast_info_reports_writer_positions_and_heartbeat(ring):
    name = ring("ticks")
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, 64)
    for i in range(5):
        w.push(MarketEvent(kind=EventKind.TRADE, seq=i, price=100 + i))
    w.heartbeat()
    info = ring_info(name)
    assert info["kind"] == "broadcast" and info["record"] == "market_event"
    assert info["capacity"] == 64 and info["write_position"] == 5
    assert info["writer_pid"] == os.getpid() and info["writer_alive"]
    assert info["epoch"] == 1
    assert info["heartbeat_age_ns"] is not None and info["heartbeat_age_ns"] < 60e9
    assert "read_position" not in info
    w.close()
    assert not ring_info(name)["writer_alive"]     # closed writer: the role is released


def test_spsc_info_has_reader_side_and_refusals(ring):
    name = ring("orders", "s1")
    r = SpscReader(name, RecordType.ORDER, capacity=4, create=True)
    w = SpscWriter(name, RecordType.ORDER, create=False, capacity=None)
    for i in range(6):
        w.offer(Order(client_order_id=i))
    r.poll()
    info = ring_info(name)
    assert info["kind"] == "spsc" and info["record"] == "order"
    assert info["write_position"] == 4 and info["read_position"] == 1 and info["unread"] == 3
    assert info["rejected_full"] == 2
    assert info["reader_pid"] == os.getpid() and info["reader_alive"]
    w.close()
    r.close()


def test_last_records_are_the_newest_still_in_the_ring_oldest_first(ring):
    name = ring("ticks")
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, 8)
    for i in range(20):
        w.push(MarketEvent(kind=EventKind.TRADE, seq=i, price=1000 + i))
    info, recs = last_records(name, 5)
    assert info["positions"] == [15, 16, 17, 18, 19]
    assert list(recs["seq"]) == [15, 16, 17, 18, 19] and list(recs["price"]) == [1015, 1016, 1017, 1018, 1019]
    info, recs = last_records(name, 100)      # asks for more than the ring holds
    assert info["positions"] == list(range(13, 20))     # the slot of 12 may be under rewrite
    w.close()


def test_last_records_of_an_empty_ring(ring):
    name = ring("ticks")
    BroadcastWriter(name, RecordType.MARKET_EVENT, 8).close()
    info, recs = last_records(name, 10)
    assert len(recs) == 0 and info["positions"] == []


def test_ring_infos_lists_bad_segments_with_their_error(ring, venue):
    good = ring("ticks")
    BroadcastWriter(good, RecordType.MARKET_EVENT, 8).close()
    bad = ring("junk")
    with open(f"/dev/shm{bad}", "wb") as f:
        f.write(b"not a ring" * 10)
    mine = {i["name"]: i for i in ring_infos() if i["name"].startswith(f"/ttq.{venue}.")}
    assert set(mine) == {good, bad}
    assert "error" not in mine[good]
    assert bad in mine[bad]["error"]
    with pytest.raises(RingError, match="junk"):
        ring_info(bad)


# -- records for people -------------------------------------------------------------------
T0 = 1767225600123456789        # 2026-01-01T00:00:00.123456789Z


def _row(record, record_type):
    return np.frombuffer(record.tobytes(), dtype_for(record_type))[0]


def test_a_rejected_exec_report_reads_as_names_symbol_and_decimals():
    rep = ExecReport(status=OrderStatus.REJECTED, reject_code=5001, side=Side.BUY, order_type=OrderType.IOC,
                     instrument_id=1, price=6173610, qty=150, client_order_id=77, strategy_id=3,
                     ts_exchange=T0, ts_pub=T0 + 1_000)
    row = _row(rep, RecordType.EXEC_REPORT)
    assert RecordDecoder(spot_table()).text(RecordType.EXEC_REPORT, row) == (
        "status=REJECTED reject_code=KILL_SWITCH(5001) side=BUY order_type=IOC instrument=BTCUSDT.spot "
        "price=61736.10 qty=0.00150 last_price=0.00 last_qty=0.00000 cum_qty=0.00000 leaves_qty=0.00000 "
        "fee=0.00000000 liquidity=NONE trade_id=0 flags=- client_order_id=77 venue_order_id=0 strategy_id=3 "
        "ts_exchange=2026-01-01T00:00:00.123456789Z ts_recv=- ts_pub=2026-01-01T00:00:00.123457789Z")
    doc = RecordDecoder(spot_table()).json(RecordType.EXEC_REPORT, row)
    assert doc["status"] == 6 and doc["status_name"] == "REJECTED"
    assert doc["reject_code"] == 5001 and doc["reject_code_name"] == "KILL_SWITCH"
    assert doc["price"] == 6173610 and doc["price_decimal"] == "61736.10"
    assert doc["symbol"] == "BTCUSDT" and doc["instrument"] == "BTCUSDT.spot"
    assert doc["ts_recv_iso"] is None and doc["ts_exchange_iso"] == "2026-01-01T00:00:00.123456789Z"


def test_a_fill_shows_its_fee_at_account_precision_and_its_liquidity():
    rep = ExecReport(status=OrderStatus.PARTIALLY_FILLED, side=Side.SELL, order_type=OrderType.LIMIT, instrument_id=1,
                     price=6173610, qty=300, last_price=6173610, last_qty=100, cum_qty=100, leaves_qty=200,
                     fee=617361, liquidity=2, trade_id=9001, client_order_id=5, venue_order_id=42, strategy_id=1)
    text = RecordDecoder(spot_table()).text(RecordType.EXEC_REPORT, _row(rep, RecordType.EXEC_REPORT))
    assert text.startswith(
        "status=PARTIALLY_FILLED side=SELL order_type=LIMIT instrument=BTCUSDT.spot price=61736.10 qty=0.00300 "
        "last_price=61736.10 last_qty=0.00100 cum_qty=0.00100 leaves_qty=0.00200 fee=0.00617361 "
        "liquidity=TAKER trade_id=9001 flags=- ")
    assert "reject_code" not in text            # none to show


def test_an_order_reads_as_action_side_type_and_decimals():
    order = Order(action=OrderAction.NEW, side=Side.BUY, order_type=OrderType.IOC, instrument_id=1, price=6173610,
                  qty=150, client_order_id=77, strategy_id=3, reduce_only=1, ts_created=T0)
    assert RecordDecoder(spot_table()).text(RecordType.ORDER, _row(order, RecordType.ORDER)) == (
        "action=NEW side=BUY order_type=IOC instrument=BTCUSDT.spot price=61736.10 qty=0.00150 reduce_only=yes "
        "client_order_id=77 target_order_id=0 strategy_id=3 ts_created=2026-01-01T00:00:00.123456789Z")


def test_ticks_read_by_kind():
    decoder = RecordDecoder(spot_table())
    trade = MarketEvent(kind=EventKind.TRADE, instrument_id=1, price=6173610, qty=150, seq=7, first_trade_id=7,
                        last_trade_id=9, flags=EventFlag.BUYER_AGGRESSOR | EventFlag.AGGREGATED, ts_exchange=T0,
                        ts_recv=T0 + 5, ts_pub=T0 + 9, venue_id=1)
    assert decoder.text(RecordType.MARKET_EVENT, _row(trade, RecordType.MARKET_EVENT)) == (
        "kind=TRADE instrument=BTCUSDT.spot price=61736.10 qty=0.00150 seq=7 first_trade_id=7 last_trade_id=9 "
        "flags=BUYER_AGGRESSOR|AGGREGATED ts_exchange=2026-01-01T00:00:00.123456789Z "
        "ts_recv=2026-01-01T00:00:00.123456794Z ts_pub=2026-01-01T00:00:00.123456798Z venue_id=1")
    bbo = MarketEvent(kind=EventKind.BBO, instrument_id=1, price=6173610, qty=50000, ask_price=6173611,
                      ask_qty=120000, seq=3)
    assert decoder.text(RecordType.MARKET_EVENT, _row(bbo, RecordType.MARKET_EVENT)).startswith(
        "kind=BBO instrument=BTCUSDT.spot bid=61736.10 x 0.50000 ask=61736.11 x 1.20000 seq=3 flags=- ")
    level = MarketEvent(kind=EventKind.BOOK_LEVEL, instrument_id=1, price=6173611, qty=0, seq=12,
                        flags=EventFlag.ASK_SIDE, first_update_id=11, prev_update_id=10)
    assert decoder.text(RecordType.MARKET_EVENT, _row(level, RecordType.MARKET_EVENT)).startswith(
        "kind=BOOK_LEVEL instrument=BTCUSDT.spot ask=61736.11 x 0.00000 update_id=12 first_update_id=11 "
        "prev_update_id=10 flags=ASK_SIDE ")


def test_without_a_table_ids_and_raw_integers_stay():
    trade = MarketEvent(kind=EventKind.TRADE, instrument_id=1, price=6173610, qty=150)
    row = _row(trade, RecordType.MARKET_EVENT)
    assert RecordDecoder(None).text(RecordType.MARKET_EVENT, row).startswith(
        "kind=TRADE instrument=1 price=6173610 qty=150 ")
    doc = RecordDecoder(None).json(RecordType.MARKET_EVENT, row)
    assert doc["kind_name"] == "TRADE" and "price_decimal" not in doc and "symbol" not in doc
    other = MarketEvent(kind=EventKind.TRADE, instrument_id=99, price=6173610, qty=150)
    assert RecordDecoder(spot_table()).text(RecordType.MARKET_EVENT, _row(other, RecordType.MARKET_EVENT)).startswith(
        "kind=TRADE instrument=99(not in the table) price=6173610 qty=150 ")


def test_sync_answers_read_as_a_position_and_counts():
    decoder = RecordDecoder(spot_table())
    # pnl precision: max(price 2 + size 5, 8) = 8 (records.pxd, core/portfolio.py)
    pos = ExecReport(status=OrderStatus.POSITION, instrument_id=1, qty=-150, cum_qty=-9260415000,
                     last_price=12345, fee=-1, leaves_qty=4, client_order_id=1, strategy_id=2)
    assert decoder.text(RecordType.EXEC_REPORT, _row(pos, RecordType.EXEC_REPORT)).startswith(
        "status=POSITION instrument=BTCUSDT.spot position=-0.00150 cost=-92.60415000 realised=0.00012345 "
        "fees=-0.00000001 fills=4 flags=- client_order_id=1 venue_order_id=0 strategy_id=2 ")
    done = ExecReport(status=OrderStatus.SYNCED, qty=1, cum_qty=2, venue_order_id=40, client_order_id=1)
    assert decoder.text(RecordType.EXEC_REPORT, _row(done, RecordType.EXEC_REPORT)).startswith(
        "status=SYNCED positions=1 orders=2 highest_client_order_id=40 flags=- client_order_id=1 strategy_id=0 ")


def test_unknown_enum_values_and_flag_bits_show_as_numbers():
    rep = ExecReport(status=42, side=7, flags=0x81, instrument_id=1)
    text = RecordDecoder(spot_table()).text(RecordType.EXEC_REPORT, _row(rep, RecordType.EXEC_REPORT))
    assert text.startswith("status=42 side=7 ") and " flags=RESTATED|0x80 " in text


def test_decimals_and_times_are_exact():
    assert decimal_text(1, 8) == "0.00000001" and decimal_text(-5, 2) == "-0.05" and decimal_text(7, 0) == "7"
    assert decimal_text(2**63 - 1, 18) == "9.223372036854775807"
    assert iso_ns(0) is None and iso_ns(1) == "1970-01-01T00:00:00.000000001Z"
    assert iso_ns(T0) == "2026-01-01T00:00:00.123456789Z"


# -- the files beside the rings, and what is in use ---------------------------------------

HOLD_LOCK = """
import sys, time
from ttquant.core.daemon.instance_lock import InstanceLock
InstanceLock(sys.argv[1], "a test strategy").acquire()
time.sleep(600)
"""


def test_file_infos_read_the_table_the_kill_switch_and_who_holds_each_lock(venue, children):
    from ttquant.core.gateway.kill_switch import KillSwitch
    from ttquant.core.rings.names import instance_lock_file, instruments_file, stack_entries
    try:
        spot_table().save(instruments_file(venue))
        ks = KillSwitch(venue)
        ks.set(True, "fat finger", who="ops@desk")
        with open(instance_lock_file(venue, "md"), "w") as f:
            f.write("4194000\n")            # what an md killed by SIGKILL leaves: its pid, no lock
        held = instance_lock_file(venue, "strategy", "mm")
        child = children.start("-c", HOLD_LOCK, held)
        infos = wait_for(lambda: (i := {f["name"]: f for f in file_infos(venue)})
                         and i.get(f"/ttq.{venue}.strategy.mm.lock", {}).get("held") and i, what="the child's lock")
        assert set(infos) == {f"/ttq.{venue}.instruments.json", f"/ttq.{venue}.kill_switch.ctl",
                              f"/ttq.{venue}.md.lock", f"/ttq.{venue}.strategy.mm.lock"}
        table = infos[f"/ttq.{venue}.instruments.json"]
        assert (table["kind"], table["count"], table["venue"]) == ("instruments", 1, "binance")
        kill = infos[f"/ttq.{venue}.kill_switch.ctl"]
        assert (kill["kind"], kill["engaged"], kill["who"], kill["reason"], kill["changes"]) == \
            ("kill_switch", True, "ops@desk", "fat finger", 1)
        md = infos[f"/ttq.{venue}.md.lock"]
        assert (md["kind"], md["role"], md["instance"], md["held"], md["pid"]) == ("lock", "md", None, False, None)
        mm = infos[f"/ttq.{venue}.strategy.mm.lock"]
        assert (mm["role"], mm["instance"], mm["held"], mm["pid"]) == ("strategy", "mm", True, child.pid)
        assert mm["command"].startswith(f"{sys.executable} -c import sys, time")
        assert all(f["rings"] == venue for f in infos.values())
        assert {f["name"] for f in file_infos()} >= set(infos)      # every venue's, ours among them

        assert dict(stack_in_use(venue)) == {
            held: f"lock held by pid {child.pid} ({mm['command']})",
            kill["path"]: "kill switch ENGAGED by ops@desk; removing it would release it"}
        ks.set(False)
        children.kill_all()
        wait_for(lambda: not stack_in_use(venue), what="the lock to go with its holder")
        ks.close()
        # file_infos only looked: nothing was created, resized or removed
        assert [os.path.basename(p) for p in stack_entries(venue)] == sorted(
            f"ttq.{venue}.{e}" for e in ("instruments.json", "kill_switch.ctl", "md.lock", "strategy.mm.lock"))
    finally:
        unlink_venue(venue)


def test_stack_in_use_names_a_live_writer_and_a_live_spsc_reader(ring, venue):
    ticks, orders = ring("ticks"), ring("orders", "mm")
    w = BroadcastWriter(ticks, RecordType.MARKET_EVENT, 8)
    r = SpscReader(orders, RecordType.ORDER, capacity=4, create=True)
    assert dict(stack_in_use(venue)) == {f"/dev/shm{ticks}": f"live writer pid {os.getpid()}",
                                         f"/dev/shm{orders}": f"live reader pid {os.getpid()}"}
    w.close()
    r.close()
    assert stack_in_use(venue) == []


def test_file_infos_report_a_file_they_cannot_read(venue):
    from ttquant.core.rings.names import instruments_file, kill_switch_file
    try:
        with open(instruments_file(venue), "w") as f:
            f.write("{not json")
        with open(kill_switch_file(venue), "wb") as f:
            f.write(b"\0" * 10)
        infos = {f["kind"]: f for f in file_infos(venue)}
        assert "not JSON" in infos["instruments"]["error"]
        assert "not a TTQuant control segment" in infos["kill_switch"]["error"]
    finally:
        unlink_venue(venue)
