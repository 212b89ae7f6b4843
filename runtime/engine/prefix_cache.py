"""Evaluated prompt prefixes kept on disk, so a second question about the same
document (or the same long system prompt and examples) skips re-reading it.

An entry is llama.cpp's sequence state (the attention cache of every position)
after a prompt, stored with the prompt's keys: its token ids, and for embedding
rows (images) keys derived from the rows' content hash, so an image's state is
reused only for the same image. A later prompt reuses the longest prefix it
shares with any entry of the same model; llama.cpp then drops the positions past
that prefix. Nothing here imports llama.cpp: the engine hands over bytes.

One file per entry, ``<folder>/<model key>/<prompt hash>.kv``:

    b"ASKGPT-KV1\\n" | u64 header length | header JSON | int32 keys | state bytes

The header holds the model key, the key count and a BLAKE2b digest of keys and
state; a file whose digest does not match is deleted, never loaded. Files are
private (0600 in 0700 folders: token ids give the prompt back), written to a
temporary name and renamed (two processes storing the same prompt
both write whole files), and the least recently used entries are deleted once the
folder exceeds its size bound. A reader whose file vanished (another process
evicted it) treats it as a miss: the cache can make an answer faster, never fail it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askgpt.runtime.files import FileIdentity, atomic_write, private_folder

MAGIC = b"ASKGPT-KV1\n"
SUFFIX = ".kv"
DEFAULT_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class PrefixCacheConfig:
    folder: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    # Prompts whose unread part is shorter than this are read faster than a state
    # file is loaded and verified, and are not worth a file of their own either.
    min_tokens: int = 512


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    keys_count: int  # 0 unless listed with counts=True
    bytes: int
    last_used: float


@dataclass(frozen=True)
class CacheSummary:
    folder: Path
    entries: tuple[CacheEntry, ...]
    max_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries)


@dataclass
class CacheEvents:
    """What the cache did during one run, for --stats."""

    reused_tokens: int = 0
    stored_tokens: int = 0
    rejected: list[str] = field(default_factory=list)  # files deleted as corrupt


def model_key(model_path: Path, *, kv_type: str, backend_version: str) -> str:
    """A model file's identity for the cache: its path, size and modification time,
    with what changes the state's layout (the cache's element type, llama.cpp's
    version). Hashing 100 MB-10 GB of weights per run would cost more than it saves."""
    ident = f"{FileIdentity.of(model_path).joined(chr(0))}\0{kv_type}\0{backend_version}"
    return hashlib.blake2b(ident.encode(), digest_size=12).hexdigest()


def _keys_bytes(keys: Sequence[int]) -> bytes:
    import numpy as np

    return np.asarray(keys, dtype="<i4").tobytes()


class PrefixCache:
    """The entries of one model (``model``: `model_key`) in ``config.folder``."""

    def __init__(self, config: PrefixCacheConfig, model: str) -> None:
        self.config = config
        self.model = model
        self.events = CacheEvents()
        self._dir = config.folder / model

    def longest_prefix(self, keys: Sequence[int]) -> tuple[int, Path] | None:
        """The entry sharing the longest prefix with ``keys``, and that prefix's length."""
        import numpy as np

        want = np.asarray(keys, dtype=np.int64)
        best: tuple[int, Path] | None = None
        for path in self._files():
            stored = _read_keys(path, self.model)
            if stored is None:
                continue
            n = min(len(stored), len(want))
            differ = np.flatnonzero(stored[:n] != want[:n])
            common = int(differ[0]) if len(differ) else n
            if common and (best is None or common > best[0]):
                best = (common, path)
        return best

    def load(self, path: Path) -> tuple[list[int], bytes] | None:
        """An entry's keys and state, verified; None when it is gone or corrupt."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        parsed = _parse(data, self.model)
        if parsed is None:
            self.events.rejected.append(path.name)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # least recently used is judged by modification time
        except OSError:
            pass
        return parsed

    def store(self, keys: Sequence[int], state: bytes) -> None:
        """Write an entry for ``keys``, then trim the folder to its bound. A failure to
        write (full disk, read-only folder) only means no entry."""
        body = _keys_bytes(keys)
        digest = hashlib.blake2b(body + state, digest_size=16).hexdigest()
        header = json.dumps({"model": self.model, "keys": len(keys), "digest": digest}).encode()
        name = hashlib.blake2b(body, digest_size=16).hexdigest() + SUFFIX
        try:
            # The entries hold a prompt's token ids (a document, readable back through the
            # tokenizer): 0600 files (atomic_write's default) in 0700 folders.
            private_folder(self.config.folder, tighten=True)
            private_folder(self._dir, tighten=True)
            with atomic_write(self._dir / name) as fh:
                fh.write(MAGIC + struct.pack("<Q", len(header)) + header)
                fh.write(body)
                fh.write(state)
        except OSError:
            return
        self.events.stored_tokens = len(keys)
        trim(self.config.folder, self.config.max_bytes)

    def _files(self) -> list[Path]:
        try:
            return [p for p in self._dir.iterdir() if p.suffix == SUFFIX]
        except OSError:
            return []


def _read_header(fh: Any) -> dict[str, Any] | None:
    """An entry file's header (its key count checked to be a number), or None."""
    head = fh.read(len(MAGIC) + 8)
    if len(head) < len(MAGIC) + 8 or not head.startswith(MAGIC):
        return None
    (size,) = struct.unpack("<Q", head[len(MAGIC):])
    if size > 4096:
        return None
    try:
        header = json.loads(fh.read(size))
    except ValueError:
        return None
    return header if isinstance(header, dict) and isinstance(header.get("keys"), int) else None


