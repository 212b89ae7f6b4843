"""A tiny random mmproj GGUF (a CLIP-style vision tower with LLaVA's `mlp` projector),
written with gguf-py the way llama.cpp's clip.cpp reads it (see the notes in
../shared/reference/llama-cpp-python-notes.md, section 3). Sizes are small; the
projector's output width is the language model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_mmproj(path: Path, n_embd_llm: int, *, image_size: int = 32, patch: int = 8, width: int = 64,
                 heads: int = 4, ffn: int = 128, layers: int = 1, seed: int = 0, projector: str = "mlp") -> Path:
    """``projector``: "mlp" (LLaVA: a CLIP tower with a class token, linear-GELU-linear) or
    "gemma3" (a SigLIP-style tower without one, 2x2 average pooling, one matrix; llama.cpp
    reads its images with non-causal attention)."""
    import gguf

    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    n_patches = (image_size // patch) ** 2
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_string("clip.projector_type", projector)
    if projector == "gemma3":
        writer.add_uint32("clip.vision.projector.scale_factor", 2)
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", image_size)
    writer.add_uint32("clip.vision.patch_size", patch)
    writer.add_uint32("clip.vision.embedding_length", width)
    writer.add_uint32("clip.vision.feed_forward_length", ffn)
    writer.add_uint32("clip.vision.block_count", layers)
    writer.add_uint32("clip.vision.projection_dim", n_embd_llm)
    writer.add_uint32("clip.vision.attention.head_count", heads)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    writer.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])
    writer.add_array("clip.vision.feature_layer", [layers])
    writer.add_tensor("v.patch_embd.weight", w(width, 3, patch, patch).astype(np.float16))
    if projector == "mlp":
        writer.add_tensor("v.class_embd", w(width))
    writer.add_tensor("v.position_embd.weight", w(n_patches + (projector == "mlp"), width))
    for name in ("v.pre_ln", "v.post_ln") if projector == "mlp" else ("v.post_ln",):
        writer.add_tensor(f"{name}.weight", np.ones(width, np.float32))
        writer.add_tensor(f"{name}.bias", np.zeros(width, np.float32))
    for i in range(layers):
        block = f"v.blk.{i}"
        for ln in ("ln1", "ln2"):
            writer.add_tensor(f"{block}.{ln}.weight", np.ones(width, np.float32))
            writer.add_tensor(f"{block}.{ln}.bias", np.zeros(width, np.float32))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"{block}.{proj}.weight", w(width, width))
            writer.add_tensor(f"{block}.{proj}.bias", w(width))
        writer.add_tensor(f"{block}.ffn_up.weight", w(ffn, width))
        writer.add_tensor(f"{block}.ffn_up.bias", w(ffn))
        writer.add_tensor(f"{block}.ffn_down.weight", w(width, ffn))
        writer.add_tensor(f"{block}.ffn_down.bias", w(width))
    if projector == "gemma3":
        writer.add_tensor("mm.soft_emb_norm.weight", np.ones(width, np.float32))
        writer.add_tensor("mm.input_projection.weight", w(width, n_embd_llm))  # (n_embd_vision, n_llm)
    else:
        writer.add_tensor("mm.0.weight", w(n_embd_llm, width))
        writer.add_tensor("mm.0.bias", w(n_embd_llm))
        writer.add_tensor("mm.2.weight", w(n_embd_llm, n_embd_llm))
        writer.add_tensor("mm.2.bias", w(n_embd_llm))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
