"""Signing against Binance's own documented examples, byte for byte; Ed25519 checked with the public key;
the secret never shows in a repr, a str, a pickle or an error."""
import base64
import pickle
import traceback
from decimal import Decimal
from urllib.parse import unquote

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256K1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ttquant.core.venues.binance.signing import (
    Ed25519Signer,
    HmacSigner,
    encode_params,
    session_logon_params,
    sign_ws_params,
    signed_query,
    ws_signature_payload,
)

# Binance's illustrative keys and vectors, "SIGNED request example (HMAC)":
# https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security (POST /api/v3/order)
# https://developers.binance.com/docs/binance-spot-api-docs/web-socket-api/request-security (order.place)
DOC_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
REST_ORDER = [("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"), ("quantity", "1"),
              ("price", "0.1")]
REST_PAYLOAD = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
                "&timestamp=1499827319559")
REST_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
REST_UNICODE_PAYLOAD = ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
                        "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559")
REST_UNICODE_SIGNATURE = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
WS_ORDER = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000",
            "price": "52000.00", "newOrderRespType": "ACK"}
WS_PAYLOAD = ("apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&newOrderRespType=ACK"
              "&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC"
              "&timestamp=1645423376532&type=LIMIT")
WS_SIGNATURE = "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"


def _ed25519_pem() -> tuple[bytes, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, key


def test_hmac_signs_the_documented_rest_payload():
    assert HmacSigner(DOC_SECRET).sign(REST_PAYLOAD.encode()) == REST_SIGNATURE
    assert HmacSigner(DOC_SECRET.encode()).sign(REST_UNICODE_PAYLOAD.encode()) == REST_UNICODE_SIGNATURE


def test_signed_query_is_the_documented_request_with_recv_window_timestamp_and_signature_last():
    q = signed_query(HmacSigner(DOC_SECRET), REST_ORDER, timestamp_ms=1499827319559, recv_window_ms=5000)
    assert q == f"{REST_PAYLOAD}&signature={REST_SIGNATURE}"
    # a non-ASCII symbol is percent-encoded before signing, as the docs' second example shows
    unicode_order = [("symbol", "１２３４５６"), *REST_ORDER[1:]]
    q = signed_query(HmacSigner(DOC_SECRET), dict(unicode_order), timestamp_ms=1499827319559, recv_window_ms=5000)
    assert q == f"{REST_UNICODE_PAYLOAD}&signature={REST_UNICODE_SIGNATURE}"


def test_signed_query_without_recv_window_and_with_typed_values():
    q = signed_query(HmacSigner(DOC_SECRET), [("quantity", Decimal("0.00100")), ("reduceOnly", True), ("n", 3)],
                     timestamp_ms=1700000000000, recv_window_ms=None)
    payload, signature = q.rsplit("&signature=", 1)
    assert payload == "quantity=0.00100&reduceOnly=true&n=3&timestamp=1700000000000"
    assert signature == HmacSigner(DOC_SECRET).sign(payload.encode())


@pytest.mark.parametrize("bad", [("timestamp", 1), ("recvWindow", 5000), ("signature", "x")])
def test_signed_query_refuses_params_it_adds_itself(bad):
    with pytest.raises(ValueError, match=bad[0]):
        signed_query(HmacSigner(DOC_SECRET), [("symbol", "BTCUSDT"), bad], timestamp_ms=1)


@pytest.mark.parametrize("window", [0, -1, 60_001])
def test_signed_query_refuses_a_recv_window_binance_refuses(window):
    with pytest.raises(ValueError, match="recvWindow"):
        signed_query(HmacSigner(DOC_SECRET), REST_ORDER, timestamp_ms=1, recv_window_ms=window)


def test_floats_are_refused_rather_than_sent_as_1e_05():
    with pytest.raises(TypeError, match="float"):
        encode_params([("quantity", 0.00001)])


def test_ws_params_are_signed_sorted_with_the_api_key_as_documented():
    assert ws_signature_payload({**WS_ORDER, "apiKey": DOC_API_KEY, "recvWindow": 100, "timestamp": 1645423376532,
                                 "signature": "ignored"}) == WS_PAYLOAD
    signed = sign_ws_params(HmacSigner(DOC_SECRET), WS_ORDER, DOC_API_KEY, timestamp_ms=1645423376532,
                            recv_window_ms=100)
    assert signed == {**WS_ORDER, "apiKey": DOC_API_KEY, "recvWindow": 100, "timestamp": 1645423376532,
                      "signature": WS_SIGNATURE}
    assert "signature" not in WS_ORDER  # the caller's params are left as they were


def test_ws_refuses_a_non_ascii_payload_and_params_it_adds():
    with pytest.raises(ValueError, match="non-ASCII"):
        ws_signature_payload({"symbol": "１２３４５６"})
    with pytest.raises(ValueError, match="apiKey"):
        sign_ws_params(HmacSigner(DOC_SECRET), {"apiKey": "k"}, DOC_API_KEY, timestamp_ms=1)


def test_ed25519_signature_is_base64_and_verifies_with_the_public_key():
    pem, key = _ed25519_pem()
    signer = Ed25519Signer(pem.decode())
    signature = signer.sign(REST_PAYLOAD.encode())
    raw = base64.b64decode(signature, validate=True)
    assert len(raw) == 64
    key.public_key().verify(raw, REST_PAYLOAD.encode())
    with pytest.raises(InvalidSignature):
        key.public_key().verify(raw, REST_PAYLOAD.replace("0.1", "0.2").encode())
    loaded = serialization.load_pem_public_key(signer.public_key_pem().encode())
    loaded.verify(raw, REST_PAYLOAD.encode())


def test_ed25519_signature_in_a_query_string_is_percent_encoded_and_verifies():
    pem, key = _ed25519_pem()
    q = signed_query(Ed25519Signer(pem), REST_ORDER, timestamp_ms=1499827319559)
    payload, signature = q.rsplit("&signature=", 1)
    assert payload == REST_PAYLOAD
    assert not set("+/=") & set(signature)
    key.public_key().verify(base64.b64decode(unquote(signature)), payload.encode())


def test_session_logon_signs_api_key_and_timestamp_with_ed25519_only():
    pem, key = _ed25519_pem()
    params = session_logon_params(Ed25519Signer(pem), DOC_API_KEY, timestamp_ms=1649729878532)
    assert set(params) == {"apiKey", "timestamp", "signature"}
    key.public_key().verify(base64.b64decode(params["signature"]),
                            f"apiKey={DOC_API_KEY}&timestamp=1649729878532".encode())
    with pytest.raises(TypeError, match="Ed25519"):
        session_logon_params(HmacSigner(DOC_SECRET), DOC_API_KEY, timestamp_ms=1)


def test_the_secret_is_not_in_repr_str_or_a_pickle():
    pem, _ = _ed25519_pem()
    body = b"".join(pem.splitlines()[1:-1]).decode()
    for signer, secret in ((HmacSigner(DOC_SECRET), DOC_SECRET), (Ed25519Signer(pem), body)):
        for shown in (repr(signer), str(signer), f"{signer}", repr([signer])):
            assert secret not in shown and secret[:8] not in shown and "hidden" in shown
        with pytest.raises(TypeError, match="not picklable"):
            pickle.dumps(signer)
        assert not hasattr(signer, "__dict__")  # only the private slot holds it: vars() shows nothing


def test_a_malformed_key_error_does_not_quote_the_key():
    pem, _ = _ed25519_pem()
    broken = pem.replace(pem.splitlines()[1][10:20], b"!!!!!!!!!!")
    ec_pem = generate_private_key(SECP256K1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cases = [(broken, "not a readable PEM"), (DOC_SECRET, "not a readable PEM"), (ec_pem, "not an Ed25519 key")]
    for bad, reason in cases:
        with pytest.raises(ValueError, match=reason) as info:
            Ed25519Signer(bad)
        text = "".join(traceback.format_exception(info.value))  # what a logger's exc_info would print
        body = bad if isinstance(bad, str) else b"".join(bad.splitlines()[1:-1]).decode()
        assert body[:16] not in text and body[-16:] not in text
        assert "During handling" not in text and "direct cause" not in text  # no chained library error
    with pytest.raises(ValueError, match="empty"):
        HmacSigner("")
