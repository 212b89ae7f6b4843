"""The one GGUF reader: a file checked in Python before llama.cpp's C++ parser sees it.

ggml's GGUF reader has had header overflows (oversized counts and string
lengths, tensors past the end of the file). This walk reads the header with
every length bounded by what is left of the file, so a hostile file costs at
most one pass over its header and never a large allocation: magic, version,
counts, key-values (strings, arrays, nesting), tensor names, dimensions, types,
offsets, alignment, overlaps. It does not judge the weights themselves.

Everything askgpt reads from a GGUF goes through this module: the header walk
(`check_gguf`: key-values, tensor table), a converter's summary (`read_summary`),
a string array (`string_array`: the vocabulary) and, for the one reader of
weights, a tensor's data (`read_tensor`, through the `gguf` package once the walk
has passed the file).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askgpt.runtime.errors import InputNotFoundError, ModelLoadError

MAGIC = b"GGUF"

_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType -> bytes
_STRING, _ARRAY = 8, 9
_UINT32 = 4
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_NAME = 64  # GGML_MAX_NAME, including the terminating NUL
_MAX_KEY = 1 << 16
_MAX_DEPTH = 2  # arrays of arrays at most
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
SHOWN_STRINGS = frozenset({"general.architecture", "general.name", "general.basename", "general.size_label",
                           "tokenizer.ggml.model", "clip.projector_type"})
_MAX_SHOWN = 4096  # longer values of those keys are skipped, not refused
# ggml tensor type -> (values per block, bytes per block): the `gguf` package's
# GGML_QUANT_SIZES, copied because importing gguf costs 50-70 ms on every ask
# (numpy, yaml); tests/test_safety.py checks the copy against gguf's table.
QUANT_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}
# ggml tensor type -> its name (the gguf package's GGMLQuantizationType), for the same reason.
TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
    11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
    19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
    27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4",
    41: "Q1_0",
}


class GgufFormatError(ModelLoadError):
    """A file that is not a well-formed GGUF (exit 4)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: the row length first
    type: str  # ggml type name: F32, F16, Q4_K ...
    n_elements: int


@dataclass(frozen=True)
class GgufHeader:
    version: int
    n_tensors: int
    n_kv: int
    alignment: int
    data_offset: int
    data_bytes: int  # the tensors' bytes, by their types and shapes
    architecture: str = ""
    # The header's top-level uint32 values (layer and head counts, sizes), by key.
    numbers: dict[str, int] = field(default_factory=dict)
    # A few strings `askgpt models info` shows (general.name, tokenizer.ggml.model, ...).
    strings: dict[str, str] = field(default_factory=dict)
    # Element counts of top-level arrays (tokenizer.ggml.tokens: the vocabulary size).
    array_lengths: dict[str, int] = field(default_factory=dict)
    n_params: int = 0  # elements of all tensors
    tensor_types: dict[int, int] = field(default_factory=dict)  # ggml type -> tensors of that type
    tensors: tuple[TensorInfo, ...] = ()
    # Where each top-level array's value starts (its element type), for `string_array`.
    array_offsets: dict[str, int] = field(default_factory=dict)

    def number(self, name: str) -> int:
        """``{architecture}.{name}``, 0 when absent."""
        return self.numbers.get(f"{self.architecture}.{name}", 0)

    def kv_bytes_per_token(self, element_bytes: float) -> int:
        """The attention cache one position needs: K and V rows of every layer. 0 when the
        header lacks the sizes (llama.cpp will say what is wrong with it)."""
        n_head = self.number("attention.head_count")
        if not n_head:
            return 0
        n_head_kv = self.number("attention.head_count_kv") or n_head
        k_width = self.number("attention.key_length") or self.number("embedding_length") // n_head
        v_width = self.number("attention.value_length") or k_width
        return int(self.number("block_count") * n_head_kv * (k_width + v_width) * element_bytes)


