"""The model catalog: well-known small GGUF models that `askgpt models pull NAME` fetches
(the model, and a vision-language model's projector), with what they need.

The entries live in catalog.json beside this module. A file's size and SHA-256 are given
only where public sources agreed on them; a null is "not confirmed", never a guess, and
pull then checks what it can and says the hash was not pinned. Nothing here goes online.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from askgpt.runtime.errors import ModelNotFoundError, UsageError

CATALOG_FILE = Path(__file__).with_name("catalog.json")
# The context the RAM column is estimated at: askgpt's default --ctx.
ESTIMATE_CTX = 4096
# The attention cache's element size at the default --kv-type f16.
F16_BYTES = 2


@dataclass(frozen=True)
class CatalogFile:
    name: str
    size: int | None  # bytes; None: not confirmed
    sha256: str | None  # lower-case hex; None: not confirmed

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class Attention:
    """The shape of the attention cache, from the model's published configuration."""

    layers: int
    kv_heads: int
    head_dim: int

    def kv_bytes_per_token(self, element_bytes: int = F16_BYTES) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * element_bytes  # K and V


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    description: str
    repo: str
    licence: str
    file: CatalogFile
    mmproj: CatalogFile | None
    attention: Attention | None
    sources: tuple[str, ...]

    @property
    def vision(self) -> bool:
        return self.mmproj is not None

    @property
    def files(self) -> tuple[CatalogFile, ...]:
        return (self.file,) if self.mmproj is None else (self.file, self.mmproj)

    @property
    def confirmed(self) -> bool:
        """Every file's size and SHA-256 are known."""
        return all(f.size is not None and f.sha256 is not None for f in self.files)

    @property
    def download_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    def ram_bytes(self, *, working_bytes: int, n_ctx: int = ESTIMATE_CTX) -> int | None:
        """A rough need: the files (weights and projector are read into memory whole), the
        f16 attention cache for ``n_ctx`` tokens and llama.cpp's working buffers. Gemma 3's
        sliding-window layers keep less cache than this counts, so it errs high."""
        size = self.download_bytes
        if size is None or self.attention is None:
            return None
        return size + self.attention.kv_bytes_per_token() * n_ctx + working_bytes

    def to_json(self, *, working_bytes: int) -> dict[str, object]:
        def file_json(f: CatalogFile | None) -> dict[str, object] | None:
            return None if f is None else {"name": f.name, "size": f.size, "sha256": f.sha256}

        return {"name": self.name, "title": self.title, "description": self.description, "repo": self.repo,
                "licence": self.licence, "vision": self.vision, "file": file_json(self.file),
                "mmproj": file_json(self.mmproj), "download_bytes": self.download_bytes,
                "ram_bytes": self.ram_bytes(working_bytes=working_bytes), "confirmed": self.confirmed,
                "sources": list(self.sources)}


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str) -> CatalogEntry:
        """The entry called ``name`` (case-insensitive); an unknown name raises, naming the
        closest ones."""
        for entry in self.entries:
            if entry.name.lower() == name.strip().lower():
                return entry
        close = difflib.get_close_matches(name.lower(), self.names(), n=3, cutoff=0.5)
        if not close:  # "qwen" is far from every full name but starts some of them
            close = [n for n in self.names() if n.startswith(name.lower()[:4])][:3]
        hint = (f"did you mean {', '.join(close)}? " if close else "") + "askgpt models catalog lists them"
        raise ModelNotFoundError(f"no model named {name!r} in the catalog", hint=hint)


def load_catalog(path: Path | None = None) -> Catalog:
    """The catalog in ``path`` (default: the one shipped with askgpt)."""
    file = path or CATALOG_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return Catalog(tuple(_entry(item) for item in data["models"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read the model catalog {file}: {exc}", hint="reinstall askgpt") from exc


def _file(item: Mapping[str, object] | None) -> CatalogFile | None:
    if item is None:
        return None
    sha = item.get("sha256")
    size = item.get("size")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef"
                                                                              for c in sha)):
        raise ValueError(f"{item.get('name')}: sha256 is not 64 lower-case hex digits")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ValueError(f"{item.get('name')}: size is not a positive number of bytes")
    name = str(item["name"])
    if "/" in name or "\\" in name or not name.lower().endswith(".gguf"):
        raise ValueError(f"{name}: a file name must be a plain .gguf name")
    return CatalogFile(name, size, sha)


def _entry(item: Mapping[str, object]) -> CatalogEntry:
    model = _file(item["file"])  # type: ignore[arg-type]
    if model is None:
        raise ValueError(f"{item.get('name')}: no file")
    attention = item.get("attention")
    return CatalogEntry(
        name=str(item["name"]), title=str(item["title"]), description=str(item["description"]),
        repo=str(item["repo"]), licence=str(item["licence"]), file=model,
        mmproj=_file(item.get("mmproj")),  # type: ignore[arg-type]
        attention=Attention(**attention) if isinstance(attention, dict) else None,
        sources=tuple(str(s) for s in item.get("sources") or ()),  # type: ignore[attr-defined]
    )
