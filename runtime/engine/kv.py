"""The attention (KV) cache's storage types: the one table of their names (as --kv-type and
config.toml spell them), llama.cpp's ggml type ids, and their size per stored value.
The settings check, the memory check and the llama.cpp engine all read it from here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class KvTypeSpec:
    ggml_type: int  # llama.cpp's ggml_type value (type_k / type_v)
    element_bytes: float  # bytes per cached value
    # llama.cpp stores a quantized V cache only with flash attention.
    flash_attention: bool


class KvType(Enum):
    """A storage type of the attention cache; the value is its user-visible name."""

    F16 = "f16"  # llama.cpp's default
    Q8_0 = "q8_0"  # about half the memory for long windows
    F32 = "f32"  # twice f16, for exact comparisons (parity tests)

    @property
    def spec(self) -> KvTypeSpec:
        return _SPECS[self]

    @property
    def ggml_type(self) -> int:
        return self.spec.ggml_type

    @property
    def element_bytes(self) -> float:
        return self.spec.element_bytes

    @property
    def flash_attention(self) -> bool:
        return self.spec.flash_attention


_SPECS: dict[KvType, KvTypeSpec] = {
    KvType.F16: KvTypeSpec(ggml_type=1, element_bytes=2.0, flash_attention=False),
    KvType.Q8_0: KvTypeSpec(ggml_type=8, element_bytes=34 / 32, flash_attention=True),  # 32 values in 34 bytes
    KvType.F32: KvTypeSpec(ggml_type=0, element_bytes=4.0, flash_attention=False),
}

# The names in the order users see them (--kv-type's "must be one of f16|q8_0|f32").
KV_CACHE_TYPES: tuple[str, ...] = tuple(kind.value for kind in KvType)
