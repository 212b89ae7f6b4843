"""The kinds of retrieval, in a module that imports nothing heavy (settings and the CLI read it)."""

from __future__ import annotations

from enum import Enum


class Retrieval(str, Enum):
    """How a question's evidence is found: words (BM25), meaning (sentence embeddings), or both
    fused. None in the config means hybrid where the embedding model is present, else bm25."""

    BM25 = "bm25"
    SEMANTIC = "semantic"
    HYBRID = "hybrid"
