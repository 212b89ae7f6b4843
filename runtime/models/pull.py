"""`askgpt models pull REPO FILE`: a GGUF from the Hugging Face hub, for a connected
machine preparing an offline one (askgpt never downloads anything on its own).

huggingface_hub does the transfer (resumable: an interrupted download continues
from its partial file; a progress bar on stderr). askgpt then checks the file's
SHA-256 against the hub's (the ETag of an LFS file is its SHA-256), checks the GGUF
header, and only then renames it into the models folder: a file there is whole.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from askgpt.runtime.errors import AskgptError, ExitCode, ModelNotFoundError
from askgpt.runtime.files import sha256_file
from askgpt.runtime.models.gguf import check_gguf

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Base classes of connection failures in the HTTP clients huggingface_hub has used
# (httpx and its forks, requests), matched by name so none of them is imported here.
_TRANSPORT_ERRORS = frozenset({"TransportError", "RequestError", "ConnectionError", "Timeout", "TimeoutException"})


class DownloadError(AskgptError):
    """The hub could not be reached or the file did not arrive whole (exit 1)."""

    exit_code = ExitCode.RUNTIME_ERROR


@dataclass(frozen=True)
class Pulled:
    path: Path
    sha256: str
    size: int


def pull(repo: str, filename: str, models_dir: Path, *, endpoint: str | None = None,
         revision: str | None = None, timeout: float = 30.0) -> Pulled:
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
    except ImportError as exc:
        raise DownloadError("models pull needs huggingface_hub", hint='pip install "askgpt[hub]"') from exc
    if not filename.lower().endswith(".gguf"):
        raise DownloadError(f"{filename} is not a .gguf file name")
    staging = models_dir / ".pulling"
    try:
        url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)
        meta = get_hf_file_metadata(url, token=False, timeout=timeout)
        local = Path(hf_hub_download(repo, filename, revision=revision, endpoint=endpoint, local_dir=staging,
                                     token=False, etag_timeout=timeout))
    except (EntryNotFoundError, RepositoryNotFoundError) as exc:
        raise ModelNotFoundError(f"the hub has no {filename} in {repo}",
                                 hint="check the repository and file name") from exc
    except HfHubHTTPError as exc:
        raise DownloadError(f"the hub answered with an error: {_first_line(exc)}") from exc
    except OSError as exc:  # connection refused, timeouts, DNS: requests/httpx errors are OSErrors
        raise DownloadError(f"cannot reach the hub: {_first_line(exc)}",
                            hint="check the connection; run pull again to resume") from exc
    except Exception as exc:  # the HTTP client's transport errors are not OSErrors
        if any(c.__name__ in _TRANSPORT_ERRORS for c in type(exc).__mro__):
            raise DownloadError(f"cannot reach the hub: {_first_line(exc)}",
                                hint="check the connection; run pull again to resume") from exc
        raise
    expected = (meta.etag or "").strip('"').lower()
    digest = sha256_file(local)
    if _SHA256.match(expected) and digest != expected:
        local.unlink(missing_ok=True)
        raise DownloadError(f"{filename} arrived damaged (SHA-256 {digest[:16]}… is not the hub's {expected[:16]}…)",
                            hint="run pull again")
    check_gguf(local)
    target = models_dir / Path(filename).name
    os.replace(local, target)
    return Pulled(target, digest, target.stat().st_size)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
