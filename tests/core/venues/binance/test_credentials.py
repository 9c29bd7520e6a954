"""Credentials come from $CREDENTIALS_DIRECTORY or a private file; a file others can read is refused, and
no error or repr carries the key or the secret."""
import base64
import os
import traceback

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ttquant.core.venues.binance.credentials import CredentialsError, load_api_credentials
from ttquant.core.venues.binance.signing import Ed25519Signer, HmacSigner

API_KEY = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvWxYz01"
SECRET = "sEcReT0123456789sEcReT0123456789sEcReT0123456789sEcReT0123456789"


def _write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _pem():
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_an_hmac_credential_from_the_systemd_credentials_directory(tmp_path):
    _write(tmp_path / "binance", f'api_key = "{API_KEY}"\nsecret = "{SECRET}"\n', mode=0o400)
    creds = load_api_credentials("binance", environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert creds.api_key == API_KEY and isinstance(creds.signer, HmacSigner)
    assert creds.signer.sign(b"x") == HmacSigner(SECRET).sign(b"x")
    assert creds.source == str(tmp_path / "binance")


@pytest.mark.parametrize("inline", [True, False])
def test_an_ed25519_credential_inline_or_in_a_key_file_beside_it(tmp_path, inline):
    pem, key = _pem()
    if inline:
        _write(tmp_path / "b.toml", f"api_key = \"{API_KEY}\"\nprivate_key = '''\n{pem}'''\n")
    else:
        _write(tmp_path / "b.pem", pem)
        _write(tmp_path / "b.toml", f'api_key = "{API_KEY}"\nprivate_key_file = "b.pem"\n')
    creds = load_api_credentials(path=tmp_path / "b.toml")
    assert isinstance(creds.signer, Ed25519Signer)
    key.public_key().verify(base64.b64decode(creds.signer.sign(b"payload")), b"payload")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644, 0o660])
def test_a_file_group_or_others_can_reach_is_refused_naming_file_and_mode(tmp_path, mode):
    path = _write(tmp_path / "binance.toml", f'api_key = "{API_KEY}"\nsecret = "{SECRET}"\n', mode=mode)
    with pytest.raises(CredentialsError) as info:
        load_api_credentials(path=path)
    text = _everything_said(info.value)
    assert str(path) in str(info.value) and f"mode {mode:04o}" in str(info.value)
    assert SECRET not in text and API_KEY not in text


def test_a_key_file_others_can_read_is_refused_too(tmp_path):
    pem, _ = _pem()
    _write(tmp_path / "b.pem", pem, mode=0o644)
    _write(tmp_path / "b.toml", f'api_key = "{API_KEY}"\nprivate_key_file = "b.pem"\n')
    with pytest.raises(CredentialsError, match=r"b\.pem: mode 0644"):
        load_api_credentials(path=tmp_path / "b.toml")


def test_the_repr_shows_four_characters_of_the_api_key_and_nothing_of_the_secret(tmp_path):
    pem, _ = _pem()
    for body in (f'secret = "{SECRET}"', f"private_key = '''\n{pem}'''"):
        path = _write(tmp_path / "b.toml", f'api_key = "{API_KEY}"\n{body}\n')
        creds = load_api_credentials(path=path)
        for shown in (repr(creds), str(creds), f"{creds!r}", repr({"c": creds})):
            assert API_KEY[:4] in shown and API_KEY[:5] not in shown
            assert SECRET[:8] not in shown and pem.splitlines()[1][:16] not in shown


@pytest.mark.parametrize("text, reason", [
    # an unterminated string holding the secret; the secret as a bare word
    (f'api_key = "{API_KEY}"\nsecret = "{SECRET}', "not valid TOML .at end of document"),
    (f'api_key = "{API_KEY}"\nsecret = {SECRET}\n', "not valid TOML .at line 2, column 10"),
    (f'secret = "{SECRET}"\n', "api_key is missing"),
    (f'api_key = "{API_KEY}"\n', "exactly one of secret, private_key, private_key_file"),
    (f'api_key = "{API_KEY}"\nsecret = "{SECRET}"\nprivate_key = "{SECRET}"\n', "got secret, private_key"),
    (f'api_key = "{API_KEY}"\nsecret = "{SECRET}"\napi_secret = "{SECRET}"\n', "unknown field.*api_secret"),
    (f'api_key = "{API_KEY}"\nsecret = 12345678\n', "secret must be a non-empty string .got int"),
    (f'api_key = "{API_KEY}"\nsecret = "  "\n', "secret must be a non-empty string"),
    (f'api_key = "{API_KEY}"\nprivate_key = "{SECRET}"\n', "private_key: Ed25519 private key: not a readable PEM"),
])
def test_a_malformed_file_is_refused_without_quoting_it(tmp_path, text, reason):
    path = _write(tmp_path / "b.toml", text)
    with pytest.raises(CredentialsError, match=reason) as info:
        load_api_credentials(path=path)
    said = _everything_said(info.value)
    assert str(path) in said
    for value in (API_KEY, SECRET, "12345678"):
        assert value[:8] not in said


def test_a_pem_that_is_not_a_key_is_refused_without_quoting_it(tmp_path):
    pem, _ = _pem()
    lines = pem.splitlines()
    broken = "\n".join([lines[0], lines[1][:20] + "@@@@" + lines[1][24:], *lines[2:]])
    path = _write(tmp_path / "b.toml", f"api_key = \"{API_KEY}\"\nprivate_key = '''\n{broken}\n'''\n")
    with pytest.raises(CredentialsError, match="not a readable PEM") as info:
        load_api_credentials(path=path)
    assert lines[1][:16] not in _everything_said(info.value)


def test_without_systemd_or_a_path_the_error_says_what_to_do():
    with pytest.raises(CredentialsError, match=r"\$CREDENTIALS_DIRECTORY is not set .*LoadCredential=binance"):
        load_api_credentials("binance", environ={})
    for name in ("../etc/passwd", "..", "", "a/b"):
        with pytest.raises(CredentialsError, match="plain file name"):
            load_api_credentials(name, environ={"CREDENTIALS_DIRECTORY": "/tmp"})


def test_missing_file_and_a_directory_are_refused(tmp_path):
    with pytest.raises(CredentialsError, match=r"nope: cannot open \(No such file"):
        load_api_credentials("nope", environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    os.mkdir(tmp_path / "d", 0o700)
    with pytest.raises(CredentialsError, match="not a regular file"):
        load_api_credentials(path=tmp_path / "d")