class _Reader:
    """Bounded reads over the memory-mapped file (pages are read only as the walk needs them)."""

    def __init__(self, buf: mmap.mmap | bytes, size: int, name: str) -> None:
        self.buf, self.size, self.name = buf, size, name
        self.pos = 0

    def fail(self, what: str) -> GgufFormatError:
        return GgufFormatError(f"{self.name} is not a valid GGUF file: {what} (at byte {self.pos:,})",
                               hint="the file may be truncated or damaged; download or convert it again")

    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.left():
            raise self.fail(f"{what} runs past the end of the file")
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        return bytes(data)

    def skip(self, n: int, what: str) -> None:
        if n < 0 or n > self.left():
            raise self.fail(f"{what} runs past the end of the file")
        self.pos += n

    def u32(self, what: str) -> int:
        if self.left() < 4:
            raise self.fail(f"{what} runs past the end of the file")
        self.pos += 4
        return int(_U32.unpack_from(self.buf, self.pos - 4)[0])

    def u64(self, what: str) -> int:
        if self.left() < 8:
            raise self.fail(f"{what} runs past the end of the file")
        self.pos += 8
        return int(_U64.unpack_from(self.buf, self.pos - 8)[0])

    def string(self, what: str, limit: int) -> str:
        n = self.u64(f"{what} length")
        if n > limit:
            raise self.fail(f"{what} is {n:,} bytes long")
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def skip_string(self, what: str) -> None:
        self.skip(self.u64(f"{what} length"), what)


def _value(r: _Reader, kind: int, what: str, depth: int = 0) -> int | None:
    """Skip one value of ``kind``; return it when it is a uint32 (for general.alignment)."""
    if kind in _SCALAR:
        raw = r.take(_SCALAR[kind], what)
        if kind != _UINT32:
            return None
        value = int(struct.unpack("<I", raw)[0])
        if value >= 1 << 31 and depth == 0:  # llama.cpp reads counts and sizes into int32
            raise r.fail(f"{what} is out of range ({value:,})")
        return value
    if kind == _STRING:
        r.skip_string(what)
        return None
    if kind != _ARRAY:
        raise r.fail(f"{what} has unknown type {kind}")
    if depth >= _MAX_DEPTH:
        raise r.fail(f"{what} nests arrays too deeply")
    elem = r.u32(f"{what} element type")
    count = r.u64(f"{what} length")
    if elem in _SCALAR:
        r.skip(count * _SCALAR[elem], what)
    elif elem in (_STRING, _ARRAY):
        if count > r.left() // 8:  # every element needs at least 8 bytes: no loop of 2^60 turns
            raise r.fail(f"{what} claims {count:,} elements")
        if elem == _STRING:  # vocabularies: 100k+ strings, so a tight loop
            buf, pos, end, unpack = r.buf, r.pos, r.size, _U64.unpack_from
            for _ in range(count):
                if end - pos < 8:
                    raise r.fail(f"{what} runs past the end of the file")
                pos += 8 + unpack(buf, pos)[0]
                if pos > end:
                    raise r.fail(f"{what} runs past the end of the file")
            r.pos = pos
        else:
            for _ in range(count):
                _value(r, elem, what, depth + 1)
    else:
        raise r.fail(f"{what} has unknown element type {elem}")
    return None


