"""Sentence similarity by meaning, for picking few-shot examples (``--select similar|diverse``).

The shipped all-MiniLM-L6-v2 embeds each text once per process (vectors memoised by text:
``diverse`` compares the pool with itself K times, and ``bench icl`` draws from one pool for
every test input); similarity is the cosine, clipped at 0 so that "nothing in common" is 0
as the selection methods expect.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from askgpt.runtime.retrieval.model import TextEmbedder

if TYPE_CHECKING:
    import numpy as np

# Texts kept embedded per process: a pool of a few hundred examples and its queries, with room.
MEMO_LIMIT = 4096


class EmbeddingSimilarity:
    """``similarity(texts, queries)[q][i]``: max(0, cosine) of ``texts[i]`` and ``queries[q]``."""

    def __init__(self, embedder: TextEmbedder, limit: int = MEMO_LIMIT) -> None:
        self._embedder = embedder
        self._limit = limit
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            for text, row in zip(missing, self._embedder.embed(missing), strict=True):
                self._memo[text] = row
        rows = []
        for text in texts:
            self._memo.move_to_end(text)
            rows.append(self._memo[text])
        while len(self._memo) > self._limit:
            self._memo.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, self._embedder.width), dtype=np.float32)

    def __call__(self, texts: Sequence[str], queries: Sequence[str]) -> list[list[float]]:
        if not texts:
            return [[] for _ in queries]
        scores = self._vectors(queries) @ self._vectors(texts).T
        return [[max(0.0, float(s)) for s in row] for row in scores]


@lru_cache(maxsize=1)
def shipped_similarity() -> EmbeddingSimilarity | None:
    """Similarity by the shipped embedding model, or None when it is not installed (or
    llama.cpp cannot load it): the caller then falls back to BM25 over words. One per process,
    so its memo serves every draw from the same pool."""
    from askgpt.runtime.errors import ModelLoadError
    from askgpt.runtime.retrieval.model import embedding_model_present, shipped_embedder

    if not embedding_model_present():
        return None
    try:
        return EmbeddingSimilarity(shipped_embedder())
    except ModelLoadError:
        return None
