"""Capture readers: both formats, the inline snapshot, and a clear error for a bad line."""
import gzip

import pytest

from ttquant.core.sim.captures import (
    CaptureFormatError,
    read_cryptofeed,
    read_cryptofeed_http,
    read_hftbacktest,
    sample_data_dir,
)


def test_sample_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TTQ_SAMPLE_DATA", str(tmp_path))
    assert sample_data_dir() == tmp_path
    monkeypatch.delenv("TTQ_SAMPLE_DATA")
    default = sample_data_dir()        # the project's own data/, beside core/
    assert default.name == "data" and (default.parent / "core" / "sim" / "captures.py").is_file()
    assert (default / "NOTICE").is_file() and (default / "binance" / "spot_btcusdt_20240808.gz").is_file()


def test_hftbacktest_lines_and_the_inline_snapshot(tmp_path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'1000 {"stream":"btcusdt@trade","data":{}}\n2000 {"lastUpdateId":5,"bids":[],"asks":[]}\n\n')
    got = list(read_hftbacktest(path))
    assert [(m.recv_ns, m.source) for m in got] == [(1000, "ws"), (2000, "rest:depth")]
    assert got[1].payload.startswith(b'{"lastUpdateId"')


def test_a_bad_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b'1000 {}\nnot-a-timestamp {}\n')
    with pytest.raises(CaptureFormatError, match=r"bad.txt:2"):
        list(read_hftbacktest(path))
    http = tmp_path / "h.http.0"
    http.write_bytes(b"https://x/depth 1.5: {}\n")
    with pytest.raises(CaptureFormatError, match=r"h.http.0:1"):
        list(read_cryptofeed_http(http))


def test_real_cryptofeed_capture_merges_rest_replies_in_time_order():
    d = sample_data_dir() / "binance"
    msgs = read_cryptofeed(d / "cryptofeed_spot.ws.0", d / "cryptofeed_spot.http.0")
    assert [m.recv_ns for m in msgs] == sorted(m.recv_ns for m in msgs)
    rest = [m for m in msgs if m.source != "ws"]
    assert len(rest) == 4 and all("/api/v3/depth?symbol=" in m.source for m in rest)
    assert sum(m.source == "ws" for m in msgs) > 200
