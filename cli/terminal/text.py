"""Untrusted text made safe to print: shared by the plain and the Markdown renderers."""

from __future__ import annotations

# C0 controls but tab and newline, DEL, and the C1 range (0x9b is a one-byte CSI).
_CONTROLS = {c: chr(0x2400 + c) for c in range(32) if c not in (9, 10)}
_CONTROLS[0x7F] = "\u2421"
_CONTROLS.update({c: "\ufffd" for c in range(0x80, 0xA0)})


def neutralize(text: str) -> str:
    """Text from a model or a file, made safe for a terminal: escape sequences (a title
    change, a hyperlink, clearing the screen) lose their ESC, shown as a visible symbol
    (U+241B), and other control characters become their Unicode control pictures."""
    return text.translate(_CONTROLS)
