"""The simulated venue's check of a SIGNED Binance request: API key, timestamp, recvWindow, signature.

Server side of core/venues/binance/signing.py, refusing what Binance refuses with Binance's own
error bodies and HTTP codes (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security,
.../websocket-api/request-security, .../errors):

- `X-MBX-APIKEY` (REST) or `apiKey` (WebSocket API): absent or not a key's shape -> -2014 "API-key
  format invalid." (HTTP 401); a key the venue does not know -> -2015 (HTTP 401).
- `timestamp` and `signature` are mandatory -> -1102 naming the parameter. `timestamp` is in ms, or in
  µs when it has 16 digits or more (Binance takes both since 2024-12-17 and tells them apart by size).
- `recvWindow` defaults to 5000 ms, has at most three decimals (µs), and above 60000 is -1131.
- Timing, as documented: the request passes if `timestamp < serverTime + 1000` and
  `serverTime - timestamp <= recvWindow`; else -1021, "... was 1000ms ahead of the server's time." or
  "... is outside of the recvWindow.". Compared in integer µs, so a boundary is exact.
- Signature: REST signs the query string concatenated, without separator, to the request body, as sent
  (percent-encoded), the `signature` parameter taken out; the WebSocket API signs every param but
  `signature`, sorted by name, `name=value` joined by `&`, UTF-8. HMAC-SHA256 is hex (any letter case),
  Ed25519 base64 over the same bytes; a mismatch is -1022.

Checks run in that order (key, mandatory params, recvWindow, timing, signature), so a stale request with
a bad signature answers -1021 as Binance's documented processing logic does. A refusal is
`(http_status, {"code": ..., "msg": ...})`; the WebSocket API puts the same pair in its `status` and
`error` fields. Success is None.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import unquote_plus

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["ApiKeys", "Refusal", "check_signed", "check_ws_params", "DEFAULT_RECV_WINDOW_MS",
           "MAX_RECV_WINDOW_MS", "rest_signature_payload", "ws_signature_payload", "ws_param_text"]

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000
AHEAD_LIMIT_US = 1_000_000          # a timestamp 1000 ms or more ahead of the server is refused
MICROSECOND_TIMESTAMP_MIN = 10**15  # 16 digits: µs since the epoch (ms timestamps have 13 until 2286)

Refusal = tuple[int, dict]

_BAD_KEY_FORMAT: Refusal = (401, {"code": -2014, "msg": "API-key format invalid."})
_UNKNOWN_KEY: Refusal = (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
# spot and futures answer a too-large recvWindow so (python-binance#432, binance-java-api#313, ccxt's map)
_BAD_RECV_WINDOW: Refusal = (400, {"code": -1131, "msg": "'recvWindow' must be less than 60000."})
_AHEAD: Refusal = (400, {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."})
_OUTSIDE: Refusal = (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
_BAD_SIGNATURE: Refusal = (400, {"code": -1022, "msg": "Signature for this request is not valid."})

_KEY_SHAPE = re.compile(r"[A-Za-z0-9]{1,128}")
_INTEGER = re.compile(r"[0-9]{1,20}")
_RECV_WINDOW = re.compile(r"[0-9]{1,20}(\.[0-9]{1,3})?")


def _mandatory(name: str) -> Refusal:
    return 400, {"code": -1102, "msg": f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."}


class ApiKeys:
    """The venue's registered API keys: key -> HMAC secret, or key -> Ed25519 public key (PEM).

    Holds secrets, so its repr names only how many keys it has."""

    def __init__(self):
        self._hmac: dict[str, bytes] = {}
        self._ed25519: dict[str, Ed25519PublicKey] = {}

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self)} keys>)"

    def __len__(self) -> int:
        return len(self._hmac) + len(self._ed25519)

    def __contains__(self, api_key: object) -> bool:
        return api_key in self._hmac or api_key in self._ed25519

    def is_ed25519(self, api_key: str) -> bool:
        """Whether the key is an Ed25519 one (only those may session.logon on the WebSocket API)."""
        return api_key in self._ed25519

    def add_hmac(self, api_key: str, secret: str | bytes) -> None:
        self._check_new(api_key)
        secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        if not secret:
            raise ValueError("HMAC secret: empty")
        self._hmac[api_key] = secret

    def add_ed25519(self, api_key: str, public_key_pem: str | bytes) -> None:
        self._check_new(api_key)
        pem = public_key_pem.encode("ascii") if isinstance(public_key_pem, str) else public_key_pem
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError("Ed25519 public key: not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"the PEM holds a {type(key).__name__}, not an Ed25519 public key")
        self._ed25519[api_key] = key

    def _check_new(self, api_key: str) -> None:
        if not isinstance(api_key, str) or not _KEY_SHAPE.fullmatch(api_key):
            raise ValueError("API key: 1 to 128 ASCII letters and digits, as Binance issues them")
        if api_key in self:
            raise ValueError("API key already registered")

    def verify(self, api_key: str, payload: bytes, signature: str) -> bool:
        """Whether `signature` is the key's signature of `payload` (False for an unknown key)."""
        secret = self._hmac.get(api_key)
        if secret is not None:
            expected = hmac.new(secret, payload, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, signature.lower())  # HMAC signatures are case-insensitive
        public = self._ed25519.get(api_key)
        if public is None:
            return False
        try:
            public.verify(base64.b64decode(signature, validate=True), payload)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


