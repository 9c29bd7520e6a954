"""Journal files: a ring's records back exactly, with their positions; a torn tail left out;
a file that is not one refused with its name."""
import os
import struct

import numpy as np
import pytest

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
from ttquant.core.records import EXEC_REPORT_DTYPE, MARKET_EVENT_DTYPE, RecordType
from ttquant.sidecars.recorder.journal_file import (
    JournalFile, JournalFileError, JournalWriter, journal_files, read_journal,
)

ME = RecordType.MARKET_EVENT


def _events(first, n):
    a = np.zeros(n, MARKET_EVENT_DTYPE)
    a["seq"] = np.arange(first, first + n)
    a["price"] = np.arange(first, first + n) * 7 + 61_000_00
    a["qty"] = 3
    return a


def _table():
    t = InstrumentTable("binance")
    t.add(Instrument(instrument_id=1, venue="binance", symbol="BTCUSDT", market_type=MarketType.SPOT,
                     base="BTC", quote="USDT", price_precision=2, size_precision=5, tick_size=1,
                     step_size=1, min_qty=1, max_qty=0, min_price=1, max_price=0, min_notional=500))
    return t


def test_records_come_back_memory_mapped_with_their_positions_and_the_table(tmp_path):
    table = _table()
    w = JournalWriter(str(tmp_path), "/ttq.binance.ticks", ME, MARKET_EVENT_DTYPE.itemsize, 1000,
                      table.to_json())
    w.append(_events(0, 10))
    w.append(_events(10, 5).tobytes())              # bytes are taken as they are
    assert w.next_position == 1015
    w.close()
    f = JournalFile(w.path)
    assert (f.first_position, f.count, f.next_position, f.torn_bytes) == (1000, 15, 1015, 0)
    assert f.ring_name == "/ttq.binance.ticks" and f.record_type == ME
    assert f.header_size % 4096 == 0
    assert isinstance(f.records, np.memmap)
    assert f.records.tobytes() == _events(0, 15).tobytes()
    assert f.instruments == table


def test_a_partial_record_at_the_end_is_left_out(tmp_path):
    w = JournalWriter(str(tmp_path), "/ttq.v.ticks", ME, MARKET_EVENT_DTYPE.itemsize, 0)
    w.append(_events(0, 3))
    w.close()
    with open(w.path, "ab") as f:                   # a writer killed in the middle of a record
        f.write(_events(3, 1).tobytes()[:50])
    f = JournalFile(w.path)
    assert f.count == 3 and f.torn_bytes == 50
    assert list(f.records["seq"]) == [0, 1, 2]


def test_runs_in_files_make_one_journal_and_its_gaps(tmp_path):
    d = str(tmp_path)
    for first, n in ((0, 4), (4, 3), (20, 2)):      # 7..19 were never read
        w = JournalWriter(d, "/ttq.v.ticks", ME, MARKET_EVENT_DTYPE.itemsize, first)
        w.append(_events(first, n))
        w.close()
    files = journal_files(d)
    assert [f.first_position for f in files] == [0, 4, 20]
    records, positions, gaps = read_journal(d)
    assert list(positions) == [0, 1, 2, 3, 4, 5, 6, 20, 21]
    assert list(records["seq"]) == list(positions)
    assert gaps == [(7, 13)]


def test_exec_reports_keep_their_own_record_size(tmp_path):
    w = JournalWriter(str(tmp_path), "/ttq.v.exec", RecordType.EXEC_REPORT, EXEC_REPORT_DTYPE.itemsize, 0)
    reports = np.zeros(4, EXEC_REPORT_DTYPE)
    reports["client_order_id"] = [5, 6, 7, 8]
    w.append(reports)
    w.close()
    assert list(JournalFile(w.path).records["client_order_id"]) == [5, 6, 7, 8]


def test_a_whole_number_of_records_or_nothing_is_appended(tmp_path):
    w = JournalWriter(str(tmp_path), "/ttq.v.ticks", ME, MARKET_EVENT_DTYPE.itemsize, 0)
    with pytest.raises(ValueError, match="whole number"):
        w.append(b"\0" * 100)
    w.close()
    assert JournalFile(w.path).count == 0


def test_files_that_are_not_journals_are_refused_by_name(tmp_path):
    bad = tmp_path / "20260101T000000-00000000000000000001-00000000000000000000.ttqj"
    bad.write_bytes(b"not a journal" * 20)
    with pytest.raises(JournalFileError, match=str(bad)):
        JournalFile(str(bad))
    w = JournalWriter(str(tmp_path / "v2"), "/ttq.v.ticks", ME, MARKET_EVENT_DTYPE.itemsize, 0)
    w.close()
    with open(w.path, "r+b") as f:                  # a file of a later layout
        f.seek(8)
        f.write(struct.pack("<I", 99))
    with pytest.raises(JournalFileError, match="layout version 99"):
        JournalFile(w.path)
    assert journal_files(str(tmp_path / "nothing here")) == []
    assert not os.path.exists(tmp_path / "nothing here")
