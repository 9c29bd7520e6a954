"""Captures given by path (core/sim/binance_replay.py): which file is what and which market, the
snapshots and exchangeInfo that go with them, a directory on one timeline, and a one-line
refusal naming the file and line of anything that is not a capture."""
import gzip
import shutil

import orjson
import pytest

from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info
from ttquant.core.sim.binance_replay import load_replay
from ttquant.core.sim.binance_venue import BinanceVenue, ReplayFeed, VenueConfig, build_parser
from ttquant.core.sim.captures import CaptureFormatError, sample_data_dir

DATA = sample_data_dir() / "binance"


def frame(stream, **data):
    return orjson.dumps({"stream": stream, "data": data})


def spot_diff(symbol, first, last, bids=(("100.10", "1.5"),), asks=()):
    return frame(f"{symbol.lower()}@depth@100ms", e="depthUpdate", E=1, s=symbol, U=first, u=last,
                 b=[list(b) for b in bids], a=[list(a) for a in asks])


def usdm_diff(symbol, first, last, prev):
    return frame(f"{symbol.lower()}@depth@0ms", e="depthUpdate", E=1, T=1, s=symbol, U=first, u=last, pu=prev,
                 b=[["200.5", "0.001"]], a=[["200.6", "0.25"]])


def kline(symbol):
    return frame(f"{symbol.lower()}@kline_1m", e="kline", E=1, s=symbol,
                 k={"t": 0, "o": "1.5", "h": "1.75", "l": "1.5", "c": "1.625", "v": "12.5"})


def write_lines(path, lines, gz=False, end=b"\n"):
    body = end.join(f"{t} ".encode() + payload for t, payload in lines) + end
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(body)
    else:
        path.write_bytes(body)
    return path


def refused(what, **kw):
    with pytest.raises(CaptureFormatError) as exc:
        load_replay(str(what), **kw)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_file_by_path_is_the_same_replay_as_its_built_in_name(tmp_path):
    copy = shutil.copy(DATA / "spot_btcusdt_20240808.gz", tmp_path / "capture.gz")     # no market word in it
    feed = load_replay(str(copy))
    built_in = ReplayFeed.named("btcusdt")
    spot = [f for f in built_in.frames if f.market == "spot"]
    assert [(f.at_ns, f.key, f.payload) for f in feed.frames] == [(f.at_ns, f.key, f.payload) for f in spot]
    assert {f.market for f in feed.frames} == {"spot"}
    assert feed.snapshots == {("spot", "BTCUSDT"): built_in.snapshots[("spot", "BTCUSDT")]}
    assert list(feed.exchange_info) == ["spot"]         # the sample data's, which lists BTCUSDT
    assert feed.name == str(copy) and feed.description == "replay of capture.gz"
    assert any("spot (depth diffs without pu)" in note for note in feed.notes)


def test_a_cryptofeed_ws_file_brings_its_http_replies(tmp_path):
    feed = load_replay(str(DATA / "cryptofeed_usdm.ws.0"))
    assert {f.market for f in feed.frames} == {"usdm"}
    assert sorted(s for _, s in feed.snapshots) == ["AKROUSDT", "CTKUSDT", "KEEPUSDT", "SUSHIUSDT"]
    assert any("USD-M (its connect URL)" in note for note in feed.notes)


def test_a_directory_replays_every_market_in_receive_time_order(tmp_path):
    write_lines(tmp_path / "binance-spot-1.frames.gz", [(1000, spot_diff("BTCUSDT", 10, 12)),
                                                       (3000, spot_diff("BTCUSDT", 13, 14))], gz=True)
    write_lines(tmp_path / "binance-usdm-1.frames", [(2000, usdm_diff("BTCUSDT", 50, 55, 49)),
                                                     (4000, usdm_diff("BTCUSDT", 56, 60, 55))])
    (tmp_path / "README.md").write_text("what these are")       # left out by name
    (tmp_path / ".partial").write_text("hidden")
    feed = load_replay(str(tmp_path))
    assert [(f.at_ns, f.market) for f in feed.frames] == [(1000, "spot"), (2000, "usdm"), (3000, "spot"),
                                                          (4000, "usdm")]
    assert set(feed.exchange_info) == {"spot", "usdm"}
    assert feed.description == f"replay of {tmp_path} (2 files, spot and usdm)"
    (tmp_path / "notes.txt").write_text("not a capture\n")
    assert refused(tmp_path).startswith(f"{tmp_path / 'notes.txt'}:1: not a capture: 'not a capture'")


@pytest.mark.parametrize("name, lines, market, expected", [
    ("a.gz", [(1, usdm_diff("ETHUSDT", 5, 9, 4))], None, "usdm"),                    # pu
    ("a.gz", [(1, frame("x@bookTicker", u=1, s="X", b="1", B="1", a="2", A="1"))], None, "spot"),
    ("a.gz", [(1, frame("x@aggTrade", e="aggTrade", s="X", a=1, p="1", q="1", f=1, l=1, T=1, m=True))],
     None, "usdm"),                                                                  # no M
    ("a.gz", [(1, frame("x@markPrice", e="markPriceUpdate", s="X", p="1"))], None, "usdm"),
    ("x-usdm-1.gz", [(1, kline("ETHUSDT"))], None, "usdm"),                           # klines: the name says
    ("klines.gz", [(1, kline("ETHUSDT"))], "usdm", "usdm"),                           # ...or --market
])
def test_the_market_of_a_file(tmp_path, name, lines, market, expected):
    feed = load_replay(str(write_lines(tmp_path / name, lines)), market=market)
    assert {f.market for f in feed.frames} == {expected}


