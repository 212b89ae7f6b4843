"""A served model's address: the base URL askgpt talks to, and the form shown to users."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from askgpt.runtime.errors import UsageError


def base_url(endpoint: str) -> str:
    """``http://host:port/v1`` from any of ``host:port``, ``http://host:port`` or ``.../v1/``."""
    url = endpoint.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--endpoint must be an http(s) URL, not {endpoint!r}",
                         hint="e.g. --endpoint http://127.0.0.1:8080/v1")
    path = parts.path if parts.path.endswith("/v1") else parts.path + "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def shown(url: str) -> str:
    """The URL without any user:password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
