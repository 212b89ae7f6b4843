"""Issue 21's bar for documents not in English: the shipped embedding model is English-trained,
so on a German document hybrid retrieval must be no worse than BM25 alone. Real embedding
model, real document (benchmarks/data/de_chronik.txt, ~6,000 words, 12 questions), the same
code as `python benchmarks/retrieval_languages.py`, which also reports French, English and
the semantic mode.

Measured margins (checked before asserting): every answer sentence BM25 puts in its top 3 is
in hybrid's top 3 with a fused-score lead of at least 0.2 over hybrid's 4th passage, and each
worded question hybrid ranks first leads its runner-up by at least 0.11. Paraphrased German
questions are found by neither mode within 3; that is measured, not asserted.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from askgpt.runtime.retrieval.cache import VectorCache
from askgpt.runtime.retrieval.model import shipped_embedder

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "retrieval_languages.py"


def _bench() -> ModuleType:
    # Loaded by path: putting benchmarks/ on sys.path would let its script names (convert,
    # render, vision...) shadow modules for the rest of the session.
    spec = importlib.util.spec_from_file_location("retrieval_languages_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.mark.parametrize("language", bench.LANGUAGES)
def test_each_set_is_what_it_says(language: str) -> None:
    """Worded questions share rarer words with their sentence, paraphrased ones share none,
    every answer value is in an answer sentence, and every answer sentence is one passage."""
    data = bench.load(language)
    assert {q.kind for q in data.questions} == {"worded", "paraphrased"}
    assert sum(q.kind == "worded" for q in data.questions) * 2 == len(data.questions)
    for q in data.questions:
        shared = bench.shared_words(language, q)
        if q.kind == "paraphrased":
            assert not shared, (q.text, shared)
        else:
            assert len(shared) >= 2, (q.text, shared)
        for answer in q.answers:
            assert any(answer in s for s in q.sentences), (q.text, answer)
    # Raises if a sentence is cut into several passages or merged with its neighbour.
    chunks = bench.chunks_of(data, shipped_embedder())
    assert len(bench.answer_passages(data, chunks)) == len(data.questions)


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[int | None]]]:
    """Ranks of every German question's answer sentences under bm25 and hybrid."""
    embedder = shipped_embedder()
    data = bench.load("de")
    chunks = bench.chunks_of(data, embedder)
    targets = bench.answer_passages(data, chunks)
    # A vector cache, as askgpt uses: the questions share most candidates, so each sentence is embedded once.
    cache = VectorCache(tmp_path_factory.mktemp("vectors"), embedder.key)
    out = {}
    for mode in ("bm25", "hybrid"):
        out[mode], _ = bench.ranks(data, mode, embedder, chunks, targets, cache=cache)
    return out


def test_hybrid_is_no_worse_than_bm25_on_german(german: dict[str, list[list[int | None]]]) -> None:
    data = bench.load("de")
    bm25 = [bench.found_at(r, 3) for r in german["bm25"]]
    hybrid = [bench.found_at(r, 3) for r in german["hybrid"]]
    assert sum(bm25) >= 5  # the worded questions: BM25 is the baseline being protected
    assert sum(hybrid) >= sum(bm25)
    lost = [q.text for q, b, h in zip(data.questions, bm25, hybrid, strict=True) if b and not h]
    assert not lost, f"BM25 finds these within 3 and hybrid does not: {lost}"


def test_hybrid_keeps_bm25s_first_places_on_worded_german_questions(
        german: dict[str, list[list[int | None]]]) -> None:
    data = bench.load("de")
    worded = [i for i, q in enumerate(data.questions) if q.kind == "worded"]
    bm25 = sum(bench.found_at(german["bm25"][i], 1) for i in worded)
    hybrid = sum(bench.found_at(german["hybrid"][i], 1) for i in worded)
    assert bm25 >= 4
    assert hybrid >= bm25
