"""Sentence embeddings through llama.cpp: a BERT-family GGUF (the shipped all-MiniLM-L6-v2)
loaded with ``embedding=True``, pooled as the file says (mean for MiniLM).

Sentences are embedded one llama_decode each: llama.cpp attends over a whole micro-batch
with a mask, so packing many short sentences into one batch costs more than running them
one by one (measured here: 20 sentences of ~27 tokens in 0.97 s batched, 0.54 s singly).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.runtime.engine.llama.native import import_llama_cpp, native_log
from askgpt.runtime.errors import ModelLoadError
from askgpt.runtime.files import FileIdentity

_WINDOW = 512  # MiniLM's position table; longer texts are cut (a passage is a few sentences)


class LlamaEmbedder:
    """Tokenizes and embeds text with one embedding model; vectors are L2-normalised."""

    def __init__(self, llm: Any, path: Path) -> None:
        self._llm = llm
        # What cached vectors are keyed by: the file's name and size, not its path or time, so a
        # reinstall (or a second install) of the same model finds the vectors already made.
        self.key = f"{path.name}|{FileIdentity.of(path).size}"
        self.width = int(llm.n_embd())

    def tokenize(self, text: str) -> list[int]:
        """Word-piece ids of ``text``, without [CLS]/[SEP]."""
        ids = self._llm.tokenize(text.encode("utf-8", errors="replace"), add_bos=False, special=False)
        return [int(i) for i in ids]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), width) float32, each row of unit length (zeros for an empty text)."""
        out = np.zeros((len(texts), self.width), dtype=np.float32)
        for i, text in enumerate(texts):
            if text.strip():
                out[i] = np.asarray(self._llm.embed(text, normalize=True, truncate=True), dtype=np.float32)
        return out

    def close(self) -> None:
        self._llm.close()


def open_embedder(path: Path, *, threads: int) -> LlamaEmbedder:
    """The embedding model at ``path``. Raises `ModelLoadError` when llama.cpp cannot load it."""
    llama_cpp = import_llama_cpp()
    native_log.install(llama_cpp)  # its lines go where the answering model's go
    try:
        llm = llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=_WINDOW, n_batch=_WINDOW,
                              n_ubatch=_WINDOW, n_threads=threads, n_threads_batch=threads, verbose=False)
    except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError with no detail
        raise ModelLoadError(f"llama.cpp could not load the embedding model {path.name}: "
                             f"{native_log.first_error() or exc}") from exc
    return LlamaEmbedder(llm, path)