def _read_keys(path: Path, model: str) -> Any:
    import numpy as np

    try:
        with path.open("rb") as fh:
            header = _read_header(fh)
            if header is None or header.get("model") != model:
                return None
            body = fh.read(4 * header["keys"])
    except OSError:
        return None
    if len(body) != 4 * header["keys"]:
        return None
    return np.frombuffer(body, dtype="<i4").astype(np.int64)


def _parse(data: bytes, model: str) -> tuple[list[int], bytes] | None:
    import numpy as np

    start = len(MAGIC) + 8
    if len(data) < start or not data.startswith(MAGIC):
        return None
    (size,) = struct.unpack("<Q", data[len(MAGIC):start])
    try:
        header = json.loads(data[start:start + size])
        n = int(header["keys"])
        digest = str(header["digest"])
    except (ValueError, KeyError, TypeError):
        return None
    if header.get("model") != model or n < 0:
        return None
    body_start = start + size
    payload = data[body_start:]
    if len(payload) < 4 * n or hashlib.blake2b(payload, digest_size=16).hexdigest() != digest:
        return None
    keys = np.frombuffer(payload[:4 * n], dtype="<i4").tolist()
    return keys, payload[4 * n:]


def entries(folder: Path, *, counts: bool = False) -> list[CacheEntry]:
    """Every entry under ``folder`` (all models), oldest use first; with ``counts``,
    each one's prompt length too (read from its header, for `askgpt cache info`)."""
    found = []
    for path in folder.glob(f"*/*{SUFFIX}"):
        try:
            st = path.stat()
        except OSError:
            continue
        found.append(CacheEntry(path=path, keys_count=_key_count(path) if counts else 0, bytes=st.st_size,
                                last_used=st.st_mtime))
    return sorted(found, key=lambda e: e.last_used)


def _key_count(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            header = _read_header(fh)
    except OSError:
        return 0
    return 0 if header is None else int(header["keys"])


def trim(folder: Path, max_bytes: int) -> None:
    """Delete least recently used entries until the folder holds at most ``max_bytes``."""
    found = entries(folder)
    total = sum(e.bytes for e in found)
    for entry in found:
        if total <= max_bytes:
            break
        entry.path.unlink(missing_ok=True)
        total -= entry.bytes


def summary(config: PrefixCacheConfig) -> CacheSummary:
    return CacheSummary(folder=config.folder, entries=tuple(entries(config.folder, counts=True)),
                        max_bytes=config.max_bytes)


def clear(folder: Path) -> int:
    """Delete every entry; returns the bytes freed."""
    freed = 0
    for entry in entries(folder):
        entry.path.unlink(missing_ok=True)
        freed += entry.bytes
    return freed
