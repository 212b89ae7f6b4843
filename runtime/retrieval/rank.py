"""Ranking a document's passages against a question, with memory flat in its length.

Passages are scored in blocks: BM25 on words, and, with the embedding model, MaxSim over
static token vectors (each question word's best match among the passage's word pieces,
weighted by its rarity in the block): no transformer runs over the whole input, so recall
costs well under a second per 100k tokens. The best candidates of every block are then
embedded with the full model (cached on disk) and ranked by cosine; ``hybrid`` adds BM25's
score, scaled to the best candidate's, with a small weight (BM25_WEIGHT). Measured on paraphrased needles in ~27k
tokens of prose, static MaxSim put the fact within its best 110 of ~1,100 sentences in 8
of 8, and the full model then ranked it first or second.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from askgpt.runtime.retrieval.cache import VectorCache
from askgpt.runtime.retrieval.kinds import Retrieval
from askgpt.runtime.retrieval.model import TextEmbedder, static_vectors
from askgpt.runtime.retrieval.passages import ChunkLike, Passage, passages

if TYPE_CHECKING:
    import numpy as np

# Hybrid: cosine plus BM25 scaled to the best candidate's, weighted BM25_WEIGHT. Not reciprocal
# rank fusion: measured on paraphrased facts in ~27k tokens of prose, RRF (k=60) let passages
# that share a common word with the question (BM25 rank 1-5, cosine 0.1-0.25) outrank the fact
# (cosine 0.43-0.5, no shared word) in 3 of 4. Scores keep the size of the lead; ranks drop it.
BM25_WEIGHT = 0.15
# Below this cosine, and with no word in common, a passage is not evidence at all: the
# question then matches nothing (paraphrased facts measured 0.43-0.5; the best unrelated
# sentences of prose 0.1-0.25: a low floor, since the best candidates are read anyway).
DENSE_FLOOR = 0.2
_STOP = ("a an and are as at be but by for if in into is it of on or that the their then there these they this "
         "to was will with what which who whom whose why how when where does did do can could would should "
         "tell me please give name list every all each many much").split()
_STOP_WORDS = frozenset(_STOP)
_PUNCT = list("?.,!;:'\"()[]{}-")


@dataclass(frozen=True)
class RankConfig:
    mode: Retrieval
    static_keep: int = 384  # candidates kept by static vectors, over the whole input (re-ranked: ~4 s here)
    bm25_keep: int = 32  # candidates kept by BM25
    block: int = 8192  # passages scored together (about 200k tokens of prose)


@dataclass(frozen=True)
class Scored:
    passage: Passage
    score: float  # the fused score the ranking is by (higher is better)
    dense: float  # cosine with the question (nan without the model)
    bm25: float


@dataclass
class Found:
    ranked: list[Scored]  # best first
    passages: int = 0
    chunks: int = 0
    embedded: int = 0  # sentences the full model embedded for this question
    cached: int = 0  # sentences whose vectors came from the cache
    seconds: dict[str, float] = field(default_factory=dict)


def find_evidence(chunks: Iterable[ChunkLike], question: str, config: RankConfig,
                  embedder: TextEmbedder | None, cache: VectorCache | None) -> Found:
    """The passages of ``chunks`` that best answer ``question``, best first."""
    import time

    started = time.perf_counter()
    semantic = config.mode is not Retrieval.BM25 and embedder is not None
    found = Found([])
    query = _query_ids(question, embedder) if semantic and embedder is not None else []
    by_static: list[tuple[float, int, Passage]] = []
    by_bm25: list[tuple[float, int, Passage]] = []

    counted = _Counted(chunks)
    for block in _blocks(passages(counted), config.block):
        found.passages += len(block)
        bm = bm25_scores([p.text for p in block], question)
        for p, s in zip(block, bm, strict=True):
            if s > 0:
                _keep(by_bm25, (s, -p.seq, p), config.bm25_keep)
        if semantic and embedder is not None and query:
            for p, s in zip(block, _static_scores(block, query, embedder), strict=True):
                _keep(by_static, (s, -p.seq, p), config.static_keep)
    found.chunks = counted.n
    found.seconds["recall"] = time.perf_counter() - started

    bm25_of = {p.seq: s for s, _, p in by_bm25}
    pool = {p.seq: p for _, _, p in by_bm25} | {p.seq: p for _, _, p in by_static}
    candidates = sorted(pool.values(), key=lambda p: p.seq)
    dense_of: dict[int, float] = {}
    if semantic and embedder is not None and candidates:
        started = time.perf_counter()
        vectors = _vectors([question] + [p.text for p in candidates], embedder, cache, found)
        dense_of = {p.seq: float(vectors[i + 1] @ vectors[0]) for i, p in enumerate(candidates)}
        found.seconds["re-rank"] = time.perf_counter() - started
    found.ranked = fuse(candidates, bm25_of, dense_of, config.mode if semantic else Retrieval.BM25, question)
    return found


def fuse(candidates: Sequence[Passage], bm25_of: dict[int, float], dense_of: dict[int, float],
         mode: Retrieval, question: str = "") -> list[Scored]:
    """Candidates best first: by BM25, by cosine, or by cosine plus scaled BM25 (hybrid)."""
    top = max(bm25_of.values(), default=0.0) or 1.0
    asked = _words(question)
    scored = []
    for p in candidates:
        bm, dense = bm25_of.get(p.seq, 0.0), dense_of.get(p.seq, math.nan)
        if mode is Retrieval.BM25:
            score = bm
        elif mode is Retrieval.SEMANTIC:
            score = dense
        else:
            # Scaled by the share of the question's words the passage has: one common word
            # ("language") is not a match, though it may be the best BM25 score there is.
            share = len(asked & _words(p.text)) / len(asked) if asked and bm > 0 else 1.0
            score = (0.0 if math.isnan(dense) else dense) + BM25_WEIGHT * share * bm / top
        if mode is Retrieval.BM25 and bm <= 0:
            continue
        if mode is not Retrieval.BM25 and not dense >= DENSE_FLOOR and (mode is Retrieval.SEMANTIC or bm <= 0):
            continue
        scored.append(Scored(p, score, dense, bm))
    return sorted(scored, key=lambda s: (-s.score, s.passage.seq))


def _words(text: str) -> set[str]:
    """Lower-case words of 3+ letters or digits, function words aside (as BM25 sees them)."""
    return {w for w in re.findall(r"\w{3,}", text.lower()) if w not in _STOP_WORDS}


class _Counted:
    """Chunks passed through, counted."""

    def __init__(self, chunks: Iterable[ChunkLike]) -> None:
        self._chunks = chunks
        self.n = 0

    def __iter__(self) -> Iterator[ChunkLike]:
        for chunk in self._chunks:
            self.n += 1
            yield chunk


def _blocks(items: Iterable[Passage], size: int) -> Iterator[list[Passage]]:
    block: list[Passage] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def _keep(heap: list[tuple[float, int, Passage]], item: tuple[float, int, Passage], n: int) -> None:
    """Keep the ``n`` best, one passage per text: a sentence repeated through the input (a log
    line, a boilerplate notice) would otherwise fill every place."""
    if len(heap) >= n and item[:2] <= heap[0][:2]:
        return  # below every kept one (a kept copy of its text scores at least as high)
    text = item[2].text
    for i, kept in enumerate(heap):
        if kept[2].text == text:
            if item[:2] > kept[:2]:
                heap[i] = item
                heapq.heapify(heap)
            return
    if len(heap) < n:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def _query_ids(question: str, embedder: TextEmbedder) -> list[int]:
    """The question's word pieces that can name something (not function words, not punctuation)."""
    skip = {i for w in _STOP + _PUNCT for i in embedder.tokenize(w)}
    return list(dict.fromkeys(i for i in embedder.tokenize(question) if i not in skip))


