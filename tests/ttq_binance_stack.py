"""The trading path with the gateway's Binance adapter, as real processes, for tests: venue-sim with
Binance's signed order entry (--rest-port, --api-keys, --balances) and a fresh random key of the
test's own, md, and the gateway with [adapter] kind = "binance", environment = "custom" and the key
in a 0600 credentials file beside its config. Everything else is ttq_stack.TradingStack's (the test's
own order rings, the exec ring, the board).

The key is HMAC-SHA256 or Ed25519 (key_type); `secret_forms()` lists what of it must never show up
anywhere (the secret as text, hex and base64, the private key's PEM, DER and raw bytes, the API key).
`rest()` talks to the venue as the account with the same key, and `venue_record()` reads the venue's
own record of the account (/_sim/binance/orders), so a test compares what the gateway reported with
what the venue did. Not here: USDT-M futures (the adapter is spot-only so far).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import string
import urllib.error
import urllib.request

from ttquant.core.venues.binance.credentials import load_api_credentials
from ttquant.core.venues.binance.rest import BinanceRest

from ttq_stack import TradingStack

__all__ = ["BinanceStack", "write_private", "new_api_key"]

_ALNUM = string.ascii_letters + string.digits


def write_private(path, text: str):
    """A file only its owner can read, created so (never readable by others, not even for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)           # an existing file keeps its mode through O_CREAT
    return path


def new_api_key() -> str:
    """64 letters and digits, as Binance issues API keys (and HMAC secrets)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(64))


def _ed25519_pem() -> tuple[bytes, bytes, bytes]:
    """(private PKCS#8 PEM, its DER, the raw 32-byte private key) of a fresh Ed25519 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    pkcs8 = serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, pkcs8, serialization.NoEncryption())
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return pem, der, raw


class BinanceStack(TradingStack):
    """TradingStack whose gateway trades through the Binance adapter against the venue's signed REST."""

    def __init__(self, children, venue, tmp_path, key_type="hmac", balances="USDT=100000,BTC=2",
                 order_entry=None, venue_args=(), market="spot", **kwargs):
        if key_type not in ("hmac", "ed25519"):
            raise ValueError(f"key_type: hmac or ed25519, got {key_type!r}")
        self.key_type, self.order_entry, self.market = key_type, order_entry, market
        self.api_key = new_api_key()
        self.keys_path = tmp_path / "venue-keys"            # the venue's side: what it checks signatures with
        self.credentials_path = tmp_path / "binance.toml"   # the gateway's side, beside its config
        if key_type == "hmac":
            self.secret = new_api_key()
            self._secret_bytes = [self.secret.encode()]
            write_private(self.keys_path, f"{self.api_key} hmac {self.secret}\n")
            write_private(self.credentials_path, f'api_key = "{self.api_key}"\nsecret = "{self.secret}"\n')
        else:
            from ttquant.core.venues.binance.signing import Ed25519Signer
            pem, der, raw = _ed25519_pem()
            self.secret = pem.decode()
            self._secret_bytes = [der, raw]
            (tmp_path / "venue-key.pub.pem").write_text(Ed25519Signer(pem).public_key_pem())
            write_private(self.keys_path, f"{self.api_key} ed25519 venue-key.pub.pem\n")
            write_private(self.credentials_path, f"api_key = \"{self.api_key}\"\nprivate_key = '''{self.secret}'''\n")
        super().__init__(children, venue, tmp_path, sim_log=tmp_path / "venue-sim.log",
                         venue_args=("--rest-port", "0", "--api-keys", self.keys_path, "--balances", balances,
                                     *venue_args), **kwargs)

    def adapter_table(self) -> dict:
        assert self.rest_port, "the venue-sim named no REST order entry port"
        table = {"kind": "binance", "environment": "custom", "rest_url": f"http://127.0.0.1:{self.rest_port}",
                 "market": self.market, "credentials": "./binance.toml"}
        # the WebSocket API on the venue's main port; USDT-M's user data over a listen key there too
        table["ws_api_url"] = f"ws://127.0.0.1:{self.port}/" + ("ws-api/v3" if self.market == "spot" else "ws-fapi/v1")
        if self.market == "usdm":
            table["user_stream_url"] = f"ws://127.0.0.1:{self.port}/ws"
        if self.order_entry is not None:
            table["order_entry"] = self.order_entry
        return table

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    # -- the venue's side of the story -------------------------------------------------------------
    def rest(self) -> BinanceRest:
        """Signed REST to the venue as the gateway's account (the same key); close() it after use."""
        rest = BinanceRest(self.rest_url, load_api_credentials(path=self.credentials_path), "spot")
        rest.clock.refresh()
        return rest

    def venue_record(self) -> dict:
        """The venue's own record of the account (every order and trade), /_sim/binance/orders."""
        try:
            with urllib.request.urlopen(f"{self.rest_url}/_sim/binance/orders", timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"the venue-sim has no record at /_sim/binance/orders (HTTP {exc.code}): "
                                 f"see the contract, /work/spec/wsapi_contract.md") from None

    def our_trades(self, rest: BinanceRest, symbol="BTCUSDT") -> list[dict]:
        """Every trade of the account on `symbol` (GET myTrades), each with the client order id of its
        order (GET order by orderId: a trade names only the venue's order id)."""
        client_ids = {}
        out = []
        for t in rest.my_trades(symbol, 0):
            oid = int(t["orderId"])
            if oid not in client_ids:
                client_ids[oid] = rest.order_by_id(symbol, oid)["clientOrderId"]
            out.append({**t, "clientOrderId": client_ids[oid]})
        return out

    def secret_forms(self) -> dict[str, bytes]:
        """What of the key may appear nowhere: name -> bytes."""
        forms = {"api key": self.api_key.encode()}
        for n, raw in enumerate([self.secret.encode(), *self._secret_bytes]):
            forms[f"secret {n}"] = raw
            forms[f"secret {n} hex"] = raw.hex().encode()
            forms[f"secret {n} HEX"] = raw.hex().upper().encode()
            forms[f"secret {n} base64"] = base64.b64encode(raw).rstrip(b"=")
            forms[f"secret {n} base64url"] = base64.urlsafe_b64encode(raw).rstrip(b"=")
        if self.key_type == "ed25519":      # each line of the PEM's body (its base64 cut at 64)
            for n, line in enumerate(self.secret.splitlines()):
                if line and not line.startswith("-----"):
                    forms[f"pem line {n}"] = line.encode()
        return forms
