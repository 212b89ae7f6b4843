"""K few-shot examples drawn from a pool for one input.

- ``similar``: the K pool examples nearest the input, the most similar last (Liu et al.
  2021, "What Makes Good In-Context Examples for GPT-3?": the last example weighs most);
- ``random``: label-balanced draws (round-robin over the labels, random within one) when the
  pool's outputs form a small label set, else plain random; repeatable with the seed;
- ``diverse``: maximal marginal relevance (Carbonell & Goldstein 1998): each pick maximizes
  ``LAMBDA * sim(input, x) - (1 - LAMBDA) * max sim(x, picked)``, so the picks stay near the
  input but spread over the pool instead of repeating one neighbour.

Similarity is a seam (`Similarity`): by meaning, the cosine of the shipped sentence-embedding
model's vectors (runtime.retrieval.similarity), or BM25 over words where that model is absent.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from enum import Enum

from askgpt.runtime.choices import choice
from askgpt.runtime.errors import UsageError
from askgpt.runtime.prompting.request import Example


class Select(str, Enum):
    RANDOM = "random"
    SIMILAR = "similar"
    DIVERSE = "diverse"


def parse_select(value: str | Select) -> Select:
    return choice(Select, value, "--select")


# similarity(texts, queries)[q][i]: how close ``texts[i]`` is to ``queries[q]`` (higher is
# closer; any scale, but 0 for nothing in common).
Similarity = Callable[[Sequence[str], Sequence[str]], list[list[float]]]

# Diverse: the weight of closeness to the input against distance from the picks so far.
LAMBDA = 0.5
# Outputs form a label set when there are at most this many distinct ones, and at most
# half as many as examples (each label then has two examples on average).
MAX_LABELS = 32


def bm25_similarity(texts: Sequence[str], queries: Sequence[str]) -> list[list[float]]:
    """BM25 (bm25s, English stop words removed) of each text against each query; the
    texts are indexed once."""
    import bm25s

    if not texts:
        return [[] for _ in queries]
    corpus = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
    if not corpus.vocab:  # nothing but stop words and one-letter words: nothing in common
        return [[0.0] * len(texts) for _ in queries]
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    rows = []
    for query in queries:
        words = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        rows.append([float(s) for s in retriever.get_scores(list(words))] if words else [0.0] * len(texts))
    return rows


def default_similarity() -> Similarity:
    """By meaning when the shipped embedding model is there, else by shared words."""
    from askgpt.runtime.retrieval.similarity import shipped_similarity

    return shipped_similarity() or bm25_similarity


def label_set(outputs: Sequence[str]) -> tuple[str, ...] | None:
    """The distinct outputs in first-seen order when they form a small label set, else None."""
    distinct = tuple(dict.fromkeys(o.strip() for o in outputs))
    return distinct if len(distinct) <= min(MAX_LABELS, len(outputs) // 2) else None


def select_examples(pool: Sequence[Example], query: str, k: int, how: Select, seed: int = 0, *,
                    similarity: Similarity | None = None) -> tuple[Example, ...]:
    """``k`` examples of ``pool`` for the input ``query`` (all of them, ordered by the
    method, when ``k`` is the pool's size or more). The same arguments give the same picks."""
    if k < 0:
        raise UsageError("--shots must be 0 or more")
    k = min(k, len(pool))
    if k == 0:
        return ()
    rng = random.Random(seed)
    if how is Select.RANDOM:
        return _random(pool, k, rng)
    sim = similarity or default_similarity()
    # Ties (no words in common) are broken by a seeded draw, not by pool order, so a query
    # that matches nothing does not always get the pool's first examples.
    tiebreak = list(range(len(pool)))
    rng.shuffle(tiebreak)
    texts = [e.input for e in pool]
    relevance = sim(texts, [query])[0]
    if how is Select.SIMILAR:
        nearest = sorted(range(len(pool)), key=lambda i: (-relevance[i], tiebreak[i]))[:k]
        return tuple(pool[i] for i in reversed(nearest))  # the most similar last
    return _diverse(pool, texts, relevance, k, sim, tiebreak)


def _random(pool: Sequence[Example], k: int, rng: random.Random) -> tuple[Example, ...]:
    labels = label_set([e.output for e in pool])
    if labels is None:
        return tuple(rng.sample(list(pool), k))
    by_label = {label: [e for e in pool if e.output.strip() == label] for label in labels}
    for group in by_label.values():
        rng.shuffle(group)
    order = list(labels)
    rng.shuffle(order)
    picked: list[Example] = []
    while len(picked) < k:
        for label in order:
            if by_label[label] and len(picked) < k:
                picked.append(by_label[label].pop())
    # Round-robin order would always end on the same label, and the last example's label
    # pulls the answer toward it (Zhao et al. 2021): the picks are shuffled.
    rng.shuffle(picked)
    return tuple(picked)


def _diverse(pool: Sequence[Example], texts: list[str], relevance: list[float], k: int, sim: Similarity,
             tiebreak: list[int]) -> tuple[Example, ...]:
    def scaled(row: list[float]) -> list[float]:
        top = max(row, default=0.0)
        return [s / top if top > 0 else 0.0 for s in row]

    rel = scaled(relevance)
    closest = [0.0] * len(pool)  # each candidate's similarity to the nearest pick so far
    picked: list[int] = []
    left = set(range(len(pool)))
    while len(picked) < k:
        best = max(left, key=lambda i: (LAMBDA * rel[i] - (1 - LAMBDA) * closest[i], -tiebreak[i]))
        picked.append(best)
        left.discard(best)
        if left and len(picked) < k:
            row = scaled(sim(texts, [texts[best]])[0])
            closest = [max(c, r) for c, r in zip(closest, row, strict=True)]
    # The picks in order of relevance, the most relevant last (as for similar).
    picked.sort(key=lambda i: (relevance[i], -tiebreak[i]))
    return tuple(pool[i] for i in picked)
