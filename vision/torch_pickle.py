"""Read a legacy (non-zip) ``torch.save`` state dict without torch, and without
letting the file run code.

The legacy layout is several pickles back to back, then raw bytes:
magic number, protocol version, a sys-info dict, the state dict itself (each
tensor a ``torch._utils._rebuild_tensor_v2`` call over a persistent-id
storage), the list of storage keys, then for each key an int64 element count
and the storage's little-endian data. A pickle can name any global, so the
unpickler here resolves exactly the names a state dict needs and refuses
every other one: a malicious file fails to load instead of executing.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from askgpt.runtime.errors import AskgptError

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class WeightsError(AskgptError):
    """A weights file is not a state dict askgpt can read safely."""


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: Any
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True)
class _StorageType:
    dtype: Any


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                       *_ignored: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise WeightsError(f"the weights file refers to {module}.{name}, which a state dict never needs; "
                           "refusing to load it")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise WeightsError("the weights file has a storage reference askgpt does not understand")
        return _Storage(str(pid[2]), pid[1].dtype, int(pid[4]))


def _load(fh: IO[bytes]) -> Any:
    return _RestrictedUnpickler(fh).load()


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Tensors by name, as numpy arrays. Raises `WeightsError` for anything else."""
    try:
        with path.open("rb") as fh:
            return _read(fh, path)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error, OSError) as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc


def _read(fh: IO[bytes], path: Path) -> dict[str, np.ndarray]:
    if _load(fh) != MAGIC:
        raise WeightsError(f"{path} is not a legacy torch weights file")
    if _load(fh) != PROTOCOL:
        raise WeightsError(f"{path} uses an unknown torch serialisation protocol")
    info = _load(fh)
    if not isinstance(info, dict) or not info.get("little_endian", False):
        raise WeightsError(f"{path} was written on a big-endian machine")
    state = _load(fh)
    keys = _load(fh)
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise WeightsError(f"{path} does not hold a state dict")
    refs = {name: ref for name, ref in state.items() if isinstance(ref, _TensorRef)}
    by_key = {ref.storage.key: ref.storage for ref in refs.values()}
    data: dict[str, np.ndarray] = {}
    for key in keys:
        storage = by_key.get(str(key))
        (count,) = struct.unpack("<q", fh.read(8))
        dtype = np.dtype(storage.dtype if storage else np.uint8)
        raw = fh.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise WeightsError(f"{path} is truncated")
        data[str(key)] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    tensors: dict[str, np.ndarray] = {}
    for name, ref in refs.items():
        flat = data[ref.storage.key]
        itemsize = flat.dtype.itemsize
        if 0 in ref.size:
            tensors[name] = np.zeros(ref.size, dtype=flat.dtype)
            continue
        # The last element the view reaches must lie inside the storage (a zip length
        # mismatch raises ValueError, reported as a bad file).
        last = ref.offset + sum((s - 1) * st for s, st in zip(ref.size, ref.stride, strict=True))
        if any(s < 0 for s in ref.size) or any(st < 0 for st in ref.stride) or last >= len(flat):
            raise WeightsError(f"{path}: tensor {name} points outside its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset:], shape=ref.size, strides=tuple(st * itemsize for st in ref.stride))
        tensors[name] = np.array(view)  # a copy: the storage buffer is not kept alive
    return tensors