def check_gguf(path: Path) -> GgufHeader:
    """Raises `GgufFormatError` (exit 4), or `ModelLoadError` when the file cannot be read."""
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            buf: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror}") from exc
    try:
        return _walk(path, _Reader(buf, size, path.name))
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _walk(path: Path, r: _Reader) -> GgufHeader:
    size = r.size
    if r.left() < 4 or r.take(4, "magic") != MAGIC:
        raise GgufFormatError(f"{path} is not a GGUF model file",
                              hint="askgpt runs llama.cpp GGUF models; convert the checkpoint to GGUF first")
    version = r.u32("version")
    if version not in (2, 3):
        raise r.fail(f"version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = r.u64("tensor count"), r.u64("key-value count")
    if n_kv > r.left() // 13 or n_tensors > r.left() // 24:  # the smallest possible entries
        raise r.fail(f"it claims {n_kv:,} key-values and {n_tensors:,} tensors")
    alignment = 32
    keys: set[str] = set()
    architecture = ""
    numbers: dict[str, int] = {}
    strings: dict[str, str] = {}
    array_lengths: dict[str, int] = {}
    array_offsets: dict[str, int] = {}
    for i in range(n_kv):
        key = r.string(f"key {i}", _MAX_KEY)
        if not key or key in keys:
            raise r.fail(f"key {key!r} is empty or repeated")
        keys.add(key)
        kind = r.u32(f"type of {key}")
        if key in SHOWN_STRINGS and kind == _STRING and r.left() >= 8 \
                and _U64.unpack_from(r.buf, r.pos)[0] <= _MAX_SHOWN:
            # Shown, not parsed: bad UTF-8 is replaced rather than refused.
            strings[key] = r.take(r.u64(f"{key} length"), key).decode("utf-8", errors="replace")
            if key == "general.architecture":
                architecture = strings[key]
            continue
        if key == "tokenizer.chat_template":
            strings[key] = "(present)"
        if kind == _ARRAY and r.left() >= 12:
            array_lengths[key] = int(_U64.unpack_from(r.buf, r.pos + 4)[0])  # peeked; _value checks it
            array_offsets[key] = r.pos
        value = _value(r, kind, key)
        if value is not None:
            numbers[key] = value
        if key == "general.alignment":
            if value is None or value == 0 or value & (value - 1):
                raise r.fail("general.alignment is not a power of two")
            alignment = value
    tensors: list[tuple[int, int, str]] = []
    infos: list[TensorInfo] = []
    n_params = 0
    tensor_types: dict[int, int] = {}
    names: set[str] = set()
    for i in range(n_tensors):
        name = r.string(f"tensor {i} name", _MAX_NAME - 1)
        if name in names:
            raise r.fail(f"tensor {name!r} is repeated")
        names.add(name)
        n_dims = r.u32(f"{name} dimension count")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise r.fail(f"tensor {name} has {n_dims} dimensions")
        dims = [r.u64(f"{name} dimension") for _ in range(n_dims)]
        count = 1
        for d in dims:
            count *= d
        if count >= 1 << 62:
            raise r.fail(f"tensor {name} has {count:,} elements")
        kind = r.u32(f"{name} type")
        if kind not in QUANT_SIZES:
            raise r.fail(f"tensor {name} has unknown type {kind}")
        block, block_bytes = QUANT_SIZES[kind]
        if dims[0] % block:
            raise r.fail(f"tensor {name}'s rows ({dims[0]}) are not whole blocks of {block}")
        offset = r.u64(f"{name} offset")
        if offset % alignment:
            raise r.fail(f"tensor {name} is not aligned to {alignment} bytes")
        tensors.append((offset, count // block * block_bytes, name))
        infos.append(TensorInfo(name, tuple(dims), TYPE_NAMES.get(kind, f"type {kind}"), count))
        n_params += count
        tensor_types[kind] = tensor_types.get(kind, 0) + 1
    data_offset = -(-r.pos // alignment) * alignment
    data_room = size - data_offset
    end = 0
    for offset, nbytes, name in sorted(tensors):
        if offset < end:
            raise r.fail(f"tensor {name} overlaps the tensor before it")
        end = offset + nbytes
        if end > data_room:
            raise GgufFormatError(f"{path.name} is not a valid GGUF file: tensor {name} runs past the end "
                                  f"of the file (truncated?)", hint="download or convert it again")
    return GgufHeader(version, n_tensors, n_kv, alignment, data_offset, sum(t[1] for t in tensors),
                      architecture, numbers, strings, array_lengths, n_params, tensor_types, tuple(infos),
                      array_offsets)


# --- what the converter and the vision projector read, built on the walk ----------------------------------

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
    if not path.is_file():
        raise InputNotFoundError(f"model file not found: {path}")
    header = check_gguf(path)
    return GgufSummary(path, path.stat().st_size, header.architecture or "unknown", header.tensors)


def string_array(path: Path, key: str) -> list[bytes]:
    """The strings of the top-level array ``key`` (e.g. tokenizer.ggml.tokens); [] when the
    file has no such array of strings. The walk has bounded every length read here."""
    header = check_gguf(path)
    start = header.array_offsets.get(key)
    if start is None:
        return []
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if _U32.unpack_from(buf, start)[0] != _STRING:
            return []
        count, pos = _U64.unpack_from(buf, start + 4)[0], start + 12
        out = []
        for _ in range(count):
            n = _U64.unpack_from(buf, pos)[0]
            out.append(bytes(buf[pos + 8:pos + 8 + n]))
            pos += 8 + n
        return out


@dataclass(frozen=True, eq=False)
class TensorData:
    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType, as gguf.quants.dequantize takes it
    data: Any  # numpy array of the stored blocks (memory-mapped)


def read_tensor(path: Path, name: str) -> TensorData | None:
    """One tensor's stored data (None when the file has no tensor ``name``), read with the
    `gguf` package after the bounded walk has passed the file (GGUFReader trusts the counts
    and lengths it reads)."""
    import gguf

    check_gguf(path)
    reader = gguf.GGUFReader(str(path))
    for tensor in reader.tensors:
        if tensor.name == name:
            return TensorData(tensor.name, tensor.tensor_type, tensor.data)
    return None
