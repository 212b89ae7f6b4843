"""Hugging Face checkpoint folder -> GGUF (f32, f16 or bf16), written tensor by tensor.

Supported: the Llama family (``LlamaForCausalLM``: SmolLM2, TinyLlama, Llama 3.x)
and Phi-3 (``Phi3ForCausalLM``). The `gguf` package supplies the format, the
tensor name maps and the key names; this module supplies what a checkpoint
folder means: hyperparameters from config.json, the q/k row order llama.cpp's
rotary kernel expects, the tokenizer from tokenizer.json (or tokenizer.model),
special tokens and the chat template.

Memory: the header, key-values and tensor table are written first, from the
checkpoint's headers alone; then each tensor is read (memory-mapped), converted
and appended, so about one tensor is held at a time.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.convert.gguf_file import read_summary
from askgpt.convert.quantize import (
    ConvertError,
    ConvertSummary,
    Quantizer,
    check_free_space,
    check_writable,
    run_interruptibly,
    verify,
)
from askgpt.convert.safetensors import CheckpointError, SafetensorsFile, TensorSource, load_pickled
from askgpt.convert.types import OutputType
from askgpt.runtime.errors import AskgptError, ExitCode, UsageError
from askgpt.runtime.files import atomic_write_with, remove_stale_temporaries
from askgpt.runtime.system import peak_rss_mb

SUPPORTED = ("LlamaForCausalLM", "Phi3ForCausalLM")
FLOAT_TYPES = ("F32", "F16", "BF16")
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class CheckpointUsageError(AskgptError):
    """A folder that is not a convertible checkpoint: what the user gave is wrong."""

    exit_code = ExitCode.USAGE_ERROR


@dataclass(frozen=True)
class HfConfig:
    """What the GGUF needs from config.json."""

    architecture: str  # HF class name
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rms_eps: float
    rope_theta: float
    n_ctx_train: int
    vocab_size: int
    tied_embeddings: bool
    rope_scaling: dict[str, Any]
    partial_rotary: float
    sliding_window: int
    original_ctx: int

    @property
    def arch(self) -> Any:
        import gguf

        return gguf.MODEL_ARCH.LLAMA if self.architecture == "LlamaForCausalLM" else gguf.MODEL_ARCH.PHI3


def read_config(folder: Path) -> HfConfig:
    path = folder / "config.json"
    if not folder.is_dir():
        raise CheckpointUsageError(f"{folder} is not a folder", hint="give a Hugging Face model folder")
    if not path.is_file():
        raise CheckpointUsageError(f"{folder} has no config.json", hint="give a Hugging Face model folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointUsageError(f"cannot read {path}: {exc}") from exc
    archs = cfg.get("architectures") or [cfg.get("model_type", "unknown")]
    arch = str(archs[0])
    if arch not in SUPPORTED:
        raise CheckpointUsageError(f"unsupported architecture {arch}; supported: {', '.join(SUPPORTED)}")
    try:
        n_embd, n_head = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        rope = dict(cfg.get("rope_scaling") or cfg.get("rope_parameters") or {})
        n_ctx = int(cfg.get("max_position_embeddings", 4096))
        return HfConfig(
            architecture=arch, n_layer=int(cfg["num_hidden_layers"]), n_embd=n_embd,
            n_ff=int(cfg["intermediate_size"]), n_head=n_head,
            n_head_kv=int(cfg.get("num_key_value_heads") or n_head),
            head_dim=int(cfg.get("head_dim") or n_embd // n_head), rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=float(cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0),
            n_ctx_train=n_ctx, vocab_size=int(cfg["vocab_size"]),
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)), rope_scaling=rope,
            partial_rotary=float(cfg.get("partial_rotary_factor") or rope.get("partial_rotary_factor") or 1.0),
            sliding_window=int(cfg.get("sliding_window") or 0),
            original_ctx=int(cfg.get("original_max_position_embeddings")
                             or rope.get("original_max_position_embeddings") or n_ctx))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointUsageError(f"config.json in {folder} lacks or garbles {exc}") from exc


def open_checkpoint(folder: Path, *, trust_pickle: bool) -> TensorSource:
    """The folder's weights: safetensors (sharded or not); pickles only when trusted."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read {index}: {exc}") from exc
        files = [folder / s for s in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if files:
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{folder} lacks the weight shard(s) {', '.join(missing)}")
        return TensorSource([SafetensorsFile(f) for f in files])
    pickles = sorted(p for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth") and p.is_file())
    if pickles and not trust_pickle:
        raise CheckpointUsageError(
            f"{folder} holds only pickle weights ({pickles[0].name}); a pickle can run code when loaded",
            hint="convert it with --trust-pickle if you trust its source (it is loaded with weights_only=True)")
    if not pickles:
        raise CheckpointUsageError(f"{folder} has no weights (*.safetensors, or .bin/.pt with --trust-pickle)")
    source = TensorSource(pickled=load_pickled(pickles))
    source.file_bytes = sum(p.stat().st_size for p in pickles)
    return source


# --- tokenizer ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Vocabulary:
    model: str  # tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: str  # tokenizer.ggml.pre
    tokens: list[bytes]
    scores: list[float]
    types: list[int]


# llama.cpp picks its pre-tokenizer regex by name; these are the shapes of tokenizer.json's
# "pre_tokenizer" it knows, matched on structure rather than on a hash of sample output.
_LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"


def pre_tokenizer_name(tok: dict[str, Any]) -> str:
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = (steps[0].get("pattern") or {}).get("Regex", "")
        if pattern.startswith(_LLAMA3_SPLIT):
            return "llama-bpe"
    raise CheckpointUsageError(
        f"unknown pre-tokenizer {json.dumps(pre)[:120]}; askgpt knows gpt-2, smollm and llama-bpe",
        hint="a wrong pre-tokenizer silently degrades the model, so askgpt stops here")


def read_vocabulary(folder: Path, vocab_size: int) -> Vocabulary:
    import gguf

    tok_json = folder / "tokenizer.json"
    tok: dict[str, Any] = {}
    if tok_json.is_file():
        try:
            tok = json.loads(tok_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointUsageError(f"cannot read {tok_json}: {exc}") from exc
    model = tok.get("model", {})
    if model.get("type") == "BPE" and not model.get("byte_fallback"):
        by_id = {int(i): t for t, i in model["vocab"].items()}
        added = {int(a["id"]): a for a in tok.get("added_tokens", [])}
        size = max(vocab_size, max(by_id) + 1, max(added, default=-1) + 1)
        tokens, types = [], []
        for i in range(size):
            if i in added:
                tokens.append(added[i]["content"].encode("utf-8"))
                types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
            elif i in by_id:
                tokens.append(by_id[i].encode("utf-8"))
                types.append(gguf.TokenType.NORMAL)
            else:  # rows of the embedding with no token: padding the model never produces
                tokens.append(f"[PAD{i}]".encode())
                types.append(gguf.TokenType.UNUSED)
        return Vocabulary("gpt2", pre_tokenizer_name(tok), tokens, [0.0] * size, [int(t) for t in types])
    if (folder / "tokenizer.model").is_file():
        return _sentencepiece_vocabulary(folder, vocab_size)
    if tok:
        raise CheckpointUsageError(f"unsupported tokenizer in {tok_json} (model type {model.get('type')})",
                                   hint="byte-level BPE tokenizer.json or a SentencePiece tokenizer.model")
    raise CheckpointUsageError(f"{folder} has no tokenizer (tokenizer.json or tokenizer.model)")


def _sentencepiece_vocabulary(folder: Path, vocab_size: int) -> Vocabulary:
    import gguf

    try:
        spm = gguf.SentencePieceVocab(folder)
    except ImportError as exc:
        raise CheckpointUsageError("this model's tokenizer.model needs the sentencepiece package",
                                   hint="pip install sentencepiece") from exc
    tokens, scores, types = [], [], []
    for text, score, kind in spm.all_tokens():
        tokens.append(text)
        scores.append(float(score))
        types.append(int(kind))
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(int(gguf.TokenType.UNUSED))
    return Vocabulary("llama", "default", tokens, scores, types)


# --- tensors --------------------------------------------------------------------------------------------

def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores each head's q/k rows as two halves (rotate_half); llama.cpp's rotary kernel
    for Llama pairs neighbouring rows. Interleave the halves: (n_head * head_dim, n_in)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_kind(cfg: HfConfig) -> str | None:
    kind = cfg.rope_scaling.get("rope_type", cfg.rope_scaling.get("type"))
    return None if kind is None else str(kind)


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


@dataclass(frozen=True)
class PlannedTensor:
    gguf_name: str
    shape: tuple[int, ...]  # numpy order (rows, cols)
    source_name: str = ""  # the checkpoint's tensor, or
    made: np.ndarray | None = None  # a tensor computed from the config (rope factors)
    permute_heads: int = 0  # q/k rows to interleave for llama.cpp, per head

    def load(self, source: TensorSource) -> np.ndarray:
        if self.made is not None:
            return self.made
        data = source.load(self.source_name)
        return permute_rows(data, self.permute_heads) if self.permute_heads else data


def plan_tensors(cfg: HfConfig, source: TensorSource) -> list[PlannedTensor]:
    import gguf

    tmap = gguf.get_tensor_name_map(cfg.arch, cfg.n_layer)
    planned: list[PlannedTensor] = []
    for name in source.names():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by llama.cpp from rope.freq_base
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise CheckpointError(f"tensor {name} has no GGUF name for {cfg.architecture}")
        heads = 0
        if cfg.architecture == "LlamaForCausalLM" and re.search(r"\.(q|k)_proj\.weight$", name):
            heads = cfg.n_head if ".q_proj" in name else cfg.n_head_kv
        planned.append(PlannedTensor(new, source.shape(name), name, permute_heads=heads))
    names = {p.gguf_name for p in planned}
    if "token_embd.weight" not in names:
        raise CheckpointError("the checkpoint has no token embedding (model.embed_tokens.weight)")
    if cfg.architecture == "LlamaForCausalLM" and _rope_kind(cfg) == "llama3":
        factors = llama3_rope_factors(cfg)
        planned.append(PlannedTensor("rope_freqs.weight", factors.shape, made=factors))
    if cfg.architecture == "Phi3ForCausalLM" and cfg.rope_scaling.get("long_factor"):
        for key, tname in (("long_factor", "rope_factors_long.weight"), ("short_factor", "rope_factors_short.weight")):
            f = np.array(cfg.rope_scaling[key], dtype=np.float32)
            planned.append(PlannedTensor(tname, f.shape, made=f))
    return planned


def _storage(shape: tuple[int, ...], out_type: str) -> tuple[Any, np.dtype, int]:
    """(ggml type, numpy dtype of the stored bytes, bytes) for a tensor: 1-D tensors (norms,
    rope factors) stay f32 as llama.cpp requires."""
    import gguf

    count = int(np.prod(shape))
    if len(shape) == 1 or out_type == "F32":
        return gguf.GGMLQuantizationType.F32, np.dtype(np.float32), count * 4
    if out_type == "BF16":
        return gguf.GGMLQuantizationType.BF16, np.dtype(np.uint16), count * 2
    return gguf.GGMLQuantizationType.F16, np.dtype(np.float16), count * 2


def _encode(data: np.ndarray, ggml_type: Any, name: str) -> np.ndarray:
    import gguf

    data = np.ascontiguousarray(data, dtype=np.float32)
    if ggml_type == gguf.GGMLQuantizationType.F32:
        return data
    if ggml_type == gguf.GGMLQuantizationType.BF16:
        return gguf.quants.quantize(data, ggml_type).view(np.uint16).reshape(data.shape)
    if np.abs(data).max(initial=0.0) > 65504.0:
        raise CheckpointError(f"tensor {name} has values beyond float16's range",
                              hint="convert with --type BF16 or F32")
    return data.astype(np.float16)


Written = dict[str, tuple[str, tuple[int, ...]]]  # GGUF tensor name -> (ggml type, GGUF shape)


def write_gguf(folder: Path, out: Path, out_type: str, *, trust_pickle: bool = False,
               source: TensorSource | None = None, progress: Progress | None = None) -> Written:
    """Convert ``folder`` into the GGUF file ``out`` (which the caller makes atomic).
    Returns what was written: GGUF tensor name -> (ggml type, GGUF shape)."""
    import gguf

    if out_type not in FLOAT_TYPES:
        raise UsageError(f"write_gguf writes {', '.join(FLOAT_TYPES)}, not {out_type}")
    cfg = read_config(folder)
    vocab = read_vocabulary(folder, cfg.vocab_size)  # before the weights: the cheaper check first
    source = source or open_checkpoint(folder, trust_pickle=trust_pickle)
    planned = plan_tensors(cfg, source)
    embd = next(p for p in planned if p.gguf_name == "token_embd.weight")
    if embd.shape[0] != len(vocab.tokens):
        raise CheckpointError(f"the tokenizer has {len(vocab.tokens)} tokens but the embedding "
                              f"{embd.shape[0]} rows")
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[cfg.arch])
    _write_metadata(writer, cfg, vocab, folder, out_type)
    stored = [(p, *_storage(p.shape, out_type)) for p in planned]
    for p, ggml_type, dtype, nbytes in stored:
        writer.add_tensor_info(p.gguf_name, p.shape, dtype, nbytes, raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    report = progress or (lambda stage, done, total: None)
    for k, (p, ggml_type, _, _) in enumerate(stored):
        report("converting tensors", k, len(stored))
        writer.write_tensor_data(_encode(p.load(source), ggml_type, p.gguf_name))
    report("converting tensors", len(stored), len(stored))
    writer.close()
    return {p.gguf_name: (t.name, tuple(reversed(p.shape))) for p, t, _, _ in stored}


def convert_hf(src: Path, dst: Path, out_type: OutputType, quantizer: Quantizer, *, trust_pickle: bool = False,
               force: bool = False, progress: Progress | None = None) -> ConvertSummary:
    """HF folder -> GGUF of ``out_type``: float types directly; quantized ones through an
    F16 file beside the destination, then llama.cpp's quantizer. Each file is checked
    with GGUFReader before it is renamed into place; nothing partial is ever left."""
    dst = dst.expanduser()
    if dst.exists() and not force:
        raise ConvertError(f"{dst} exists", hint="pass --force to replace it")
    folder = dst.parent if str(dst.parent) else Path(".")
    check_writable(folder)
    remove_stale_temporaries(dst)
    read_config(src)
    source = open_checkpoint(src, trust_pickle=trust_pickle)
    n_params = sum(int(np.prod(source.shape(n))) for n in source.names())
    float_type = out_type.name if out_type.name in FLOAT_TYPES else "F16"
    float_bytes = n_params * (4 if float_type == "F32" else 2) + (8 << 20)
    quant_bytes = 0 if out_type.name in FLOAT_TYPES else int(n_params * max(out_type.bits, 4.0) / 8 * 1.15)
    check_free_space(folder, float_bytes + quant_bytes)
    started = time.perf_counter()

    def write_float(tmp: Path) -> None:
        written = write_gguf(src, tmp, float_type, trust_pickle=trust_pickle, source=source, progress=progress)
        verify({n: shape for n, (_, shape) in written.items()}, tmp,
               types={n: t for n, (t, _) in written.items()})

    try:
        _write_outputs(dst, folder, out_type, float_type, write_float, quantizer, progress)
    except OSError as exc:  # a full disk, a vanished folder: the destination is untouched
        raise ConvertError(f"writing {dst} failed: {exc.strerror or exc}",
                           hint="free some space or write elsewhere") from exc
    return ConvertSummary(src.resolve().name, source.file_bytes, read_summary(dst), out_type,
                          time.perf_counter() - started, peak_rss_mb())


def _write_outputs(dst: Path, folder: Path, out_type: OutputType, float_type: str,
                   write_float: Callable[[Path], None], quantizer: Quantizer, progress: Progress | None) -> None:
    if out_type.name in FLOAT_TYPES:
        atomic_write_with(dst, write_float, private=False)
    else:
        staged = folder / f".{dst.name}.{os.getpid()}.{float_type}.tmp"  # stale ones are found like temporaries
        try:
            atomic_write_with(staged, write_float)
            staged_summary = read_summary(staged)

            def write_quant(tmp: Path) -> None:
                if progress is not None:
                    progress(f"quantizing to {out_type.name}", 0, 1)
                run_interruptibly(lambda: quantizer(staged, tmp, out_type.ftype))
                verify({t.name: t.shape for t in staged_summary.tensors}, tmp)

            atomic_write_with(dst, write_quant, private=False)
        finally:
            staged.unlink(missing_ok=True)


def _write_metadata(w: Any, cfg: HfConfig, vocab: Vocabulary, folder: Path, out_type: str) -> None:
    import gguf

    w.add_name(folder.resolve().name)
    w.add_file_type({"F32": 0, "F16": 1, "BF16": 32}[out_type])
    w.add_context_length(cfg.n_ctx_train)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(cfg.n_ff)
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_head_kv)
    w.add_layer_norm_rms_eps(cfg.rms_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_vocab_size(len(vocab.tokens))
    if cfg.architecture == "LlamaForCausalLM":
        w.add_rope_dimension_count(cfg.head_dim)
        if cfg.head_dim != cfg.n_embd // cfg.n_head:
            w.add_key_length(cfg.head_dim)
            w.add_value_length(cfg.head_dim)
        kind = _rope_kind(cfg)
        if kind == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(cfg.rope_scaling["factor"]))
        elif kind not in (None, "default", "llama3"):
            raise CheckpointUsageError(f"rope scaling {kind!r} is not supported; supported: linear, llama3")
    else:  # Phi-3
        w.add_rope_dimension_count(int(cfg.partial_rotary * cfg.n_embd) // cfg.n_head)
        w.add_rope_scaling_orig_ctx_len(cfg.original_ctx)
        w.add_sliding_window(cfg.sliding_window)
        if cfg.rope_scaling.get("long_factor"):
            scale = cfg.n_ctx_train / cfg.original_ctx
            attn = math.sqrt(1 + math.log(scale) / math.log(cfg.original_ctx)) if scale > 1 else 1.0
            w.add_rope_scaling_attn_factors(attn)
    w.add_tokenizer_model(vocab.model)
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    if vocab.model == "llama":
        w.add_token_scores(vocab.scores)
    special = gguf.SpecialVocab(folder, load_merges=vocab.model == "gpt2", n_vocab=len(vocab.tokens))
    if vocab.model == "gpt2" and not special.merges:
        raise CheckpointUsageError(f"the tokenizer in {folder} has no merges")
    special.add_to_gguf(w, quiet=True)
    if "bos" not in special.add_special_token:
        w.add_add_bos_token(vocab.model == "llama")  # SentencePiece models expect BOS; byte-level BPE ones mostly not
