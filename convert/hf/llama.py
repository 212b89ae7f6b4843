"""``LlamaForCausalLM`` (SmolLM2, TinyLlama, Llama 3.x) -> GGUF architecture "llama"."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from askgpt.convert.hf.base import ModelConverter, PlannedTensor, Transform
from askgpt.convert.hf.config import CheckpointUsageError, HfConfig, common_config


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores each head's q/k rows as two halves (rotate_half); llama.cpp's rotary kernel
    for Llama pairs neighbouring rows. Interleave the halves: (n_head * head_dim, n_in)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg: HfConfig) -> np.ndarray:
    """Per-frequency divisors of Llama 3.1+'s "llama3" rope scaling: high frequencies kept,
    low ones divided by ``factor``, a smooth ramp between."""
    r = cfg.rope_scaling
    factor, low, high = float(r["factor"]), float(r.get("low_freq_factor", 1.0)), float(r.get("high_freq_factor", 4.0))
    old_ctx = float(r.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


class LlamaConverter(ModelConverter[HfConfig]):
    hf_architecture = "LlamaForCausalLM"
    gguf_arch_name = "LLAMA"

    @classmethod
    def read_config(cls, raw: dict[str, Any]) -> HfConfig:
        return common_config(raw, cls.hf_architecture)

    def transform(self, source_name: str) -> Transform | None:
        if not re.search(r"\.(q|k)_proj\.weight$", source_name):
            return None
        heads = self.cfg.n_head if ".q_proj" in source_name else self.cfg.n_head_kv
        return lambda w: permute_rows(w, heads)  # looked up when called: tests swap it out

    def extra_tensors(self) -> list[PlannedTensor]:
        if self.cfg.rope_kind != "llama3":
            return []
        factors = llama3_rope_factors(self.cfg)
        return [PlannedTensor("rope_freqs.weight", factors.shape, made=factors)]

    def add_metadata(self, w: Any) -> None:
        import gguf

        cfg = self.cfg
        w.add_rope_dimension_count(cfg.head_dim)
        if cfg.head_dim != cfg.n_embd // cfg.n_head:
            w.add_key_length(cfg.head_dim)
            w.add_value_length(cfg.head_dim)
        kind = cfg.rope_kind
        if kind == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(cfg.rope_scaling["factor"]))
        elif kind not in (None, "default", "llama3"):
            raise CheckpointUsageError(f"rope scaling {kind!r} is not supported; supported: linear, llama3")
