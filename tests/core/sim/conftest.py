import pytest

from ttq_testing import new_ed25519_signer


@pytest.fixture(scope="module")
def ed_signer():
    """An Ed25519 key of the module's (ttq_binance.ED_KEY registers its public half with the venue)."""
    return new_ed25519_signer()
