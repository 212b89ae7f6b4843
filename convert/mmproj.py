"""`askgpt convert mmproj`: askgpt's CLIP image tower and its fitted projector as an mmproj
GGUF that llama.cpp itself loads (llama-server, llama-mtmd-cli, and askgpt's --mmproj).

The tower is written as llama.cpp's CLIP graph reads it (tools/mtmd/models/llava.cpp):
every block, the pre- and post-norms, and ``feature_layer = [n_layer]`` so the graph's
output is open_clip's ``tokens`` (the last block after ``ln_post``). Two details of that
graph shape the file:

- It appends the class token after the patches but still numbers positions from 0,
  and takes output rows 1..n. Position embeddings are therefore stored as
  ``[pe[1:], pe[0]]``, which gives every patch its own position; the outputs are then
  open_clip's patches 2..n followed by the class token (patch 1 is not sent).
- Its projectors are not a single matrix: ``mlp`` is linear, GELU, linear. askgpt's
  projector is linear (patch token -> the tower's ``proj`` -> a scale -> the ridge map
  fitted from CLIP concept embeddings to the model's token embeddings, as in
  vision/projector.py), so it is written as ``mm.0 = s * A`` with a bias of ``+10``, which
  keeps GELU in its linear range (GELU(x) = x to float precision for x in 7..13), and
  ``mm.2 = I / s`` with a bias of ``-10 / s``.

The result is approximate where askgpt's own path is not linear: askgpt scales each
pooled feature to unit norm and each row to the embeddings' mean norm; here one scale,
measured on the tower's patch tokens, stands in for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.convert.clip import (
    ClipSetupConfig,
    check_source,
    concept_encoder,
    create_model,
    embed_concepts,
    import_open_clip,
    preprocess_of,
)
from askgpt.runtime.errors import UsageError
from askgpt.runtime.files import atomic_write_with
from askgpt.vision.clip import concept_names

GELU_SHIFT = 10.0  # mm.0's added bias: GELU is the identity to float precision around it
GELU_RANGE = 3.0  # |s * (A x + a)| is scaled to stay within this on the probe images


@dataclass(frozen=True)
class MmprojReport:
    path: Path
    model: str
    n_patches: int  # image tokens per image the language model gets
    projection_dim: int
    seconds: float


def _wb(prefix: str, module: Any) -> dict[str, np.ndarray]:
    """A layer's weight and bias (a LayerNorm's or a Linear's, in nn.Linear's (out, in) layout)."""
    return {f"{prefix}.weight": _np(module.weight), f"{prefix}.bias": _np(module.bias)}


def _np(tensor: Any) -> np.ndarray:
    return tensor.detach().float().numpy().copy()


def tower_tensors(visual: Any) -> dict[str, np.ndarray]:
    """An open_clip VisionTransformer's weights under llama.cpp's CLIP tensor names."""
    width = visual.conv1.weight.shape[0]
    pe = _np(visual.positional_embedding)
    tensors = {
        "v.patch_embd.weight": _np(visual.conv1.weight).astype(np.float16),  # llama.cpp's conv wants F16
        "v.class_embd": _np(visual.class_embedding),
        "v.position_embd.weight": np.concatenate([pe[1:], pe[:1]]),  # see the module docstring
        **_wb("v.pre_ln", visual.ln_pre), **_wb("v.post_ln", visual.ln_post),
    }
    for i, block in enumerate(visual.transformer.resblocks):
        q, k, v = np.split(_np(block.attn.in_proj_weight), 3)
        qb, kb, vb = np.split(_np(block.attn.in_proj_bias), 3)
        p = f"v.blk.{i}"
        tensors.update({
            **_wb(f"{p}.ln1", block.ln_1), **_wb(f"{p}.ln2", block.ln_2),
            f"{p}.attn_q.weight": q, f"{p}.attn_q.bias": qb, f"{p}.attn_k.weight": k, f"{p}.attn_k.bias": kb,
            f"{p}.attn_v.weight": v, f"{p}.attn_v.bias": vb,
            **_wb(f"{p}.attn_out", block.attn.out_proj), **_wb(f"{p}.ffn_up", block.mlp.c_fc),
            **_wb(f"{p}.ffn_down", block.mlp.c_proj),
        })
    assert tensors["v.class_embd"].shape == (width,)
    return tensors


def linear_as_mlp(a: np.ndarray, bias: np.ndarray, probe: np.ndarray) -> dict[str, np.ndarray]:
    """``x -> x @ a + bias`` as llama.cpp's ``mlp`` projector (linear, GELU, linear), with the
    scale ``s`` that keeps ``s * (probe @ a + bias)`` within `GELU_RANGE`."""
    peak = float(np.abs(probe @ a + bias).max()) or 1.0
    s = GELU_RANGE / peak
    n_out = a.shape[1]
    return {
        "mm.0.weight": (s * a.T).astype(np.float32), "mm.0.bias": (s * bias + GELU_SHIFT).astype(np.float32),
        "mm.2.weight": (np.eye(n_out) / s).astype(np.float32),
        "mm.2.bias": np.full(n_out, -GELU_SHIFT / s, np.float32),
    }


def export_mmproj(source: ClipSetupConfig, model_gguf: Path, tokenize: Callable[[str], list[int]], out: Path,
                  progress: Callable[[str, int, int], None] | None = None) -> MmprojReport:
    from askgpt.vision.projector import fit_ridge, name_embeddings

    def step(stage: str, done: int, total: int = 1) -> None:
        if progress is not None:
            progress(stage, done, total)

    started = time.perf_counter()
    check_source(source)
    torch, open_clip = import_open_clip()
    step(f"loading {source.model}", 0)
    model_name, model = create_model(open_clip, source)
    visual = model.visual
    if not all(hasattr(visual, a) for a in ("conv1", "class_embedding", "positional_embedding", "proj", "ln_pre")) \
            or visual.proj is None:
        raise UsageError(f"{model_name}'s image tower is not a CLIP ViT with a class token and a projection; "
                         "llama.cpp's CLIP graph cannot run it")
    step(f"loading {source.model}", 1)

    names = concept_names()
    concepts = embed_concepts(concept_encoder(torch, open_clip, model), open_clip.get_tokenizer(model_name),
                              names, step)
    step("fitting the projector", 0)
    w, b = fit_ridge(concepts, name_embeddings(model_gguf, names, tokenize))

    prep = preprocess_of(visual)
    size = prep.size
    with torch.no_grad():  # patch tokens of probe images, for the scales
        visual.output_tokens = True
        _, tokens = visual(torch.randn(4, 3, *size, generator=torch.Generator().manual_seed(0)))
    tokens = tokens.reshape(-1, tokens.shape[-1]).numpy()
    proj = _np(visual.proj)
    scale = 1.0 / float(np.linalg.norm(tokens @ proj, axis=1).mean())  # patch features to unit norm, on average
    a = scale * proj @ w
    tensors = {**tower_tensors(visual), **linear_as_mlp(a, b, tokens)}
    step("fitting the projector", 1)

    blocks = len(visual.transformer.resblocks)
    width = int(visual.conv1.weight.shape[0])
    patch = int(visual.conv1.weight.shape[-1])
    quick_gelu = "QuickGELU" in type(visual.transformer.resblocks[0].mlp.gelu).__name__

    def write(tmp: Path) -> None:
        import gguf

        writer = gguf.GGUFWriter(str(tmp), "clip")
        writer.add_string("general.name", f"askgpt {model_name} -> {model_gguf.stem}")
        writer.add_bool("clip.has_vision_encoder", True)
        writer.add_bool("clip.has_text_encoder", False)
        writer.add_string("clip.projector_type", "mlp")
        if not quick_gelu:  # neither key: llama.cpp uses quick-GELU
            writer.add_bool("clip.use_gelu", True)
        writer.add_uint32("clip.vision.image_size", int(size[0]))
        writer.add_uint32("clip.vision.patch_size", patch)
        writer.add_uint32("clip.vision.embedding_length", width)
        writer.add_uint32("clip.vision.feed_forward_length", int(visual.transformer.resblocks[0].mlp.c_fc.out_features))
        writer.add_uint32("clip.vision.block_count", blocks)
        writer.add_uint32("clip.vision.projection_dim", int(a.shape[1]))
        writer.add_uint32("clip.vision.attention.head_count", int(visual.transformer.resblocks[0].attn.num_heads))
        writer.add_float32("clip.vision.attention.layer_norm_epsilon", float(visual.ln_post.eps))
        writer.add_array("clip.vision.image_mean", list(prep.mean))
        writer.add_array("clip.vision.image_std", list(prep.std))
        writer.add_array("clip.vision.feature_layer", [blocks])  # the last block, then post_ln
        for name, value in tensors.items():
            writer.add_tensor(name, np.ascontiguousarray(value))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    atomic_write_with(out, write, private=False)
    n_patches = (int(size[0]) // patch) ** 2
    return MmprojReport(out, model_name, n_patches, int(a.shape[1]), time.perf_counter() - started)
