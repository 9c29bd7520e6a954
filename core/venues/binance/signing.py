"""Binance request signing: HMAC-SHA256 and Ed25519 keys, REST query strings and WebSocket API params.

What Binance signs (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security,
.../web-socket-api/request-security):

- REST: the query string as sent, params in the order given, non-ASCII percent-encoded; `recvWindow`
  and `timestamp` go last and `signature` after them (the documented POST /api/v3/order example).
- WebSocket API: every param but `signature`, `apiKey` included, sorted by name, joined as
  `name=value&...`; `signature` is then added to the params object.
- HMAC signatures are lowercase hex, Ed25519 signatures base64 (percent-encoded in a query string).

A signer holds its secret in a private slot: its repr, str and exceptions never show it, and it
refuses to be pickled (a pickle is a copy of the secret on disk or on a wire).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from decimal import Decimal
from urllib.parse import quote

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["Ed25519Signer", "HmacSigner", "Signer", "encode_params", "session_logon_params", "signed_query",
           "sign_ws_params", "ws_signature_payload"]

MAX_RECV_WINDOW_MS = 60_000  # Binance rejects a larger recvWindow
_RESERVED = ("recvWindow", "timestamp", "signature")


class _SecretHolder:
    """Keeps what it holds out of repr/str and pickles."""
    __slots__ = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<secret hidden>)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError(f"{type(self).__name__} holds a secret and is not picklable")


class HmacSigner(_SecretHolder):
    """An HMAC-SHA256 API secret: `sign` gives the lowercase hex digest Binance expects."""
    __slots__ = ("_key",)
    key_type = "hmac"

    def __init__(self, secret: str | bytes):
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not isinstance(secret, bytes) or not secret:
            raise ValueError("HMAC secret: empty or not text")
        self._key = secret

    def sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()


class Ed25519Signer(_SecretHolder):
    """An Ed25519 private key (PKCS#8 PEM, as Binance's key generator writes it): `sign` gives base64."""
    __slots__ = ("_key",)
    key_type = "ed25519"

    def __init__(self, private_key_pem: str | bytes, password: bytes | None = None):
        if isinstance(private_key_pem, str):
            private_key_pem = private_key_pem.encode("utf-8")
        try:
            key = serialization.load_pem_private_key(private_key_pem, password=password)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # `from None`: the library's message and traceback stay out of logs; they can quote the input
            raise ValueError("Ed25519 private key: not a readable PEM private key "
                             "(or a wrong or missing password)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"Ed25519 private key: the PEM holds a key of type {type(key).__name__}, "
                             "not an Ed25519 key")
        self._key = key

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self._key.sign(payload)).decode("ascii")

    def public_key_pem(self) -> str:
        """The public half, as Binance's API management page takes it when the key is registered."""
        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


Signer = HmacSigner | Ed25519Signer


def _text(value: object) -> str:
    # bool before int: bool is an int; floats are refused because repr(1e-05) is not a price Binance reads
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"a signed param must be str, int, bool or Decimal (format prices and quantities to the "
                    f"instrument's increments first), got {type(value).__name__}")


def _pairs(params: Mapping[str, object] | Iterable[tuple[str, object]]) -> list[tuple[str, object]]:
    return list(params.items()) if isinstance(params, Mapping) else list(params)


def encode_params(params: Mapping[str, object] | Iterable[tuple[str, object]]) -> str:
    """`name=value&...` in the order given, percent-encoded (RFC 3986 unreserved characters kept)."""
    return "&".join(f"{quote(name, safe='')}={quote(_text(value), safe='-_.~')}" for name, value in _pairs(params))


def _check_recv_window(recv_window_ms: int | None) -> None:
    if recv_window_ms is not None and not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
        raise ValueError(f"recvWindow must be in (0, {MAX_RECV_WINDOW_MS}] ms, got {recv_window_ms}")


def signed_query(signer: Signer, params: Mapping[str, object] | Iterable[tuple[str, object]], timestamp_ms: int,
                 recv_window_ms: int | None = 5000) -> str:
    """The query string (or form body) of a SIGNED REST request: params, recvWindow, timestamp, signature."""
    pairs = _pairs(params)
    for name, _ in pairs:
        if name in _RESERVED:
            raise ValueError(f"{name!r} is added by signed_query; do not pass it in params")
    _check_recv_window(recv_window_ms)
    if recv_window_ms is not None:
        pairs.append(("recvWindow", recv_window_ms))
    pairs.append(("timestamp", timestamp_ms))
    payload = encode_params(pairs)
    return f"{payload}&signature={quote(signer.sign(payload.encode('ascii')), safe='')}"


def ws_signature_payload(params: Mapping[str, object]) -> str:
    """What the WebSocket API signs: all params but `signature`, sorted by name, as `name=value&...`."""
    payload = "&".join(f"{name}={_text(params[name])}" for name in sorted(params) if name != "signature")
    if not payload.isascii():
        # Binance documents only ASCII payloads for the WebSocket API; guessing an encoding would fail as -1022
        raise ValueError("WebSocket API signature payload: non-ASCII param (not documented by Binance)")
    return payload


def sign_ws_params(signer: Signer, params: Mapping[str, object], api_key: str, timestamp_ms: int,
                   recv_window_ms: int | None = None) -> dict[str, object]:
    """A WebSocket API request's params with apiKey, timestamp (recvWindow) and their signature added."""
    for name in ("apiKey", *_RESERVED):
        if name in params:
            raise ValueError(f"{name!r} is added by sign_ws_params; do not pass it in params")
    _check_recv_window(recv_window_ms)
    signed: dict[str, object] = dict(params)
    signed["apiKey"] = api_key
    if recv_window_ms is not None:
        signed["recvWindow"] = recv_window_ms
    signed["timestamp"] = timestamp_ms
    signed["signature"] = signer.sign(ws_signature_payload(signed).encode("ascii"))
    return signed


def session_logon_params(signer: Ed25519Signer, api_key: str, timestamp_ms: int,
                         recv_window_ms: int | None = None) -> dict[str, object]:
    """Params of `session.logon`, which authenticates a WebSocket API connection (Ed25519 keys only)."""
    if not isinstance(signer, Ed25519Signer):
        raise TypeError("session.logon takes only Ed25519 keys (Binance WebSocket API session authentication)")
    return sign_ws_params(signer, {}, api_key, timestamp_ms, recv_window_ms)
