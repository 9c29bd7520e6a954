"""Order entry on Binance (spot and USDT-M futures): request signing, credentials, the server's clock."""
from ttquant.core.venues.binance.server_time import ClockOffset, ClockSyncError
from ttquant.core.venues.binance.signing import (
    Ed25519Signer,
    HmacSigner,
    session_logon_params,
    sign_ws_params,
    signed_query,
)

__all__ = ["ClockOffset", "ClockSyncError", "Ed25519Signer", "HmacSigner", "session_logon_params", "sign_ws_params",
           "signed_query"]
