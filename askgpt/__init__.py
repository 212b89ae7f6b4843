"""askgpt: an offline, on-device assistant for the terminal.

``from askgpt import Assistant`` is the Python API (askgpt.assistant),
imported on first use so that importing askgpt (and ``askgpt --help``) stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Assistant", "Chat", "Citation", "Response", "__version__"]


def __getattr__(name: str) -> Any:
    if name in {"Assistant", "Chat", "Citation", "Response"}:
        from askgpt import assistant

        return getattr(assistant, name)
    raise AttributeError(f"module 'askgpt' has no attribute {name!r}")
