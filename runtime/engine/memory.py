"""Will a model fit? Weights plus attention cache plus working buffers, against the
memory this machine has free, checked before llama.cpp allocates anything: a load
that does not fit is refused with a way out, instead of the kernel killing askgpt
(or the machine swapping to a halt) halfway through."""

from __future__ import annotations

from dataclasses import dataclass

from askgpt.runtime.engine.kv import KvType
from askgpt.runtime.errors import ModelLoadError
from askgpt.runtime.models.gguf import GgufHeader

# llama.cpp allocates the attention cache for the context rounded up to a multiple of 256
# cells (measured: --ctx 1000 gets 1,024 cells; tests/test_performance.py reads its log).
CACHE_CELL_PAD = 256
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


def kv_cache_bytes(header: GgufHeader, *, n_ctx: int, kv_type: str) -> int:
    """The attention cache llama.cpp allocates for ``n_ctx`` positions (0: the model's own
    context length): K and V rows of every layer, each head_count_kv heads of the GGUF's
    attention.key_length / value_length values (not n_embd / n_head, which differs for
    Gemma, for instance). Two cases get more than llama.cpp allocates, which errs on the
    safe side for the memory check: a head_count_kv given per layer (an array, counted
    as head_count) and sliding-window layers (Gemma 2/3), whose cache llama.cpp keeps
    only as long as the window."""
    n_ctx = n_ctx or header.number("context_length")
    cells = -(-n_ctx // CACHE_CELL_PAD) * CACHE_CELL_PAD
    return header.kv_bytes_per_token(KvType(kv_type).element_bytes) * cells


def plan(header: GgufHeader, *, n_ctx: int, kv_type: str) -> MemoryPlan:
    return MemoryPlan(header.data_bytes, kv_cache_bytes(header, n_ctx=n_ctx, kv_type=kv_type), WORKING_BYTES)


def check_fits(header: GgufHeader, name: str, *, n_ctx: int, kv_type: str, available: int | None) -> MemoryPlan:
    """Raises `InsufficientMemoryError` when the load would need more than ``available``
    bytes (None: unknown, so no check), naming a context size that would fit."""
    need = plan(header, n_ctx=n_ctx, kv_type=kv_type)
    if available is None or need.total <= available:
        return need
    mib = 2**20
    room = available - need.weights - need.working
    per_token = header.kv_bytes_per_token(KvType(kv_type).element_bytes)
    fits = (room // per_token) // 256 * 256 if per_token and room > 0 else 0
    if fits >= 256:
        hint = f"use --ctx {fits} or less"
        if KvType(kv_type) is not KvType.Q8_0:
            hint += ", or --kv-type q8_0 (half the cache memory)"
    else:
        hint = "use a smaller or more strongly quantized model (askgpt convert quantize), or free memory"
    raise InsufficientMemoryError(
        f"{name} needs about {need.total / mib:,.0f} MiB (weights {need.weights / mib:,.0f}, attention cache "
        f"{need.kv_cache / mib:,.0f} for {n_ctx or header.number('context_length'):,} tokens) but "
        f"{available / mib:,.0f} MiB is free",
        hint=hint,
    )
