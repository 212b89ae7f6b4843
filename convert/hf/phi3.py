"""``Phi3ForCausalLM`` -> GGUF architecture "phi3": partial rotary, a sliding window and
LongRoPE's long/short factors."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from askgpt.convert.hf.base import ModelConverter, PlannedTensor
from askgpt.convert.hf.config import HfConfig, common_config, rope_parameters


@dataclass(frozen=True)
class Phi3Config(HfConfig):
    partial_rotary: float
    sliding_window: int
    original_ctx: int


class Phi3Converter(ModelConverter[Phi3Config]):
    hf_architecture = "Phi3ForCausalLM"
    gguf_arch_name = "PHI3"

    @classmethod
    def read_config(cls, raw: dict[str, Any]) -> Phi3Config:
        common = common_config(raw, cls.hf_architecture)
        rope = rope_parameters(raw)
        return Phi3Config(
            **asdict(common),
            partial_rotary=float(raw.get("partial_rotary_factor") or rope.get("partial_rotary_factor") or 1.0),
            sliding_window=int(raw.get("sliding_window") or 0),
            original_ctx=int(raw.get("original_max_position_embeddings")
                             or rope.get("original_max_position_embeddings") or common.n_ctx_train))

    def extra_tensors(self) -> list[PlannedTensor]:
        planned = []
        if self.cfg.rope_scaling.get("long_factor"):
            for key, tname in (("long_factor", "rope_factors_long.weight"),
                               ("short_factor", "rope_factors_short.weight")):
                f = np.array(self.cfg.rope_scaling[key], dtype=np.float32)
                planned.append(PlannedTensor(tname, f.shape, made=f))
        return planned

    def add_metadata(self, w: Any) -> None:
        cfg = self.cfg
        w.add_rope_dimension_count(int(cfg.partial_rotary * cfg.n_embd) // cfg.n_head)
        w.add_rope_scaling_orig_ctx_len(cfg.original_ctx)
        w.add_sliding_window(cfg.sliding_window)
        if cfg.rope_scaling.get("long_factor"):
            scale = cfg.n_ctx_train / cfg.original_ctx
            attn = math.sqrt(1 + math.log(scale) / math.log(cfg.original_ctx)) if scale > 1 else 1.0
            w.add_rope_scaling_attn_factors(attn)
