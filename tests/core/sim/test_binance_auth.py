"""The simulated venue's SIGNED request check: Binance's documented example vectors pass, requests signed by
our own client (core/venues/binance/signing.py) pass, and every refusal has Binance's exact body and HTTP code."""
from decimal import Decimal
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization

from ttquant.core.sim.binance_auth import ApiKeys, check_signed, check_ws_params, rest_signature_payload
from ttquant.core.venues.binance.signing import HmacSigner, sign_ws_params, signed_query

from ttq_testing import new_ed25519_signer

# https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security (HMAC example)
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PAYLOAD = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
               "&timestamp=1499827319559")
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
DOC_NON_ASCII_PAYLOAD = ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
                         "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559")
DOC_NON_ASCII_SIGNATURE = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
DOC_TS = 1499827319559

ED_KEY = "EdKey0123456789abcdefEdKey0123456789abcdefEdKey0123456789abcdef"
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": Decimal("0.00100"), "price": Decimal("61000.00"), "newClientOrderId": "ttq-1"}
NOW = 1_723_100_000_000

BAD_FORMAT = (401, {"code": -2014, "msg": "API-key format invalid."})
UNKNOWN_KEY = (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
AHEAD = (400, {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."})
OUTSIDE = (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
BAD_SIGNATURE = (400, {"code": -1022, "msg": "Signature for this request is not valid."})
BAD_RECV_WINDOW = (400, {"code": -1131, "msg": "'recvWindow' must be less than 60000."})


def mandatory(name):
    return 400, {"code": -1102, "msg": f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."}


@pytest.fixture(scope="module")
def ed_signer():
    return new_ed25519_signer()


@pytest.fixture
def keys(ed_signer):
    k = ApiKeys()
    k.add_hmac(DOC_KEY, DOC_SECRET)
    k.add_ed25519(ED_KEY, ed_signer.public_key_pem())
    return k


def hdr(key=DOC_KEY):
    return {"X-MBX-APIKEY": key}


def test_binance_documented_hmac_vectors_pass(keys):
    assert check_signed(keys, "POST", f"{DOC_PAYLOAD}&signature={DOC_SIGNATURE}", "", hdr(), DOC_TS + 10) is None
    assert check_signed(keys, "POST", f"{DOC_NON_ASCII_PAYLOAD}&signature={DOC_NON_ASCII_SIGNATURE}", "",
                        hdr(), DOC_TS) is None
    # HMAC signatures are not case-sensitive (documented)
    assert check_signed(keys, "POST", f"{DOC_PAYLOAD}&signature={DOC_SIGNATURE.upper()}", "", hdr(), DOC_TS) is None
    # the same params in the form body, and split between query and body: what is signed is query + body
    assert check_signed(keys, "POST", "", f"{DOC_PAYLOAD}&signature={DOC_SIGNATURE}", hdr(), DOC_TS) is None
    head, tail = "symbol=LTCBTC&side=BUY&type=LIMIT", "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
    assert rest_signature_payload(head, f"{tail[1:]}&timestamp={DOC_TS}&signature=x") == \
        f"{head}{tail[1:]}&timestamp={DOC_TS}"
    assert check_signed(keys, "POST", head, f"{tail[1:]}&timestamp={DOC_TS}&signature={DOC_SIGNATURE}",
                        hdr(), DOC_TS) == BAD_SIGNATURE  # the doc's signature covers the payload with '&' there
    glued = HmacSigner(DOC_SECRET).sign(f"{head}{tail[1:]}&timestamp={DOC_TS}".encode())
    assert check_signed(keys, "POST", head, f"{tail[1:]}&timestamp={DOC_TS}&signature={glued}",
                        hdr(), DOC_TS) is None


def test_binance_documented_websocket_hmac_vector_passes(keys):
    # https://developers.binance.com/docs/binance-spot-api-docs/websocket-api/request-security
    params = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000",
              "price": "52000.00", "recvWindow": 100, "timestamp": 1645423376532, "apiKey": DOC_KEY,
              "signature": "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"}
    assert check_ws_params(keys, params, 1645423376532 + 100) is None
    assert check_ws_params(keys, params, 1645423376532 + 101) == OUTSIDE
    non_ascii = dict(params, symbol="１２３４５６", side="BUY", quantity="1.00000000", price="0.10000000",
                     recvWindow=5000, signature="b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd")
    assert check_ws_params(keys, non_ascii, 1645423376532) is None
    assert check_ws_params(keys, dict(params, price="52000.01"), 1645423376532) == BAD_SIGNATURE


@pytest.mark.parametrize("which", ["hmac", "ed25519"])
def test_requests_signed_by_our_client_pass_and_tampering_fails(keys, ed_signer, which):
    signer, key = (HmacSigner(DOC_SECRET), DOC_KEY) if which == "hmac" else (ed_signer, ED_KEY)
    query = signed_query(signer, ORDER, timestamp_ms=NOW - 40, recv_window_ms=5000)
    assert check_signed(keys, "POST", query, "", hdr(key), NOW) is None
    assert check_signed(keys, "POST", "", query, hdr(key), NOW) is None           # as a form body
    assert check_signed(keys, "GET", query, "", hdr(key), NOW) is None
    assert check_signed(keys, "POST", query.replace("61000.00", "61000.01"), "", hdr(key), NOW) == BAD_SIGNATURE
    other = DOC_KEY if which == "ed25519" else ED_KEY
    assert check_signed(keys, "POST", query, "", hdr(other), NOW) == BAD_SIGNATURE  # right shape, wrong key
    # WebSocket API: params signed sorted, apiKey included
    params = sign_ws_params(signer, {k: str(v) for k, v in ORDER.items()}, key, timestamp_ms=NOW, recv_window_ms=3000)
    assert check_ws_params(keys, params, NOW + 3000) is None
    assert check_ws_params(keys, dict(params, quantity="0.00200"), NOW) == BAD_SIGNATURE


def test_ed25519_signature_must_be_percent_encoded_and_case_sensitive(keys, ed_signer):
    # base64 of a 64-byte signature ends in "==" and often holds "+", which a query string reads as a space
    for ts in range(NOW, NOW + 200):
        query = signed_query(ed_signer, ORDER, timestamp_ms=ts)
        payload, _, encoded = query.partition("&signature=")
        raw = ed_signer.sign(payload.encode())
        if "+" in raw:
            break
    assert "+" in raw and encoded == quote(raw, safe="") and encoded.endswith("%3D%3D")
    assert check_signed(keys, "POST", query, "", hdr(ED_KEY), ts) is None
    assert check_signed(keys, "POST", f"{payload}&signature={raw}", "", hdr(ED_KEY), ts) == BAD_SIGNATURE
    flipped = quote(raw.swapcase(), safe="")
    assert check_signed(keys, "POST", f"{payload}&signature={flipped}", "", hdr(ED_KEY), ts) == BAD_SIGNATURE
    assert check_signed(keys, "POST", f"{payload}&signature=not-base64!", "", hdr(ED_KEY), ts) == BAD_SIGNATURE


def test_api_key_refusals_are_401(keys):
    query = f"{DOC_PAYLOAD}&signature={DOC_SIGNATURE}"
    assert check_signed(keys, "POST", query, "", {}, DOC_TS) == BAD_FORMAT
    assert check_signed(keys, "POST", query, "", {"X-MBX-APIKEY": ""}, DOC_TS) == BAD_FORMAT
    assert check_signed(keys, "POST", query, "", {"X-MBX-APIKEY": f'"{DOC_KEY}"'}, DOC_TS) == BAD_FORMAT
    assert check_signed(keys, "POST", query, "", {"X-MBX-APIKEY": "A" * 64}, DOC_TS) == UNKNOWN_KEY
    assert check_signed(keys, "POST", query, "", {"x-mbx-apikey": DOC_KEY}, DOC_TS) is None  # header names fold case


def test_mandatory_parameters(keys):
    no_ts = DOC_PAYLOAD.replace(f"&timestamp={DOC_TS}", "")
    assert check_signed(keys, "POST", f"{no_ts}&signature={DOC_SIGNATURE}", "", hdr(), DOC_TS) == mandatory("timestamp")
    assert check_signed(keys, "POST", f"{no_ts}&timestamp=&signature=x", "", hdr(), DOC_TS) == mandatory("timestamp")
    assert check_signed(keys, "POST", f"{no_ts}&timestamp=1.5e12&signature=x", "", hdr(),
                        DOC_TS) == mandatory("timestamp")
    assert check_signed(keys, "POST", DOC_PAYLOAD, "", hdr(), DOC_TS) == mandatory("signature")
    assert check_signed(keys, "POST", f"{DOC_PAYLOAD}&signature=", "", hdr(), DOC_TS) == mandatory("signature")
    ws = {"apiKey": DOC_KEY, "timestamp": DOC_TS}
    assert check_ws_params(keys, ws, DOC_TS) == mandatory("signature")
    assert check_ws_params(keys, {"timestamp": DOC_TS, "signature": "ab"}, DOC_TS) == mandatory("apiKey")
    assert check_ws_params(keys, {"apiKey": "bad key", "timestamp": DOC_TS, "signature": "ab"}, DOC_TS) == BAD_FORMAT
    assert check_ws_params(keys, {"apiKey": "B" * 64, "timestamp": DOC_TS, "signature": "ab"}, DOC_TS) == UNKNOWN_KEY
    assert check_ws_params(keys, {"apiKey": DOC_KEY, "signature": "ab"}, DOC_TS) == mandatory("timestamp")


def _hmac_query(ts, recv_window=None):
    params = [("symbol", "BTCUSDT")] + ([("recvWindow", recv_window)] if recv_window is not None else [])
    payload = "&".join(f"{k}={v}" for k, v in params) + f"&timestamp={ts}"
    return f"{payload}&signature={HmacSigner(DOC_SECRET).sign(payload.encode())}"


@pytest.mark.parametrize("recv_window, offset_ms, expected", [
    (None, 0, None),                     # recvWindow defaults to 5000
    (None, -5000, None),                 # serverTime - timestamp == recvWindow: still inside
    (None, -5001, OUTSIDE),
    (None, 999, None),                   # timestamp < serverTime + 1000
    (None, 1000, AHEAD),                 # timestamp == serverTime + 1000: refused
    (60000, -60000, None),               # the largest recvWindow
    (60001, 0, BAD_RECV_WINDOW),
    (100, -100, None),
    (100, -101, OUTSIDE),
    ("100.5", -100, None),               # three decimals of ms: microseconds (documented since 2025-08)
    ("abc", 0, mandatory("recvWindow")),
    ("1.2345", 0, mandatory("recvWindow")),
])
def test_timing_security_as_documented(keys, recv_window, offset_ms, expected):
    assert check_signed(keys, "GET", _hmac_query(NOW + offset_ms, recv_window), "", hdr(), NOW) == expected


def test_timing_in_microseconds(keys):
    # a 16-digit timestamp is in µs; recvWindow "0.5" is 500 µs
    ts_us = NOW * 1000 - 500
    assert check_signed(keys, "GET", _hmac_query(ts_us, "0.5"), "", hdr(), NOW) is None
    assert check_signed(keys, "GET", _hmac_query(ts_us - 1, "0.5"), "", hdr(), NOW) == OUTSIDE
    assert check_signed(keys, "GET", _hmac_query(NOW * 1000 + 999_999), "", hdr(), NOW) is None
    assert check_signed(keys, "GET", _hmac_query(NOW * 1000 + 1_000_000), "", hdr(), NOW) == AHEAD


def test_timing_is_checked_before_the_signature(keys):
    stale = _hmac_query(NOW - 6000).rsplit("&signature=", 1)[0] + "&signature=" + "0" * 64
    assert check_signed(keys, "GET", stale, "", hdr(), NOW) == OUTSIDE
    fresh = _hmac_query(NOW).rsplit("&signature=", 1)[0] + "&signature=" + "0" * 64
    assert check_signed(keys, "GET", fresh, "", hdr(), NOW) == BAD_SIGNATURE


def test_query_string_wins_over_body_and_get_ignores_body(keys):
    query = _hmac_query(NOW - 6000)  # stale in the query ...
    assert check_signed(keys, "POST", query, f"timestamp={NOW}", hdr(), NOW) == OUTSIDE  # ... wins (documented)
    assert check_signed(keys, "GET", "symbol=BTCUSDT", _hmac_query(NOW), hdr(), NOW) == mandatory("timestamp")


def test_session_logon_lets_requests_leave_out_key_and_signature(keys):
    assert check_ws_params(keys, {"symbol": "BTCUSDT", "timestamp": NOW}, NOW, session_api_key=ED_KEY) is None
    assert check_ws_params(keys, {"symbol": "BTCUSDT", "timestamp": NOW - 5001}, NOW,
                           session_api_key=ED_KEY) == OUTSIDE
    assert check_ws_params(keys, {"symbol": "BTCUSDT"}, NOW, session_api_key=ED_KEY) == mandatory("timestamp")


def test_api_keys_keep_secrets_out_of_repr_and_refuse_bad_keys(ed_signer):
    keys = ApiKeys()
    keys.add_hmac(DOC_KEY, DOC_SECRET)
    assert DOC_SECRET not in repr(keys) and DOC_KEY not in repr(keys) and len(keys) == 1
    with pytest.raises(ValueError, match="already registered"):
        keys.add_hmac(DOC_KEY, "x")
    with pytest.raises(ValueError, match="ASCII letters and digits"):
        keys.add_hmac("has space", "x")
    with pytest.raises(ValueError, match="not an Ed25519"):
        from cryptography.hazmat.primitives.asymmetric import ec
        pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        keys.add_ed25519("EcKey", pem)
    with pytest.raises(ValueError, match="not a readable PEM"):
        keys.add_ed25519("Garbage", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    assert not keys.verify("nobody", b"x", "00")
