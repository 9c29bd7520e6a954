"""Every daemon's TOML file, declared once as a schema (msgspec Structs) and checked whole
before anything starts.

A refusal is one line naming the file, the key and, for an unknown key, the keys it knows:

    /etc/ttquant/md.binance.toml: connection.backof_max_s: unknown key (known: backoff_initial_s, ...)

A schema is a `Table` subclass; every table in it refuses keys it does not declare. Checks a
type cannot say go in `__post_init__`, raising `ValueError("key: why")` (the key relative to
that table). Tables keyed by names the schema cannot know (symbols, strategy ids) are read as
`dict[str, Any]` and each entry checked or converted with `convert_entry`, so the error names
the entry (msgspec reports a typed dict's entry as `[...]`, without its key).
After conversion the loader calls `finish(base_dir)` when the schema has it: paths relative to
the config file's directory, defaults that depend on other keys.

The example files in `examples/` are the documentation of every key and the start of every
config the demo, the tests and Ansible write (`render_example`).
"""
from __future__ import annotations

import json
import os
import re
import tomllib
from typing import Any

import msgspec

__all__ = [
    "Table", "ConfigError", "load_config", "parse_config", "convert_entry", "explain", "read_toml", "config_dir",
    "check_rings_key", "check_power_of_two",
    "default_config_path", "example_path", "example_text", "render_example", "LogLevel", "CpuList",
]

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples")
LogLevel = str          # DEBUG, INFO, WARNING, ERROR (checked by the runner's ProcessTable)
CpuList = list[int]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the key."""


class Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, dict=True):
    """A TOML table of a daemon's configuration: unknown keys are refused. (`dict=True` lets
    finish() keep what it derives, such as resolved paths, beside the keys.)"""


def check_rings_key(name: str, key: str = "name") -> None:
    """A table's rings name (the stack's: /ttq.<name>.*), for __post_init__: "" means the default."""
    from ttquant.core.rings.names import check_rings_name
    if name:
        try:
            check_rings_name(name)
        except ValueError:
            raise ValueError(f"{key}: [a-z0-9][a-z0-9_-]* (the stack's rings name), got {name!r}") from None


def check_power_of_two(value: int, key: str) -> None:
    if value < 2 or value & (value - 1):
        raise ValueError(f"{key}: a power of two, got {value}")


def config_dir() -> str:
    """Where `ttquant ROLE INSTANCE` looks for its file: $TTQ_CONFIG_DIR, else /etc/ttquant."""
    return os.environ.get("TTQ_CONFIG_DIR") or "/etc/ttquant"


def default_config_path(role: str, instance: str) -> str:
    """<dir>/<role>.<instance>.toml; a host-wide daemon (no instance): <dir>/<role>.toml."""
    return os.path.join(config_dir(), f"{role}.{instance}.toml" if instance else f"{role}.toml")


def read_toml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: not readable by this user") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def load_config(path: str, schema: type[Table], **context):
    """The file as `schema`, or ConfigError naming the file and the key."""
    return parse_config(read_toml(path), schema, path, **context)


def parse_config(doc: dict, schema: type[Table], path: str = "<config>", **context):
    try:
        cfg = msgspec.convert(doc, schema)
        finish = getattr(cfg, "finish", None)
        if finish is not None:
            finish(os.path.dirname(os.path.abspath(path)), path=path, **context)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {explain(str(exc), schema)}") from None
    except ConfigError as exc:          # from finish() or convert_entry(): already names the key
        raise ConfigError(f"{path}: {exc}") from None
    return cfg


def convert_entry(value: Any, schema: type[Table], where: str):
    """One entry of a table keyed by names (a symbol's limits): ConfigError names `where`."""
    try:
        return msgspec.convert(value, schema)
    except msgspec.ValidationError as exc:
        raise ConfigError(_join(where, explain(str(exc), schema))) from None


_AT = re.compile(r"(?s)(.*) - at `\$(.*)`\Z")
_UNKNOWN = re.compile(r"Object contains unknown field `(.+)`\Z")
_MISSING = re.compile(r"Object missing required field `(.+)`\Z")
_RELATIVE = re.compile(r"([a-z_][a-z0-9_.]*): (.*)", re.S)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def explain(message: str, schema) -> str:
    """msgspec's `Expected int, got str - at $.a.b` as `a.b: expected int, got str`."""
    where = ""
    m = _AT.match(message)
    if m:
        message, where = m.group(1), m.group(2).lstrip(".")
    if (m := _UNKNOWN.match(message)):
        known = ", ".join(sorted(_fields_at(schema, where)))
        return f"{_join(where, m.group(1))}: unknown key (known: {known})"
    if (m := _MISSING.match(message)):
        return f"{_join(where, m.group(1))}: missing"
    if (m := _RELATIVE.match(message)):            # "key: why" from a table's __post_init__
        return f"{_join(where, m.group(1))}: {m.group(2)}"
    message = message.replace("Expected `", "expected ").replace("`", "")
    return f"{where}: {message}" if where else message


def _fields_at(schema, where: str) -> list[str]:
    info = msgspec.inspect.type_info(schema)
    for part in [p for p in re.split(r"\.|\[\d+\]", where) if p]:
        info = _struct_of(next((f.type for f in info.fields if f.encode_name == part), None))
        if info is None:
            return []
    return [f.encode_name for f in info.fields]


def _struct_of(t):
    if isinstance(t, msgspec.inspect.StructType):
        return t
    for sub in getattr(t, "types", ()):             # Optional / Union: the struct among them
        if isinstance(sub, msgspec.inspect.StructType):
            return sub
    return None


# -- the examples -------------------------------------------------------------------------------

def example_path(role: str) -> str:
    path = os.path.join(EXAMPLES_DIR, f"{role}.toml")
    if not os.path.exists(path):
        roles = sorted(f[:-5] for f in os.listdir(EXAMPLES_DIR) if f.endswith(".toml"))
        raise ConfigError(f"no example for {role!r} (roles: {', '.join(roles)})")
    return path


def example_text(role: str) -> str:
    with open(example_path(role), encoding="utf-8") as f:
        return f.read()


_HEADER = re.compile(r"\s*\[([A-Za-z0-9_.\-]+)\]\s*(#.*)?\Z")
_KEY = re.compile(r"(\s*)([A-Za-z0-9_\-]+)(\s*=\s*)(.*?)(\s+#.*)?\Z")


def toml_value(value) -> str:
    """A TOML literal for a JSON-like value (inline tables for dicts inside lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def _flatten(overrides: dict, prefix=()) -> list[tuple[tuple[str, ...], Any, bool]]:
    """(path, value) of each scalar or list; a dict is a table (an empty one changes nothing)."""
    out = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            out += _flatten(value, prefix + (key,))
        else:
            out.append((prefix + (key,), value))
    return out


def render_example(role: str, overrides: dict | None = None, text: str | None = None) -> str:
    """The role's example with `overrides` (nested like the TOML) put over it, comments kept.

    A value replaces the example's value of the same key; a key or table the example lacks is
    added; `None` removes a key or a whole table (e.g. {"markets": {"usdm": None}}).
    """
    lines = (text if text is not None else example_text(role)).splitlines()
    for path, value in _flatten(overrides or {}):
        lines = _put(lines, path[:-1], path[-1], value)
    return "\n".join(lines).rstrip("\n") + "\n"


def _sections(lines):
    """(table path, first line, end line) of each table; the root table first."""
    starts = [((), 0)]
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            starts.append((tuple(m.group(1).split(".")), i))
    out = []
    for n, (path, start) in enumerate(starts):
        end = starts[n + 1][1] if n + 1 < len(starts) else len(lines)
        out.append((path, start, end))
    return out


def _put(lines, table, key, value):
    sections = _sections(lines)
    whole = table + (key,)
    if value is None:                               # remove a table and its sub-tables, or a key
        drop = [(s, e) for path, s, e in sections if path[:len(whole)] == whole and path]
        if drop:
            keep = [line for i, line in enumerate(lines) if not any(s <= i < e for s, e in drop)]
            return keep
    for path, start, end in sections:
        if path != table:
            continue
        for i in range(start, end):
            m = _KEY.match(lines[i])
            if m and m.group(2) == key and not lines[i].lstrip().startswith("#"):
                if value is None:
                    return lines[:i] + lines[i + 1:]
                lines = list(lines)
                lines[i] = f"{m.group(1)}{key}{m.group(3)}{toml_value(value)}{m.group(5) or ''}"
                return lines
        if value is None:
            return lines
        at = end                                    # after the table's last key, before blank lines
        while at > start + 1 and not lines[at - 1].strip():
            at -= 1
        return lines[:at] + [f"{key} = {toml_value(value)}"] + lines[at:]
    if value is None:
        return lines
    body = [f"{key} = {toml_value(value)}"]
    if not table:                                   # a root key the example lacks: before any table
        first = next((s for path, s, _ in sections if path), len(lines))
        return lines[:first] + body + lines[first:]
    return list(lines) + ["", f"[{'.'.join(table)}]"] + body
