"""Order entry on Binance (spot and USDT-M futures): request signing, credentials, the server's clock."""
from ttquant.core.venues.binance.credentials import ApiCredentials, CredentialsError, load_api_credentials
from ttquant.core.venues.binance.server_time import ClockOffset, ClockSyncError
from ttquant.core.venues.binance.signing import (
    Ed25519Signer,
    HmacSigner,
    session_logon_params,
    sign_ws_params,
    signed_query,
)

__all__ = ["ApiCredentials", "ClockOffset", "ClockSyncError", "CredentialsError", "Ed25519Signer", "HmacSigner",
           "load_api_credentials", "session_logon_params", "sign_ws_params", "signed_query"]
