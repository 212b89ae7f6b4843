"""The conversion job: a checkpoint folder -> a GGUF file, written tensor by tensor.

The `gguf` package supplies the format, the tensor name maps and the key names;
the architecture's converter (``architectures.read_config``) supplies what its
checkpoint means.

Memory: the header, key-values and tensor table are written first, from the
checkpoint's headers alone; then each tensor is read (memory-mapped), converted
and appended, so about one tensor is held at a time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.convert.hf.architectures import read_config
from askgpt.convert.hf.base import ModelConverter, PlannedTensor
from askgpt.convert.hf.config import CheckpointUsageError
from askgpt.convert.hf.tokenizer import Vocabulary
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
from askgpt.runtime.errors import UsageError
from askgpt.runtime.files import atomic_write_with, remove_stale_temporaries
from askgpt.runtime.models.filetypes import FileType, output_type
from askgpt.runtime.models.gguf import read_summary
from askgpt.runtime.system import peak_rss_mb

FLOAT_TYPES = ("F32", "F16", "BF16")
Progress = Callable[[str, int, int], None]  # (stage, done, total)


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


def _storage(planned: PlannedTensor, out_type: str) -> tuple[Any, np.dtype, int]:
    """(ggml type, numpy dtype of the stored bytes, bytes) for a tensor: 1-D tensors (norms,
    rope factors) and those the converter names stay f32 as llama.cpp requires."""
    import gguf

    shape = planned.shape
    count = int(np.prod(shape))
    if len(shape) == 1 or out_type == "F32" or planned.f32:
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
    converter = read_config(folder)
    vocab = converter.read_vocabulary(folder)  # before the weights: the cheaper check first
    source = source or open_checkpoint(folder, trust_pickle=trust_pickle)
    planned = converter.plan_tensors(source)
    embd = next(p for p in planned if p.gguf_name == "token_embd.weight")
    if embd.shape[0] != len(vocab.tokens):
        raise CheckpointError(f"the tokenizer has {len(vocab.tokens)} tokens but the embedding "
                              f"{embd.shape[0]} rows")
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[converter.gguf_arch])
    write_metadata(writer, converter, vocab, folder, out_type)
    stored = [(p, *_storage(p, out_type)) for p in planned]
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


def convert_hf(src: Path, dst: Path, out_type: FileType, quantizer: Quantizer, *, trust_pickle: bool = False,
               force: bool = False, progress: Progress | None = None) -> ConvertSummary:
    """HF folder -> GGUF of ``out_type``: float types directly; quantized ones through an
    F16 file beside the destination, then llama.cpp's quantizer. Each file is checked
    with the GGUF reader before it is renamed into place; nothing partial is ever left."""
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


def _write_outputs(dst: Path, folder: Path, out_type: FileType, float_type: str,
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


def write_metadata(w: Any, converter: ModelConverter[Any], vocab: Vocabulary, folder: Path, out_type: str) -> None:
    """The key-values: the common hyperparameters, the architecture's own, then the tokenizer."""
    import gguf

    cfg = converter.cfg
    w.add_name(folder.resolve().name)
    w.add_file_type(output_type(out_type).ftype)
    w.add_context_length(cfg.n_ctx_train)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(cfg.n_ff)
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_head_kv)
    converter.add_norm_and_position(w)
    w.add_vocab_size(len(vocab.tokens))
    converter.add_metadata(w)
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
    for key, value in vocab.flags:
        w.add_bool(key, value)
    converter.add_tokenizer_flags(w, vocab, dict(special.add_special_token))
