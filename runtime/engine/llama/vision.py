"""The mmproj path: a GGUF vision projector run by llama.cpp's mtmd, on the engine's own
model. mtmd is a library of its own beside llama.cpp (its own context and logger), so
its bindings are called here rather than through `NativeModel`."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

from askgpt.runtime.engine.base import EmbeddingRows, ModelInfo, PromptPart, TokenIds
from askgpt.runtime.engine.llama.native import NativeModel, native_log, sigint_as_flag
from askgpt.runtime.errors import InferenceError, ModelLoadError
from askgpt.runtime.models.gguf import check_gguf


class MmprojVision:
    """A GGUF vision projector (mmproj: LLaVA, SmolVLM, Gemma 3, ...) run by llama.cpp's mtmd.

    An image becomes the prompt segments mtmd lays out for it: its delimiter tokens
    and the encoder's embedding rows, in order. The rows then reach the context through
    the engine's ordinary embedding-row path, so the prefix cache, context checks and
    long-document strategies treat them like any other prompt part.
    """

    def __init__(self, native: NativeModel, info: ModelInfo, path: Path, *, threads: int) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        check_gguf(path)  # the same header bounds check as any GGUF, before native code reads it
        self._mtmd = mtmd
        self.path = path
        self._n_embd = info.n_embd
        native_log.errors.clear()
        native_log.install_mtmd(mtmd)
        params = mtmd.mtmd_context_params_default()  # use_gpu by default: a GPU build runs the encoder there
        params.print_timings = False
        params.n_threads = threads
        with sigint_as_flag():
            self._ctx = mtmd.mtmd_init_from_file(str(path).encode(), native.llm.model, params)
        if not self._ctx:
            # mtmd's message runs over lines ("error: mismatch ...\nhint: ..."): its first says it.
            detail = (native_log.first_error() or "llama.cpp's mtmd could not load it").splitlines()[0]
            detail = detail.removeprefix("error: ")
            raise ModelLoadError(f"the vision projector {path.name} does not work with {info.name}: {detail}",
                                 hint="use the mmproj file published with this model")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise ModelLoadError(f"{path.name} has no vision encoder (an audio-only projector?)")
        if mtmd.mtmd_decode_use_mrope(self._ctx):
            self.close()
            raise ModelLoadError(f"{path.name} is for a model with M-RoPE positions (Qwen2-VL family), "
                                 "which askgpt's image path does not place yet",
                                 hint="use a LLaVA-, SmolVLM- or Gemma-3-style vision model")
        self.marker = mtmd.mtmd_default_marker()

    def segments(self, pixels: Any) -> tuple[PromptPart, ...]:
        """``pixels``: (H, W, 3) uint8 RGB. The image's delimiter tokens and embedding rows."""
        import numpy as np

        mtmd = self._mtmd
        rgb = np.ascontiguousarray(pixels, dtype=np.uint8)
        height, width = int(rgb.shape[0]), int(rgb.shape[1])
        data = (ctypes.c_uint8 * rgb.size).from_buffer_copy(rgb.tobytes())
        bitmap = mtmd.mtmd_bitmap_init(width, height, data)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            text = mtmd.mtmd_input_text(self.marker, len(self.marker), False, True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            if mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), bitmaps, 1) != 0:
                raise InferenceError(f"llama.cpp's mtmd could not prepare a {width}x{height} image")
            out: list[PromptPart] = []
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                kind = mtmd.mtmd_input_chunk_get_type(chunk)
                if kind == 0:  # text: the model's image delimiters
                    n = ctypes.c_size_t(0)
                    ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    out.append(TokenIds(tuple(int(ids[k]) for k in range(n.value))))
                    continue
                n_rows = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                with sigint_as_flag() as asked:
                    failed = mtmd.mtmd_encode_chunk(self._ctx, chunk) != 0
                if asked:
                    raise KeyboardInterrupt
                if failed:
                    raise InferenceError("llama.cpp's vision encoder failed on an image")
                embd = mtmd.mtmd_get_output_embd(self._ctx)
                rows = np.ctypeslib.as_array(embd, shape=(n_rows * self._n_embd,)).reshape(n_rows, self._n_embd)
                out.append(EmbeddingRows(rows.copy(), causal=not mtmd.mtmd_decode_use_non_causal(self._ctx, chunk)))
            return tuple(out)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    def close(self) -> None:
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None