def _pieces(text: str) -> list[tuple[str, str, str]]:
    """(raw piece, decoded name, decoded value) of each `name=value` in a query string or form body."""
    out = []
    for piece in text.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            out.append((piece, unquote_plus(name), unquote_plus(value)))
    return out


def rest_signature_payload(query: str, body: str) -> str:
    """What a REST request signs: the query string, then the body, as sent, `signature` taken out."""
    def without_signature(text):
        return "&".join(raw for raw, name, _ in _pieces(text) if name != "signature")
    return without_signature(query) + without_signature(body)


def _rest_params(query: str, body: str) -> dict[str, str]:
    params = {name: value for _, name, value in _pieces(body)}
    params.update((name, value) for _, name, value in _pieces(query))  # the query string wins (documented)
    return params


def _ws_text(value: object) -> str:
    # a JSON string is signed as is; numbers and booleans as JSON writes them
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def ws_param_text(value: object) -> str:
    """A WebSocket API param as the REST handlers take it (and as it is signed): JSON strings as they are,
    numbers and booleans as JSON writes them."""
    return _ws_text(value)


def ws_signature_payload(params: Mapping[str, object]) -> bytes:
    """What a WebSocket API request signs: every param but `signature`, sorted by name, UTF-8."""
    return "&".join(f"{name}={_ws_text(params[name])}" for name in sorted(params) if name != "signature").encode()


def _params_and_timing(timestamp: object, signature: object, recv_window: object,
                       now_ms: int | float) -> Refusal | None:
    """Mandatory timestamp and signature, recvWindow's range, then the documented timing rule."""
    text = _ws_text(timestamp) if timestamp is not None else ""
    if not _INTEGER.fullmatch(text):
        return _mandatory("timestamp")
    if signature is not None and not (isinstance(signature, str) and signature):
        return _mandatory("signature")
    if recv_window is None:
        window_us = DEFAULT_RECV_WINDOW_MS * 1000
    else:
        window = repr(recv_window) if isinstance(recv_window, float) else _ws_text(recv_window)
        if not _RECV_WINDOW.fullmatch(window):
            return _mandatory("recvWindow")
        window_us = int(Decimal(window) * 1000)
        if window_us > MAX_RECV_WINDOW_MS * 1000:
            return _BAD_RECV_WINDOW
    ts = int(text)
    ts_us = ts if ts >= MICROSECOND_TIMESTAMP_MIN else ts * 1000
    server_us = round(now_ms * 1000)
    if ts_us >= server_us + AHEAD_LIMIT_US:
        return _AHEAD
    if server_us - ts_us > window_us:
        return _OUTSIDE
    return None


def check_signed(keys: ApiKeys, method: str, query: str, body: str, headers: Mapping[str, str],
                 now_ms: int | float) -> Refusal | None:
    """Binance's refusal of a SIGNED REST request, or None when it passes. `query` is the raw query
    string (no `?`), `body` the raw form body ("" for none), `now_ms` the venue's clock."""
    api_key = next((v for k, v in headers.items() if k.lower() == "x-mbx-apikey"), None)
    if not api_key or not _KEY_SHAPE.fullmatch(api_key):
        return _BAD_KEY_FORMAT
    if api_key not in keys:
        return _UNKNOWN_KEY
    body = body if method.upper() != "GET" else ""  # a GET's parameters are its query string
    params = _rest_params(query, body)
    signature = params.get("signature", "")
    refusal = _params_and_timing(params.get("timestamp"), signature, params.get("recvWindow"), now_ms)
    if refusal is not None:
        return refusal
    payload = rest_signature_payload(query, body)
    if not payload.isascii() or not keys.verify(api_key, payload.encode("ascii"), signature):
        return _BAD_SIGNATURE  # non-ASCII must be percent-encoded before signing: raw it cannot match
    return None


def check_ws_params(keys: ApiKeys, params: Mapping[str, object], now_ms: int | float,
                    session_api_key: str | None = None) -> Refusal | None:
    """Binance's refusal of a SIGNED WebSocket API request's params, or None when it passes.

    A connection authenticated with `session.logon` (session_api_key) may leave out apiKey and
    signature; it still needs `timestamp`."""
    api_key = params.get("apiKey")
    if api_key is None and "signature" not in params and session_api_key is not None:
        if session_api_key not in keys:
            return _UNKNOWN_KEY
        return _params_and_timing(params.get("timestamp"), None, params.get("recvWindow"), now_ms)
    if api_key is None or api_key == "":
        return _mandatory("apiKey")
    if not isinstance(api_key, str) or not _KEY_SHAPE.fullmatch(api_key):
        return _BAD_KEY_FORMAT
    if api_key not in keys:
        return _UNKNOWN_KEY
    signature = params.get("signature", "")
    refusal = _params_and_timing(params.get("timestamp"), signature, params.get("recvWindow"), now_ms)
    if refusal is not None:
        return refusal
    if not keys.verify(api_key, ws_signature_payload(params), signature):
        return _BAD_SIGNATURE
    return None
