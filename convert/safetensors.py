"""Lazy, checked reading of .safetensors files (and, only when trusted, pickles).

The format is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the bytes. Each tensor is read from
the file only when asked for (a plain read, not a memory map, whose pages would
stay resident), so a conversion holds about one tensor at a time, never the
whole model. Written here rather than
through the `safetensors` package because that package's NumPy reader cannot
return bfloat16, the type most checkpoints ship in.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.runtime.errors import AskgptError, ExitCode

_ITEM_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_MAX_HEADER = 100 << 20  # the format's own limit


class CheckpointError(AskgptError):
    """A checkpoint file that cannot be read: corrupt, truncated or of an unknown type."""

    exit_code = ExitCode.RUNTIME_ERROR


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # safetensors' name: F32, F16, BF16, ...
    shape: tuple[int, ...]
    start: int  # byte offsets into the data section
    end: int


class SafetensorsFile:
    """One .safetensors file: its header read and checked at once, tensors on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            size = path.stat().st_size
            with path.open("rb") as f:
                raw_len = f.read(8)
                if len(raw_len) != 8:
                    raise CheckpointError(f"corrupt safetensors file {path}: shorter than its header")
                (header_len,) = struct.unpack("<Q", raw_len)
                if header_len > min(_MAX_HEADER, size - 8):
                    raise CheckpointError(f"corrupt safetensors header in {path}: it claims {header_len:,} bytes")
                header = json.loads(f.read(header_len))
        except OSError as exc:
            raise CheckpointError(f"cannot read {path}: {exc.strerror}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"corrupt safetensors header in {path}: not JSON") from exc
        if not isinstance(header, dict):
            raise CheckpointError(f"corrupt safetensors header in {path}: not a JSON object")
        self._data_start = 8 + header_len
        data_size = size - self._data_start
        self.entries: dict[str, TensorEntry] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            self.entries[name] = _entry(path, name, info, data_size)

    def names(self) -> list[str]:
        return list(self.entries)

    def load(self, name: str) -> np.ndarray:
        """The tensor as float32 (float types only), copied out of the map."""
        e = self.entries[name]
        try:
            with self.path.open("rb") as f:
                f.seek(self._data_start + e.start)
                raw = np.fromfile(f, dtype=np.uint8, count=e.end - e.start)
        except OSError as exc:
            raise CheckpointError(f"cannot read {name} from {self.path}: {exc.strerror}") from exc
        if raw.size != e.end - e.start:
            raise CheckpointError(f"{self.path} ends inside tensor {name} (truncated download?)")
        if e.dtype == "BF16":  # the upper half of a float32
            out = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif e.dtype in ("F32", "F16", "F64"):
            out = raw.view({"F32": np.float32, "F16": np.float16, "F64": np.float64}[e.dtype]).astype(np.float32)
        else:
            raise CheckpointError(f"tensor {name} in {self.path} is {e.dtype}; only float weights can be converted")
        return out.reshape(e.shape)


def _entry(path: Path, name: str, info: Any, data_size: int) -> TensorEntry:
    bad = f"corrupt safetensors header in {path}: tensor {name!r}"
    try:
        dtype, shape, (start, end) = str(info["dtype"]), tuple(int(d) for d in info["shape"]), info["data_offsets"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{bad} is malformed") from exc
    if dtype not in _ITEM_SIZE:
        raise CheckpointError(f"{bad} has unknown type {dtype}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if not (0 <= start <= end <= data_size) or end - start != count * _ITEM_SIZE[dtype]:
        raise CheckpointError(f"{bad} points outside the file or has the wrong size (truncated download?)")
    return TensorEntry(name, dtype, shape, int(start), int(end))


class TensorSource:
    """Every tensor of a checkpoint folder by name, across shards, loaded one at a time."""

    def __init__(self, files: list[SafetensorsFile] | None = None, pickled: dict[str, Any] | None = None) -> None:
        self._where: dict[str, SafetensorsFile] = {}
        for f in files or []:
            for name in f.names():
                self._where[name] = f
        self._pickled = pickled or {}
        self.file_bytes = sum(f.path.stat().st_size for f in files or [])

    def names(self) -> list[str]:
        return list(self._where) + list(self._pickled)

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self._where:
            return self._where[name].entries[name].shape
        return tuple(self._pickled[name].shape)

    def load(self, name: str) -> np.ndarray:
        if name in self._where:
            return self._where[name].load(name)
        return self._pickled[name].float().numpy()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def load_pickled(paths: list[Path]) -> dict[str, Any]:
    """State dicts from .bin/.pt files with torch's ``weights_only`` loader (no code runs)
    and memory-mapped where torch can. Only called behind --trust-pickle."""
    try:
        import torch
    except ImportError as exc:
        raise CheckpointError("reading .bin/.pt checkpoints needs torch", hint="pip install torch") from exc
    tensors: dict[str, Any] = {}
    for path in paths:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises many types for a bad pickle
            raise CheckpointError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
        tensors.update({k: v for k, v in state.items() if hasattr(v, "shape")})
    return tensors
