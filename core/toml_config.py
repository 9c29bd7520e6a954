"""What every daemon's TOML file needs checked the same way: typed keys with defaults and no
unknown keys, each refusal naming the key (the caller adds the file)."""
from __future__ import annotations

import dataclasses
import tomllib

__all__ = ["read_toml", "typed", "known_keys"]


def read_toml(path: str, error=ValueError) -> dict:
    """The document, or `error` naming the file: missing, or not TOML (with where it breaks)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def typed(table: dict, key: str, kind, where: str, default=dataclasses.MISSING, error=ValueError):
    """table[key] as kind (an int is a float where a float is asked; a bool is never a number)."""
    name = f"{where}.{key}" if where else key
    if key not in table:
        if default is dataclasses.MISSING:
            raise error(f"{name}: missing")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise error(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def known_keys(table: dict, keys, where: str, error=ValueError):
    for key in table:
        if key not in keys:
            name = f"{where}.{key}" if where else key
            raise error(f"{name}: unknown key (known: {', '.join(sorted(keys))})")
