"""`askgpt models pull REPO FILE`: a GGUF from the Hugging Face hub, for a connected
machine preparing an offline one (askgpt never downloads anything on its own).

huggingface_hub does the transfer (resumable: an interrupted download continues
from its partial file; a progress bar on stderr). askgpt then checks the file's
SHA-256 against the hub's (the ETag of an LFS file is its SHA-256), checks the GGUF
header, and only then renames it into the models folder: a file there is whole.

`askgpt models pull NAME` (`pull_entry`) does the same for a catalog entry's files (the
model, and a vision model's projector), into a folder of their own, and also checks each
file against the size and SHA-256 the catalog pins, where it pins them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from askgpt.runtime.errors import AskgptError, ExitCode, ModelNotFoundError
from askgpt.runtime.files import sha256_file
from askgpt.runtime.models.catalog import CatalogEntry
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


@dataclass(frozen=True)
class PulledEntry:
    name: str
    model: Pulled
    mmproj: Pulled | None


def pull(repo: str, filename: str, models_dir: Path, *, endpoint: str | None = None,
         revision: str | None = None, timeout: float = 30.0, size: int | None = None,
         sha256: str | None = None) -> Pulled:
    """``size`` and ``sha256``: what the file must be (a catalog's pins), checked as well as
    the hub's own checksum."""
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
    # Whole as the hub has it, but not the file the catalog pinned: the hub's file changed.
    got = local.stat().st_size
    if (sha256 is not None and digest != sha256) or (size is not None and got != size):
        local.unlink(missing_ok=True)
        found = (f"SHA-256 {digest[:16]}… is not the pinned {sha256[:16]}…" if sha256 is not None and digest != sha256
                 else f"{got:,} bytes, not the catalog's {size:,}")
        raise DownloadError(f"{filename} does not match the catalog: {found}",
                            hint=f"the file on the hub changed; `askgpt models pull {repo} {filename}` "
                                 "takes it as it is")
    check_gguf(local)
    target = models_dir / Path(filename).name
    os.replace(local, target)
    return Pulled(target, digest, target.stat().st_size)


def pull_entry(entry: CatalogEntry, models_dir: Path, *, endpoint: str | None = None,
               revision: str | None = None, timeout: float = 30.0) -> PulledEntry:
    """A catalog entry's files into ``models_dir/NAME/``: a folder of its own, so that its
    projector is never taken for another model's "mmproj beside it". A file already there
    whose pinned SHA-256 matches is kept, so a pull cut short after the model resumes at the
    projector."""
    folder = models_dir / entry.name
    pulled: list[Pulled] = []
    for file in entry.files:
        target = folder / file.name
        if file.sha256 is not None and target.is_file() and (file.size is None or target.stat().st_size == file.size):
            digest = sha256_file(target)
            if digest == file.sha256:
                pulled.append(Pulled(target, digest, target.stat().st_size))
                continue
        pulled.append(pull(entry.repo, file.name, folder, endpoint=endpoint, revision=revision, timeout=timeout,
                           size=file.size, sha256=file.sha256))
    return PulledEntry(entry.name, pulled[0], pulled[1] if len(pulled) > 1 else None)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
