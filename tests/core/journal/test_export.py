"""`ttquant journal export`: one table per recorded ring and instrument, every price and quantity
an exact decimal at the instrument's precision (never a float), what each column is in its
metadata, the same rows in Parquet and CSV, a window by time."""
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pyarrow.csv
import pyarrow.parquet

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
from ttquant.core.journal import JournalWriter
from ttquant.core.records import EXEC_REPORT_DTYPE, MARKET_EVENT_DTYPE, EventKind, OrderStatus, RecordType

CLI = [sys.executable, "-m", "ttquant.core.cli"]
T0 = 1_723_075_200_000_000_000


def _table():
    t = InstrumentTable("binance")
    t.add(Instrument(1, "binance", "BTCUSDT", MarketType.SPOT, "BTC", "USDT", 2, 5, 1, 1, 1, 0, 1, 0, 500))
    t.add(Instrument(2, "binance", "BTCUSDT", MarketType.LINEAR_PERPETUAL, "BTC", "USDT", 1, 3, 1, 1, 1, 0, 1, 0, 500))
    return t


def _journal(root):
    n = 10
    ticks = np.zeros(n, MARKET_EVENT_DTYPE)
    ticks["ts_pub"] = T0 + np.arange(n) * 1_000_000
    ticks["instrument_id"] = [1, 2] * 5
    ticks["kind"] = [EventKind.TRADE, EventKind.TRADE, EventKind.BBO, EventKind.BBO] + [EventKind.TRADE] * 6
    ticks["price"] = [6_123_456, 612_345, 6_123_400, 612_340, -1, 1, 2, 3, 4, 5]
    ticks["qty"] = [12_345, 7, 1, 2, 3, 4, 5, 6, 7, 8]
    bbo = ticks["kind"] == EventKind.BBO
    ticks["ask_price"][bbo] = [6_123_500, 612_350]       # union fields: set on the BBO rows only
    execs = np.zeros(1, EXEC_REPORT_DTYPE)
    execs["instrument_id"], execs["status"] = 1, OrderStatus.FILLED
    execs["last_price"], execs["last_qty"], execs["fee"], execs["ts_pub"] = 6_123_456, 100, 123_456_789, T0
    for kind, records, rtype in (("ticks", ticks, RecordType.MARKET_EVENT), ("exec", execs, RecordType.EXEC_REPORT)):
        w = JournalWriter(str(root / f"binance.{kind}"), f"/ttq.binance.{kind}", rtype, records.dtype.itemsize, 0,
                          _table().to_json(), ring_created_ns=T0)
        w.append(records)
        w.close()


def test_parquet_and_csv_carry_exact_decimals_per_instrument(tmp_path):
    _journal(tmp_path / "journal")
    out = subprocess.run([*CLI, "journal", "export", str(tmp_path / "journal"), "--out", str(tmp_path / "pq")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names = sorted(p.split("/")[-1] for p in out.stdout.split())
    assert names == ["exec.BTCUSDT.spot.parquet", "ticks.BTCUSDT.perp.parquet", "ticks.BTCUSDT.spot.parquet"]
    spot = pyarrow.parquet.read_table(tmp_path / "pq" / "ticks.BTCUSDT.spot.parquet")
    assert str(spot.schema.field("price").type) == "decimal128(38, 2)"
    assert str(spot.schema.field("qty").type) == "decimal128(38, 5)"
    assert spot.column("price").to_pylist()[:3] == [Decimal("61234.56"), Decimal("61234.00"), Decimal("-0.01")]
    assert spot.column("qty").to_pylist()[0] == Decimal("0.12345")
    assert spot.column("ask_price").to_pylist()[:2] == [None, Decimal("61235.00")]      # BBO rows only
    assert b"exact decimal at scale 2" in spot.schema.field("price").metadata[b"ttquant"]
    assert spot.column("kind").to_pylist()[:2] == ["TRADE", "BBO"]
    perp = pyarrow.parquet.read_table(tmp_path / "pq" / "ticks.BTCUSDT.perp.parquet")
    assert perp.column("price").to_pylist()[0] == Decimal("61234.5") and perp.num_rows == 5
    fills = pyarrow.parquet.read_table(tmp_path / "pq" / "exec.BTCUSDT.spot.parquet")
    assert fills.column("fee").to_pylist() == [Decimal("1.23456789")]
    assert fills.column("status").to_pylist() == ["FILLED"]
    out = subprocess.run([*CLI, "journal", "export", str(tmp_path / "journal"), "--format", "csv", "--out",
                          str(tmp_path / "csv"), "--from", str(T0 + 4_000_000)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "csv" / "ticks.BTCUSDT.spot.csv").read_text()
    rows = pyarrow.csv.read_csv(tmp_path / "csv" / "ticks.BTCUSDT.spot.csv")
    assert rows.num_rows == 3 and "0.02" in text and "e-" not in text          # from 4 ms on, no float text


def test_export_refuses_what_it_cannot_do_in_one_line(tmp_path):
    out = subprocess.run([*CLI, "journal", "export", str(tmp_path / "none")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "no such directory" in out.stderr and "Traceback" not in out.stderr
