"""Models the user already has: askgpt's own registry (`models add`) and GGUF files
other tools downloaded (the Hugging Face hub cache, LM Studio, Ollama).

Discovery lists folders and reads small manifests only (headers are read later, by
runtime.models.info). It never follows a path out of the folder it searches: a
symlink or manifest that points elsewhere is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from askgpt.runtime.errors import InputNotFoundError, UsageError
from askgpt.runtime.files import atomic_write
from askgpt.runtime.models.gguf import MAGIC

REGISTRY_FILE = "models.json"


@dataclass(frozen=True)
class Found:
    name: str  # what -m accepts
    path: Path
    source: str  # "registered", "hugging face", "lm studio", "ollama"
    mmproj: Path | None = None
    created_by_askgpt: bool = False
    endpoint: str | None = None  # a served model (`models add NAME --endpoint URL`)
    remote_model: str | None = None


def _inside(path: Path, root: Path) -> Path | None:
    """``path`` with links resolved, if it stays under ``root`` (else None)."""
    try:
        real = path.resolve(strict=True)
        real.relative_to(root.resolve(strict=True))
    except (OSError, ValueError):
        return None
    return real if real.is_file() else None


def hf_cache_root(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    return Path(env.get("HOME", "~")).expanduser() / ".cache" / "huggingface" / "hub"


def _hf(root: Path) -> Iterator[Found]:
    for repo in sorted(root.glob("models--*")):
        repo_id = repo.name.removeprefix("models--").replace("--", "/")
        for file in sorted(repo.glob("snapshots/*/**/*.gguf")):
            real = _inside(file, repo)
            if real is not None:
                yield Found(f"hf:{repo_id}/{file.name}", real, "hugging face")


def _lmstudio(roots: list[Path]) -> Iterator[Found]:
    for root in roots:
        for file in sorted(root.glob("*/*/*.gguf")):
            real = _inside(file, root)
            if real is not None:
                publisher, repo = file.parent.parent.name, file.parent.name
                yield Found(f"lmstudio:{publisher}/{repo}/{file.name}", real, "lm studio")


def _ollama(root: Path) -> Iterator[Found]:
    manifests = root / "manifests"
    for manifest in sorted(manifests.glob("*/*/*/*")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            layers = data["layers"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        blob = _ollama_blob(root, layers, "application/vnd.ollama.image.model")
        if blob is None:
            continue
        namespace, name, tag = manifest.parent.parent.name, manifest.parent.name, manifest.name
        prefix = "" if namespace == "library" else f"{namespace}/"
        # A vision model's projector is a layer of its own (llava, gemma3, ...).
        projector = _ollama_blob(root, layers, "application/vnd.ollama.image.projector")
        yield Found(f"ollama:{prefix}{name}:{tag}", blob, "ollama", mmproj=projector)


def _ollama_blob(root: Path, layers: list[object], media_type: str) -> Path | None:
    """The GGUF blob of the manifest's layer of ``media_type``, if it stays inside ``root``."""
    layer = next((x for x in layers if isinstance(x, dict) and x.get("mediaType") == media_type), None)
    digest = str(layer.get("digest", "")) if isinstance(layer, dict) else ""
    if not digest.startswith("sha256:") or not all(c in "0123456789abcdef" for c in digest[7:]):
        return None
    blob = _inside(root / "blobs" / digest.replace(":", "-"), root)
    if blob is None:
        return None
    with blob.open("rb") as fh:  # a layer that is not GGUF (safetensors) is not for llama.cpp
        return blob if fh.read(4) == MAGIC else None


def discover(env: Mapping[str, str]) -> list[Found]:
    """GGUF files of other tools, in their default folders (or the folders their own
    environment variables name)."""
    home = Path(env.get("HOME", "~")).expanduser()
    found: list[Found] = []
    found += _hf(hf_cache_root(env))
    found += _lmstudio([home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"])
    found += _ollama(Path(env["OLLAMA_MODELS"]) if env.get("OLLAMA_MODELS") else home / ".ollama" / "models")
    return found


class Registry:
    """Models added by name (`askgpt models add`), in the data folder's models.json."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / REGISTRY_FILE

    def entries(self) -> list[Found]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {self.path}: {exc}", hint="fix or delete it") from exc
        return [Found(name, Path(e.get("path") or ""), "registered", Path(e["mmproj"]) if e.get("mmproj") else None,
                      bool(e.get("created_by_askgpt")), e.get("endpoint"), e.get("remote_model"))
                for name, e in sorted(data.items())]

    def add(self, name: str, path: Path, mmproj: Path | None = None, *, created_by_askgpt: bool = False) -> Found:
        _check_name(name)
        for file in (path, mmproj):
            if file is not None and not file.is_file():
                raise InputNotFoundError(f"no such file: {file}")
        entries = {e.name: e for e in self.entries()}
        entries[name] = Found(name, path.resolve(), "registered", mmproj.resolve() if mmproj else None,
                              created_by_askgpt)
        self._write(entries)
        return entries[name]

    def add_remote(self, name: str, endpoint: str, remote_model: str | None) -> Found:
        """A model on an OpenAI-compatible server, by name (nothing is contacted here)."""
        from askgpt.runtime.models.endpoints import base_url

        _check_name(name)
        base_url(endpoint)
        entries = {e.name: e for e in self.entries()}
        entries[name] = Found(name, Path(), "registered", endpoint=endpoint, remote_model=remote_model)
        self._write(entries)
        return entries[name]

    def remove(self, name: str) -> Found:
        entries = {e.name: e for e in self.entries()}
        if name not in entries:
            raise InputNotFoundError(f"no model {name!r} was added", hint="askgpt models list shows them")
        found = entries.pop(name)
        self._write(entries)
        return found

    def get(self, name: str) -> Found | None:
        return next((e for e in self.entries() if e.name == name), None)

    def _write(self, entries: Mapping[str, Found]) -> None:
        data = {n: {"path": str(e.path), "mmproj": str(e.mmproj) if e.mmproj else None,
                    "created_by_askgpt": e.created_by_askgpt} if e.endpoint is None else
                {"endpoint": e.endpoint, "remote_model": e.remote_model} for n, e in entries.items()}
        with atomic_write(self.path) as fh:
            fh.write((json.dumps(data, indent=1) + "\n").encode("utf-8"))


def _check_name(name: str) -> None:
    if not name or "/" in name or ":" in name or name.lower().endswith(".gguf"):
        raise UsageError(f"bad model name {name!r}", hint="a short name without '/', ':' or .gguf")


def environ() -> dict[str, str]:
    return dict(os.environ)
