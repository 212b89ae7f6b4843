"""Will a model fit? Weights plus attention cache plus working buffers, against the
memory this machine has free, checked before llama.cpp allocates anything: a load
that does not fit is refused with a way out, instead of the kernel killing askgpt
(or the machine swapping to a halt) halfway through."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ModelLoadError
from .gguf_check import GgufHeader

KV_ELEMENT_BYTES = {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32}  # q8_0: 32 values in 34 bytes
# llama.cpp's compute and output buffers, measured on the built-in model at 4k
# context (peak RSS minus weights minus cache: 80 MB), with room for larger vocabularies.
WORKING_BYTES = 160 * 2**20


class InsufficientMemoryError(ModelLoadError):
    """The model and its cache would not fit in the free memory (exit 4)."""


@dataclass(frozen=True)
class MemoryPlan:
    weights: int
    kv_cache: int
    working: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.working


def plan(header: GgufHeader, *, n_ctx: int, kv_type: str) -> MemoryPlan:
    n_ctx = n_ctx or header.number("context_length")
    per_token = header.kv_bytes_per_token(KV_ELEMENT_BYTES[kv_type])
    return MemoryPlan(header.data_bytes, per_token * n_ctx, WORKING_BYTES)


def check_fits(header: GgufHeader, name: str, *, n_ctx: int, kv_type: str, available: int | None) -> MemoryPlan:
    """Raises `InsufficientMemoryError` when the load would need more than ``available``
    bytes (None: unknown, so no check), naming a context size that would fit."""
    need = plan(header, n_ctx=n_ctx, kv_type=kv_type)
    if available is None or need.total <= available:
        return need
    mib = 2**20
    room = available - need.weights - need.working
    per_token = header.kv_bytes_per_token(KV_ELEMENT_BYTES[kv_type])
    fits = (room // per_token) // 256 * 256 if per_token and room > 0 else 0
    if fits >= 256:
        hint = f"use --ctx {fits} or less"
        if kv_type != "q8_0":
            hint += ", or --kv-type q8_0 (half the cache memory)"
    else:
        hint = "use a smaller or more strongly quantized model (askgpt convert quantize), or free memory"
    raise InsufficientMemoryError(
        f"{name} needs about {need.total / mib:,.0f} MiB (weights {need.weights / mib:,.0f}, attention cache "
        f"{need.kv_cache / mib:,.0f} for {n_ctx or header.number('context_length'):,} tokens) but "
        f"{available / mib:,.0f} MiB is free",
        hint=hint,
    )
