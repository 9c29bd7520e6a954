"""The fast frame scanner agrees with orjson on every frame it accepts, and refuses the rest."""
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttquant.core.md.binance.frame_scan import FIELD_NAMES, scan
from ttquant.core.sim.captures import read_cryptofeed_ws, read_hftbacktest, sample_data_dir

DATA = sample_data_dir() / "binance"


def agrees(frame):
    """None if the scanner fell back; else assert every field it saw is what orjson sees."""
    got = scan(frame)
    if got is None:
        return None
    doc = orjson.loads(frame)           # anything the scanner accepts is valid JSON
    assert isinstance(doc, dict) and set(doc) <= {"stream", "data"} and isinstance(doc["data"], dict)
    data = doc["data"]
    for key in FIELD_NAMES:
        if key not in data:
            assert key not in got, key
        elif got.get(key) is not ...:
            assert got[key] == data[key] and type(got[key]) is type(data[key]), (key, got[key], data[key])
    return got


def all_capture_frames():
    for name in ("spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz"):
        for m in read_hftbacktest(DATA / name):
            if m.source == "ws":
                yield m.payload
    for name in ("cryptofeed_spot.ws.0", "cryptofeed_usdm.ws.0"):
        for m in read_cryptofeed_ws(DATA / name):
            yield m.payload


def test_every_captured_frame_is_scanned_exactly():
    accepted = total = 0
    for frame in all_capture_frames():
        total += 1
        if agrees(frame) is not None:
            accepted += 1
    assert total > 130_000
    assert accepted == total        # real Binance frames never need the slow path


@pytest.mark.parametrize("frame", [
    b'{"stream":"x","data":{"e":"trade","p":"1\\u0030"}}',     # escape
    b'{"stream":"x","data":{"e":"trade","p":1.5}}',             # a float
    b'{"stream":"x","data":{"e":"trade","t":-1}}',              # negative int
    b'{"stream":"x","data":{"e":"trade","t":01}}',              # leading zero: not JSON
    b'{"stream":"x","data":{"e":"a","e":"b"}}',                 # repeated key
    b'{"stream":"x","data":{"e":"trade"}} trailing',
    b'{"stream":"x","data":{"e":"trade"}',
    b'{"stream":"x","other":1,"data":{}}',
    b'{"data":{"b":[["1","2"],["3"]]}}',
    b'{"data":{"b":[["1","2"],]}}',
    b'[]', b'', b'{}', b'{"data":{"s":"\xc3\xa9"}}',
])
def test_unusual_frames_fall_back(frame):
    assert scan(frame) is None


def test_levels_and_nested_values():
    got = agrees(b'{"stream":"s","data":{"e":"depthUpdate","k":{"x":[1,{"y":null}]},'
                 b'"b":[["1.0","2"],["3","0"]],"a":[],"m":false}}')
    assert got["b"] == [["1.0", "2"], ["3", "0"]] and got["a"] == [] and got["m"] is False


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_mutated_real_frames_never_disagree_with_orjson(data):
    frames = _sample_frames()
    frame = bytearray(data.draw(st.sampled_from(frames)))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        i = data.draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "flip" and frame:
            frame[i] = data.draw(st.sampled_from(b'"{}[],:0123456789.-etrufalsn \\x'))
        elif op == "cut":
            del frame[i:i + data.draw(st.integers(1, 20))]
        elif op == "dup":
            frame[i:i] = frame[i:i + data.draw(st.integers(1, 20))]
        else:
            frame[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    frame = bytes(frame)
    try:
        got = scan(frame)
    except Exception as exc:     # the scanner itself must never raise
        pytest.fail(f"scan raised {exc!r} on {frame!r}")
    if got is not None:
        try:
            agrees(frame)
        except orjson.JSONDecodeError:
            pytest.fail(f"scanner accepted invalid JSON {frame!r}")


_FRAMES = []


def _sample_frames():
    if not _FRAMES:
        rng = random.Random(7)
        frames = list(all_capture_frames())
        _FRAMES.extend(rng.sample(frames, 300))
    return _FRAMES


@pytest.mark.parametrize("skipped", [
    b'{"e":"trade","E":1723161440305]',     # found by the fuzz test above: brackets that do not pair
    b'[1,{"a":2]}', b'[1:2]', b'{1:2}', b'{"a":1:2}', b'[1,]', b'{"a":1,}', b'{"a"}', b'{,}', b'[,1]',
    b'{"a":1 "b":2}', b'[1 2]',
])
def test_a_value_the_fast_path_skips_is_still_checked_like_json(skipped):
    """Unknown keys are skipped, not ignored: a frame orjson refuses must take orjson's path."""
    frame = b'{"stream":"btcusdt@trade","data":{"e":"trade","zz":' + skipped + b',"s":"BTCUSDT"}}'
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(frame)
    assert scan(frame) is None
    good = b'{"stream":"btcusdt@trade","data":{"e":"trade","zz":{"a":[1,{"b":[]},"c",{}],"d":true},"s":"BTCUSDT"}}'
    assert agrees(good) == {"e": "trade", "s": "BTCUSDT"}
