"""What a GGUF file holds, read with the gguf package's reader (headers only, memory-mapped)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from askgpt.runtime.errors import InputNotFoundError, ModelLoadError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: str
    n_elements: int


@dataclass(frozen=True)
class GgufSummary:
    path: Path
    size: int  # bytes
    architecture: str
    tensors: tuple[TensorInfo, ...]

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.size / max(1, self.n_params)

    def tensor_types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.type] = counts.get(t.type, 0) + 1
        return counts


def read_summary(path: Path) -> GgufSummary:
    """Raises `InputNotFoundError` (exit 3) or `ModelLoadError` (exit 4) for a bad file."""
    import gguf

    from askgpt.runtime.models.gguf import check_gguf

    if not path.is_file():
        raise InputNotFoundError(f"model file not found: {path}")
    check_gguf(path)  # bounded: GGUFReader trusts the counts and lengths it reads
    try:
        reader = gguf.GGUFReader(str(path))
        field = reader.fields.get("general.architecture")
        arch = str(field.contents()) if field is not None else "unknown"
        tensors = tuple(TensorInfo(t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_elements))
                        for t in reader.tensors)
    except (ValueError, KeyError, IndexError, OSError, EOFError) as exc:
        raise ModelLoadError(f"{path.name} is not a readable GGUF file: {exc}") from exc
    return GgufSummary(path, path.stat().st_size, arch, tensors)
