"""Closed choices (an Enum's values) read from the user: one parser, one error text.

``--strategy must be one of auto|stuff|..., not 'guess'`` reads the same wherever a choice
is checked: Typer's option types (cli/options.py), the Python API, config values."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from askgpt.runtime.errors import UsageError

E = TypeVar("E", bound=Enum)


def choice(kind: type[E], value: str | E, option: str, *, case_sensitive: bool = False) -> E:
    """The member of ``kind`` whose value ``value`` names (an Enum member passes through)."""
    if isinstance(value, kind):
        return value
    text = str(value)
    for member in kind:
        known = str(member.value)
        if text == known or (not case_sensitive and text.lower() == known.lower()):
            return member
    raise UsageError(f"{option} must be one of {'|'.join(str(m.value) for m in kind)}, not {text!r}")
