"""`askgpt config`: the config file read, changed key by key, and explained.

Values typed on the command line are parsed by the key's type and validated as
the loader validates the file, before the file is rewritten (atomically), so a
`set` can never leave a file askgpt refuses to start with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields

from .errors import UsageError
from .files import atomic_write
from .settings import ENV_OVERRIDES, KEY_TYPES, SECRET_KEYS, Defaults, Paths, read_config_file, validate_config

# Environment variables that override a config key (after command-line options).


@dataclass(frozen=True)
class Effective:
    key: str
    value: object
    source: str  # "environment (NAME)", "config file" or "default"


def parse_value(key: str, text: str) -> object:
    """``text`` as the type ``key`` takes in the file."""
    if key not in KEY_TYPES:
        raise UsageError(f"unknown key {key!r}", hint=f"known keys: {', '.join(KEY_TYPES)}")
    kind = KEY_TYPES[key]
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in {"true", "yes", "on", "1"}:
            return True
        if lowered in {"false", "no", "off", "0"}:
            return False
        raise UsageError(f"'{key}' takes true or false, not {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"'{key}' takes a whole number, not {text!r}") from None
    if kind == (int, float):
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"'{key}' takes a number, not {text!r}") from None
    return text


def set_value(paths: Paths, key: str, text: str) -> object:
    data = read_config_file(paths.config_file)
    data[key] = parse_value(key, text)
    validate_config(data, "config set")
    _write(paths, data)
    return data[key]


def unset_value(paths: Paths, key: str) -> bool:
    """Remove ``key`` from the file; False when it was not there."""
    if key not in KEY_TYPES:
        raise UsageError(f"unknown key {key!r}", hint=f"known keys: {', '.join(KEY_TYPES)}")
    data = read_config_file(paths.config_file)
    if key not in data:
        return False
    del data[key]
    _write(paths, data)
    return True


def effective(paths: Paths, env: Mapping[str, str]) -> list[Effective]:
    """Every key's value and where it comes from (a command-line option, not known
    here, would override each of them for one call)."""
    data = read_config_file(paths.config_file)
    out = []
    for f in fields(Defaults):
        var = ENV_OVERRIDES.get(f.name)
        if var and env.get(var):
            row = Effective(f.name, env[var], f"environment ({var})")
        elif f.name in data:
            row = Effective(f.name, data[f.name], "config file")
        else:
            row = Effective(f.name, f.default, "default")
        if f.name in SECRET_KEYS and row.value:
            row = Effective(row.key, "(set, not shown)", row.source)
        out.append(row)
    return out


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # A JSON string is a valid TOML basic string (same escapes; \\uXXXX for the rest).
    return json.dumps(str(value))


def _write(paths: Paths, data: Mapping[str, object]) -> None:
    order = [f.name for f in fields(Defaults)]
    text = "".join(f"{k} = {_toml_value(data[k])}\n" for k in order if k in data)
    with atomic_write(paths.config_file) as fh:
        fh.write(text.encode("utf-8"))
