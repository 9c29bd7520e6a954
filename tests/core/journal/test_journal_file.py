"""Journal files: a ring's records back exactly, with their positions; a torn tail left out;
a file that is not one refused with its name."""
import os
import struct

import numpy as np
import pytest

from ttquant.core.journal import (
    JournalFile,
    JournalFileError,
    JournalWriter,
    journal_files,
    read_journal,
)
from ttquant.core.records import EXEC_REPORT_DTYPE, MARKET_EVENT_DTYPE, RecordType

from ttq_testing import spot_table

ME = RecordType.MARKET_EVENT


def _events(first, n):
    a = np.zeros(n, MARKET_EVENT_DTYPE)
    a["seq"] = np.arange(first, first + n)
    a["price"] = np.arange(first, first + n) * 7 + 61_000_00
    a["qty"] = 3
    return a


def test_records_come_back_memory_mapped_with_their_positions_and_the_table(tmp_path):
    table = spot_table()
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


def test_a_file_cut_inside_its_header_holds_nothing_and_is_left_out(tmp_path):
    d = str(tmp_path)
    w = JournalWriter(d, "/ttq.v.ticks", ME, MARKET_EVENT_DTYPE.itemsize, 0)
    w.append(_events(0, 5))
    w.close()
    for name, data in (("20990101T000000-09999999999999999998-00000000000000000005.ttqj", b""),
                       ("20990101T000000-09999999999999999999-00000000000000000005.ttqj", b"TTQJRNL1" + b"\0" * 40)):
        (tmp_path / name).write_bytes(data)     # a full disk, or a crash, as the file was made
    assert [f.path for f in journal_files(d)] == [w.path]
    assert list(read_journal(d)[1]) == [0, 1, 2, 3, 4]
    (tmp_path / "20990101T000000-09999999999999999997-00000000000000000005.ttqj").write_bytes(b"garbage!" * 3)
    with pytest.raises(JournalFileError, match="not a TTQuant journal file"):
        journal_files(d)


def test_files_are_ordered_by_ring_and_position_not_by_name(tmp_path):
    """The names carry the wall clock, which can step back; the headers decide the order."""
    d = str(tmp_path)
    paths = []
    for ring, first, n in ((1, 0, 3), (1, 3, 2), (2, 0, 4)):
        w = JournalWriter(d, "/ttq.v.ticks", ME, MARKET_EVENT_DTYPE.itemsize, first, ring_created_ns=ring)
        w.append(_events(first + 100 * ring, n))
        w.close()
        paths.append(w.path)
    # the second file of ring 1 named as if the clock had stepped back before the first
    early = os.path.join(d, "19990101T000000-00000000000000000001-00000000000000000003.ttqj")
    os.rename(paths[1], early)
    assert [(f.ring_created_ns, f.first_position) for f in journal_files(d)] == [(1, 0), (1, 3), (2, 0)]
    records, positions, gaps = read_journal(d)                  # the latest ring by default
    assert list(positions) == [0, 1, 2, 3] and list(records["seq"]) == [200, 201, 202, 203]
    records, positions, gaps = read_journal(d, ring_created_ns=1)
    assert list(positions) == [0, 1, 2, 3, 4] and list(records["seq"]) == [100, 101, 102, 103, 104]