def test_a_market_that_cannot_be_told_or_contradicts_is_refused(tmp_path):
    klines = write_lines(tmp_path / "klines.gz", [(1, kline("ETHUSDT"))])
    assert "cannot tell spot from USD-M" in refused(klines) and "--market spot|usdm" in refused(klines)
    usdm = write_lines(tmp_path / "u.gz", [(1, kline("ETHUSDT")), (2, usdm_diff("ETHUSDT", 5, 9, 4))])
    assert refused(usdm, market="spot") == f"{usdm}:2: its frames are USD-M (depth diffs with pu), not --market spot"
    both = write_lines(tmp_path / "both.gz", [(1, spot_diff("BTCUSDT", 1, 2)), (2, usdm_diff("ETHUSDT", 5, 9, 4))])
    assert refused(both) in (f"{both}: 1 USD-M frames (line 2: depth diffs with pu) among 1 spot ones (line 1: "
                             "depth diffs without pu): one market per file",
                             f"{both}: 1 spot frames (line 1: depth diffs without pu) among 1 USD-M ones (line 2: "
                             "depth diffs with pu): one market per file")


def test_a_recordings_broken_frames_are_replayed_as_they_came(tmp_path):
    """md records what the venue sent, broken frames too (venue-sim's malformed fault sends a spot-looking
    trade to USD-M clients): outvoted, kept, and sent again to every client of the file's market."""
    diffs = [(i, usdm_diff("BTCUSDT", 10 * i, 10 * i + 9, 10 * i - 1)) for i in range(1, 30)]
    broken = [(100, b'{"stream":"btcusdt@trade","data":{"e":"trade"'),
              (101, b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"nan"}}'),
              (102, b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","s":"BTCUSDT","U":"1"}}'),
              (103, b'{"code":-1003,"msg":"Too many requests"}')]        # a REST error md recorded: skipped
    feed = load_replay(str(write_lines(tmp_path / "binance-usdm-1.frames.gz", diffs + broken)))
    assert {f.market for f in feed.frames} == {"usdm"} and len(feed.frames) == 32
    assert [(f.at_ns, f.key, f.depth) for f in feed.frames[-3:]] == [
        (100, "*", None), (101, "btcusdt@trade", None), (102, "btcusdt@depth", None)]     # * : every client
    assert any("1 spot frames (line 31: trades without X) among 29 USD-M ones" in n and "replayed as USD-M" in n
               for n in feed.notes), feed.notes
    assert any("2 lines are not stream frames (the first, line 30: not JSON" in n for n in feed.notes), feed.notes


