"""Binance API credentials from a systemd credential or a private file, never shown anywhere.

The gateway's unit passes the file with `LoadCredential=<name>:/etc/ttquant/<name>.toml`; systemd
puts a copy under `$CREDENTIALS_DIRECTORY` readable by the service alone. Outside systemd a path is
given and must be mode 0600 or stricter (a file group or others can read or write is refused). The
file is a small TOML table:

    api_key = "..."
    secret = "..."                    # an HMAC-SHA256 key, or
    private_key = '''-----BEGIN PRIVATE KEY-----...'''   # an Ed25519 key (PKCS#8 PEM), or
    private_key_file = "binance-ed25519.pem"              # the same in its own file (relative: beside this one)

Errors name the file, its mode and the offending field, never a value: they end up in logs.
"""
from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

from ttquant.core.daemon.process import keep_out_of_dumps
from ttquant.core.venues.binance.signing import Ed25519Signer, HmacSigner, Signer

__all__ = ["ApiCredentials", "CredentialsError", "load_api_credentials"]

_FIELDS = {"api_key", "secret", "private_key", "private_key_file"}
_SECRET_FIELDS = ("secret", "private_key", "private_key_file")


class CredentialsError(Exception):
    """A credential that cannot be used; the message names the file and field, never a value."""


class ApiCredentials:
    """An API key and the signer for its secret; repr shows at most the first 4 characters of the key."""
    __slots__ = ("api_key", "signer", "source")

    def __init__(self, api_key: str, signer: Signer, source: str):
        self.api_key, self.signer, self.source = api_key, signer, source

    def __repr__(self) -> str:
        return (f"ApiCredentials(api_key={self.api_key[:4]}..., key_type={self.signer.key_type}, "
                f"source={self.source})")

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("ApiCredentials holds a secret and is not picklable")


def _read_private(path: Path) -> bytes:
    """The file's bytes, if it is a regular file only its owner can read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CredentialsError(f"{path}: cannot open ({e.strerror})") from None
    try:
        st = os.fstat(fd)  # the file actually opened, not whatever the name points at a moment later
        if not stat.S_ISREG(st.st_mode):
            raise CredentialsError(f"{path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise CredentialsError(f"{path}: mode {mode:04o} lets group or others at it; a credential must be 0600 "
                                   f"or stricter (chmod 600 {path}, or pass it with systemd LoadCredential=)")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _credential_path(name: str | None, path: str | os.PathLike | None, environ) -> Path:
    if path is not None:
        return Path(path)
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise CredentialsError(f"credential name {name!r}: a plain file name is expected")
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise CredentialsError(f"credential {name!r}: $CREDENTIALS_DIRECTORY is not set (run under systemd with "
                               f"LoadCredential={name}:...) and no path was given")
    return Path(directory) / name


def _parse(raw: bytes, path: Path) -> dict:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CredentialsError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        # tomllib's message can quote a character of the file: keep only where it failed
        where = re.search(r"\(at ([\w ,]+)\)$", str(e))
        at = where.group(1) if where else "an unknown place"
        raise CredentialsError(f"{path}: not valid TOML (at {at})") from None


def _string_field(table: dict, field: str, path: Path) -> str:
    value = table[field]
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError(f"{path}: {field} must be a non-empty string (got {type(value).__name__})")
    return value.strip()


def load_api_credentials(name: str | None = None, path: str | os.PathLike | None = None,
                         environ=os.environ) -> ApiCredentials:
    """The credentials in `$CREDENTIALS_DIRECTORY/<name>` (systemd), or in `path` when one is given. The
    process keeps them out of core dumps and same-user ptrace from then on (process.keep_out_of_dumps)."""
    file = _credential_path(name, path, environ)
    keep_out_of_dumps()             # before the secret is read: no copy of it ever lands in a core file
    table = _parse(_read_private(file), file)
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise CredentialsError(f"{file}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})")
    if "api_key" not in table:
        raise CredentialsError(f"{file}: api_key is missing")
    api_key = _string_field(table, "api_key", file)
    given = [f for f in _SECRET_FIELDS if f in table]
    if len(given) != 1:
        raise CredentialsError(f"{file}: exactly one of {', '.join(_SECRET_FIELDS)} is expected, got "
                               f"{', '.join(given) or 'none'}")
    (field,) = given
    value = _string_field(table, field, file)
    if field == "secret":
        return ApiCredentials(api_key, HmacSigner(value), str(file))
    if field == "private_key_file":
        key_file = file.parent / value
        pem, source = _read_private(key_file), f"{file} (key {key_file})"
    else:
        pem, source = value.encode("utf-8"), str(file)
    try:
        signer = Ed25519Signer(pem)
    except ValueError as e:
        raise CredentialsError(f"{file}: {field}: {e}") from None
    return ApiCredentials(api_key, signer, source)