def _static_scores(block: Sequence[Passage], query: list[int], embedder: TextEmbedder) -> np.ndarray:
    """MaxSim of each passage: for each question word piece, its best cosine with the passage's
    pieces, averaged with the piece's inverse document frequency in the block as its weight."""
    import numpy as np

    table = static_vectors()
    ids = [[i for i in embedder.tokenize(p.text) if i < len(table)] for p in block]
    df: dict[int, int] = {}
    for row in ids:
        for i in set(row):
            df[i] = df.get(i, 0) + 1
    n = len(block)
    q = [i for i in query if i < len(table)]
    weights = np.array([math.log((n + 1) / (df.get(i, 0) + 0.5)) for i in q], dtype=np.float32).clip(min=0.05)
    qv = table[q]
    out = np.full(n, -1.0, dtype=np.float32)
    step = 512  # passages per matrix product: about 15k word pieces x 256 floats, 16 MB
    for lo in range(0, n, step):
        rows = ids[lo:lo + step]
        flat = np.fromiter((i for row in rows for i in row), dtype=np.int64)
        if not len(flat):
            continue
        sims = qv @ table[flat].T  # (query pieces, passage pieces)
        lengths = np.array([len(r) for r in rows])
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        nonempty = lengths > 0
        best = np.maximum.reduceat(sims, offsets[nonempty], axis=1)  # (query pieces, passages)
        out[lo:lo + len(rows)][nonempty] = (weights @ best) / weights.sum()
    return out


def _vectors(texts: list[str], embedder: TextEmbedder, cache: VectorCache | None, found: Found) -> np.ndarray:
    import numpy as np

    cached = cache.get(texts, embedder.width) if cache is not None else [None] * len(texts)
    missing = [i for i, v in enumerate(cached) if v is None]
    fresh = embedder.embed([texts[i] for i in missing]) if missing else np.zeros((0, 0), np.float32)
    if cache is not None and missing:
        cache.put([texts[i] for i in missing], fresh)
    found.embedded += len(missing)
    found.cached += len(texts) - len(missing)
    rows = [v for v in cached]
    for j, i in enumerate(missing):
        rows[i] = fresh[j]
    return np.stack([np.asarray(r, dtype=np.float32) for r in rows])


def bm25_scores(texts: Sequence[str], query: str) -> list[float]:
    """BM25 score of each text against ``query`` (bm25s, English stop words removed)."""
    import bm25s

    if not texts:
        return []
    words = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
    if not words:
        return [0.0] * len(texts)
    corpus = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    try:
        retriever.index(corpus, show_progress=False)
    except ValueError:  # no text of the block has a word (emoji, rules, box drawing): nothing matches
        return [0.0] * len(texts)
    return [float(s) for s in retriever.get_scores(list(words))]