@pytest.mark.parametrize("body, line, why", [
    (b"1 {not json\n2 " + spot_diff("BTCUSDT", 1, 2) + b"\n", 1, "not JSON"),
    (b"1 " + spot_diff("BTCUSDT", 1, 2) + b"\nlater " + spot_diff("BTCUSDT", 3, 4) + b"\n", 2,
     "not '<recv_ns> <json>'"),
    (b'1 {"hello": 1}\n', 1, "neither a combined-stream frame"),
    (b"1 " + spot_diff("BTCUSDT", 1, 2) + b'\n2 {"lastUpdateId": "x"}\n', 2, "a depth snapshot without"),
    (b'1 {"stream":"btcusdt@depth","data":{"e":"depthUpdate","s":"BTCUSDT","U":"1"}}\n', 1,
     "a depthUpdate without s, U, u, b and a"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", 1, "not a capture: '\\x89PNG'"),
    (b"", None, "empty, not a capture"),
])
def test_what_is_not_a_capture_is_refused_naming_file_and_line(tmp_path, body, line, why):
    path = tmp_path / "x.dat"
    path.write_bytes(body)
    message = refused(path)
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: "), message
    assert why in message, message


def test_a_recording_cut_off_mid_write_replays_what_came_before(tmp_path):
    lines = b"".join(b"%d " % (i + 1) + spot_diff("BTCUSDT", 2 * i + 1, 2 * i + 2) + b"\n" for i in range(200))
    torn = tmp_path / "torn.frames"
    torn.write_bytes(lines + b'201 {"stream":"btcusdt@dep')     # the writer was killed mid-line
    feed = load_replay(str(torn))
    assert len(feed.frames) == 200 and any(":201: its last line is cut off" in n for n in feed.notes)
    whole = gzip.compress(lines)
    cut = tmp_path / "cut.frames.gz"
    cut.write_bytes(whole[:len(whole) * 2 // 3])        # a gzip stream never finished
    feed = load_replay(str(cut))
    assert 0 < len(feed.frames) < 200 and any("the gzip stream ends after line" in n for n in feed.notes)


def test_an_inline_snapshot_goes_to_the_symbol_whose_ids_it_meets(tmp_path):
    path = write_lines(tmp_path / "two.gz", [
        (1, spot_diff("BTCUSDT", 1000, 1005)), (2, spot_diff("ETHUSDT", 90_000, 90_010)),
        (3, b'{"lastUpdateId":90012,"bids":[["1.0","1"]],"asks":[]}'),
        (4, b'{"lastUpdateId":1007,"bids":[["2.0","1"]],"asks":[]}'),
        (5, spot_diff("BTCUSDT", 1006, 1009)), (6, spot_diff("ETHUSDT", 90_011, 90_020)),
        (7, b'{"result":null,"id":1}')])        # a SUBSCRIBE reply: skipped
    feed = load_replay(str(path))
    assert [orjson.loads(b)["lastUpdateId"] for _, b in feed.snapshots[("spot", "ETHUSDT")]] == [90012]
    assert [orjson.loads(b)["lastUpdateId"] for _, b in feed.snapshots[("spot", "BTCUSDT")]] == [1007]
    assert len(feed.frames) == 4


def test_a_book_without_a_snapshot_starts_empty_just_before_its_first_diff(tmp_path):
    path = write_lines(tmp_path / "nosnap.gz", [(5, spot_diff("BTCUSDT", 100, 104)),
                                                (6, usdm_diff("BTCUSDT", 50, 55, 49))][:1])
    feed = load_replay(str(path))
    assert feed.snapshots[("spot", "BTCUSDT")] == [(5, b'{"lastUpdateId":99,"bids":[],"asks":[]}')]
    assert any("no depth snapshot in the capture" in n for n in feed.notes)
    usdm = load_replay(str(write_lines(tmp_path / "u.gz", [(7, usdm_diff("BTCUSDT", 50, 55, 49))])))
    assert orjson.loads(usdm.snapshots[("usdm", "BTCUSDT")][0][1])["lastUpdateId"] == 50    # U <= id <= u


def test_exchange_info_for_a_symbol_no_document_lists_is_inferred(tmp_path):
    path = write_lines(tmp_path / "eth.gz", [
        (1, usdm_diff("ETHUSDT", 5, 9, 4)),
        (2, frame("ethusdt@trade", e="trade", s="ETHUSDT", t=1, p="200.25", q="0.125", T=1, m=True, X="MARKET"))])
    feed = load_replay(str(path))
    doc = orjson.loads(feed.exchange_info["usdm"])
    (eth,), skipped = instruments_from_exchange_info(doc, "usdm", symbols=["ETHUSDT"])
    assert not skipped
    assert (eth.base, eth.quote, eth.price_precision, eth.size_precision) == ("ETH", "USDT", 2, 3)
    assert eth.tick_size == 1 and eth.step_size == 1            # 0.01 and 0.001 at those precisions
    assert "BTCUSDT" in {e["symbol"] for e in doc["symbols"]}   # the sample document it extends
    assert any("ETHUSDT: no document lists it, inferred from the capture (tick 0.01, step 0.001)" in n
               for n in feed.notes)


def test_a_json_exchange_info_beside_the_file_is_used(tmp_path):
    path = write_lines(tmp_path / "eth.gz", [(1, usdm_diff("ETHUSDT", 5, 9, 4))])
    info = {"timezone": "UTC", "symbols": [{"symbol": "ETHUSDT", "contractType": "PERPETUAL", "marker": 1}]}
    (tmp_path / "usdm-exchangeInfo.json").write_bytes(orjson.dumps(info))
    feed = load_replay(str(path))
    assert orjson.loads(feed.exchange_info["usdm"]) == info


def test_long_silences_are_cut_to_max_gap():
    frames = ReplayFeed.named("cryptofeed-spot").frames[:3]
    frames[2].at_ns = frames[1].at_ns + 3600 * 10**9          # an hour without a frame
    venue = BinanceVenue(ReplayFeed(frames, {}, {}, "t"), VenueConfig(max_gap_s=2))
    at = venue._timeline()
    assert at[2] - at[1] == 2 * 10**9 and at[1] - at[0] == frames[1].at_ns - frames[0].at_ns
    assert venue.stats["gaps_cut"] == 1
    assert BinanceVenue(ReplayFeed(frames, {}, {}, "t"), VenueConfig(max_gap_s=0))._timeline()[2] == frames[2].at_ns


def test_the_default_port_is_8765_and_0_asks_for_a_free_one(capsys):
    from ttquant.core.cli import main as cli_main
    assert build_parser().parse_args([]).port == 8765
    assert build_parser().parse_args(["--port", "0"]).port == 0
    assert VenueConfig().port == 8765
    # `ttquant venue-sim binance` has no parser of its own: the venue's takes every option, new ones too
    with pytest.raises(SystemExit) as exc:
        cli_main(["venue-sim", "binance", "--weight-limit", "many"])
    assert exc.value.code == 2
    assert "ttquant venue-sim binance: error: argument --weight-limit" in capsys.readouterr().err
