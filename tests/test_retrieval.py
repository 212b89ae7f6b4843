"""Evidence retrieval (runtime.retrieval): sentence passages with their places, static recall and
re-ranking with the shipped all-MiniLM-L6-v2, the on-disk vector cache, score fusion, aggregate
questions, and the long-context manager's use of it all.

The embedding model is real (the file askgpt ships) and so is the prose (the standard library's
docstrings, as `bench needle` plants into); the scripted engine stands in only for the answering
model, whose prompt is what is checked. Nothing here loads the built-in answering model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from fakes import ScriptedEngine
from hypothesis import given, settings
from hypothesis import strategies as st

import askgpt.runtime.documents.strategies as strategies
from askgpt.runtime.bench.needle import plant
from askgpt.runtime.documents.chunking import Chunk, chunk_text
from askgpt.runtime.documents.strategies import (
    LongContext,
    LongContextConfig,
    LongContextReport,
    Strategy,
    is_aggregate_question,
)
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import Document, Request
from askgpt.runtime.retrieval.cache import VectorCache
from askgpt.runtime.retrieval.model import TextEmbedder, shipped_embedder
from askgpt.runtime.retrieval.passages import MAX_WORDS, Passage, passages
from askgpt.runtime.retrieval.rank import DENSE_FLOOR, Found, RankConfig, Retrieval, Scored, find_evidence, fuse


def norm(text: str) -> str:
    return " ".join(text.split())


def words(text: str) -> int:
    return len(text.split())


# --- passages -------------------------------------------------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé0123456789-,;", min_size=1, max_size=8)
# A sentence's last word has 3+ letters or digits: "a." or "Dr." before a period is read as an
# initial or an abbreviation, not a sentence end (passages._ABBREVIATION).
LAST_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=3, max_size=8)
SENTENCE = st.builds(lambda ws, last, gap, end: gap.join([*ws, last]) + end,
                     st.lists(WORD, min_size=0, max_size=5), LAST_WORD, st.sampled_from([" ", "  ", "\t"]),
                     st.sampled_from([".", "!", "?", "...", "?!"]))
# A line is whole sentences; a paragraph is lines; paragraphs are parted by a blank line.
LINE = st.lists(SENTENCE, min_size=1, max_size=3)
PARAGRAPH = st.lists(LINE, min_size=1, max_size=4)
DOC = st.lists(PARAGRAPH, min_size=1, max_size=8)
# Free text: hard-wrapped sentences, lines without sentence ends, blank runs, long lines.
FREE = st.lists(st.one_of(SENTENCE, WORD, st.just(""), st.just("   "), st.just("word " * 70),
                          st.just("x" * 90), st.just("One sentence. " * 12)),
                min_size=1, max_size=40).map("\n".join)


def render(doc: list[list[list[str]]], para_gap: str) -> tuple[str, list[str]]:
    """The text of ``doc`` and its sentences in order."""
    text = para_gap.join("\n".join(" ".join(line) for line in para) for para in doc)
    return text, [norm(s) for para in doc for line in para for s in line]


def cut(text: str, max_tokens: int, overlap: int, source: str = "doc") -> list[Passage]:
    """Passages of ``text`` chunked with one token per character (small chunks, many seams)."""
    return list(passages(chunk_text(text, source, len, max_tokens=max_tokens, overlap=overlap)))


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def check_places(text: str, ps: Sequence[Passage]) -> None:
    """Each passage is its span of ``text``, and its lines are those of its first and last word."""
    lines = text.split("\n")
    for p in ps:
        span = text[p.start:p.end]
        assert norm(span) == p.text, p
        first = p.start + (len(span) - len(span.lstrip()))
        last = p.start + len(span.rstrip()) - 1
        assert (p.first_line, p.last_line) == (line_of(text, first), line_of(text, last)), (p, span)
        assert p.text in norm(" ".join(lines[p.first_line - 1:p.last_line])), p


def check_neighbours(text: str, ps: Sequence[Passage]) -> None:
    """``before``/``after`` are the passages next to it in the same paragraph, else empty."""
    for a, b in zip(ps, ps[1:], strict=False):
        same = a.source == b.source and not re.search(r"\n[ \t]*\n", text[a.end:b.start])
        assert b.before == (a.text if same else ""), (a, b)
        assert a.after == (b.text if same else ""), (a, b)
    if ps:
        assert ps[0].before == "" and ps[-1].after == ""


@settings(max_examples=150, deadline=None)
@given(DOC, st.sampled_from(["\n\n", "\n \n", "\n\n\n"]), st.integers(60, 160), st.integers(0, 40))
def test_every_sentence_is_one_passage_in_order_with_its_lines(
        doc: list[list[list[str]]], para_gap: str, max_tokens: int, overlap: int) -> None:
    text, sentences = render(doc, para_gap)
    ps = cut(text, max_tokens, overlap)
    # Sentences fit a chunk, so chunks cut between them: each is exactly one passage, once,
    # whatever the chunks' overlap, in the input's order.
    assert [p.text for p in ps] == sentences
    assert [p.seq for p in ps] == list(range(len(ps)))
    check_places(text, ps)
    check_neighbours(text, ps)


@settings(max_examples=150, deadline=None)
@given(FREE, st.integers(12, 120), st.integers(0, 40))
def test_any_text_is_covered_once_with_right_lines(text: str, max_tokens: int, overlap: int) -> None:
    ps = cut(text, max_tokens, overlap)
    # Nothing lost, nothing twice (the chunks' overlap), in order, even where a chunk cuts a
    # sentence (or, with no space to cut at, a word: spaces are compared apart).
    assert "".join(p.text.replace(" ", "") for p in ps) == "".join(text.split())
    assert [p.seq for p in ps] == list(range(len(ps)))
    assert all(p.text and words(p.text) <= MAX_WORDS for p in ps)
    check_places(text, ps)
    check_neighbours(text, ps)


def test_a_line_without_a_sentence_end_has_its_own_line_number() -> None:
    # Found by the property above; kept as a plain example. A passage that ends at a line end
    # without a full stop took the newline with it (last_line one too far), and one that starts
    # a chunk after a blank line took the blank line (first_line one too early).
    text = "log line one\nlog line two\n\nother para here\n"
    ps = cut(text, 14, 4)
    assert [(p.text, p.first_line, p.last_line) for p in ps][:3] == [
        ("log line one", 1, 1), ("log line two", 2, 2), ("other para", 4, 4)]
    assert ps[1].after == ""  # a blank line parts them: another paragraph is not context
    whole = cut(text, 200, 0)
    assert [(p.text, p.first_line, p.last_line) for p in whole] == [
        ("log line one log line two", 1, 2), ("other para here", 4, 4)]


def test_a_quoted_sentence_keeps_its_closing_quote() -> None:
    text = 'She said "the code is 4417." Then she left. (It was late.) [Done!] \'Fine.\''
    assert " ".join(p.text for p in cut(text, 200, 0)) == text


def test_passages_of_two_documents_never_borrow_each_others_neighbours() -> None:
    one, two = "First doc ends here.", "Second doc starts here. It goes on."
    chunks = [*chunk_text(one, "a.txt", len, max_tokens=100), *chunk_text(two, "b.txt", len, max_tokens=100)]
    ps = list(passages(chunks))
    assert [(p.source, p.seq, p.first_line) for p in ps] == [("a.txt", 0, 1), ("b.txt", 1, 1), ("b.txt", 2, 1)]
    assert ps[0].after == "" and ps[1].before == "" and ps[1].after == "It goes on."
    assert ps[0].where == "a.txt, line 1"


def test_a_log_without_sentence_ends_is_cut_into_short_passages() -> None:
    lines = [f"2024-05-{i % 28 + 1:02d} 12:{i % 60:02d} worker-{i % 7} INFO request {i} handled in {i * 3} ms"
             for i in range(500)]
    lines[100] = " ".join(f"field{k}=value{k}" for k in range(150))  # one line far past MAX_WORDS
    text = "\n".join(lines) + "\n"
    ps = cut(text, 400, 40)
    assert all(words(p.text) <= MAX_WORDS for p in ps)
    assert " ".join(p.text for p in ps) == norm(text)
    assert len(ps) >= len(lines) * words(lines[0]) // MAX_WORDS
    assert lines[100] in " ".join(p.text for p in ps if p.first_line <= 101 <= p.last_line)
    check_places(text, ps)


# --- the shipped model: recall and re-ranking ------------------------------------------------------

@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    # One thread: on this machine's two shared cores, llama.cpp's two threads waiting on each
    # other took 30-700 ms a sentence against 10-16 ms for one (measured while another job ran).
    return shipped_embedder(1)


class Recording:
    """The real embedder, remembering every vector it made (to measure cosines and count work)."""

    def __init__(self, inner: TextEmbedder) -> None:
        self._inner = inner
        self.key, self.width = inner.key, inner.width
        self.vectors: dict[str, np.ndarray] = {}
        self.calls = 0

    def tokenize(self, text: str) -> list[int]:
        return self._inner.tokenize(text)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = self._inner.embed(texts)
        self.vectors.update(zip(texts, out, strict=True))
        self.calls += len(texts)
        return out

    def close(self) -> None:
        pass


# Facts asked in other words: no word of four letters or more in common (checked below), so BM25
# has nothing to go on. Written for this file (bench needle's templates are its own).
PARAPHRASES = [
    ("The retired sailor next door keeps forty beehives behind his garage.",
     "How many insect colonies does the old mariner living beside us look after?"),
    ("My grandmother learned to fly small planes when she turned seventy.",
     "At what age did the elderly lady of our family start piloting aircraft?"),
    ("Doctor Okafor repairs antique clocks in the cellar every Sunday evening.",
     "What does the physician fix in the basement at the end of the weekend?"),
    ("The bakery on Mill Lane sells its bread only to people who arrive on bicycles.",
     "Which customers may buy loaves from that pastry shop?"),
]
# The fact's cosine with the question over the best other candidate's. Measured (haystack seeds
# 11 and 23): gaps 0.126-0.160, 0.604-0.634, 0.352-0.360, 0.218-0.293 (facts at 0.31, 0.76, 0.51,
# 0.43; the best other candidates 0.13-0.21). Asserted: about half the smallest.
COSINE_MARGIN = 0.06


def long_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4}


def prose_with(facts: list[tuple[float, str]], n_words: int, seed: int) -> str:
    """About ``n_words`` words of real prose with each fact as a paragraph at its depth."""
    return plant(n_words, facts, "prose", seed, words)[0]


def word_chunks(text: str, source: str = "doc") -> list[Chunk]:
    return chunk_text(text, source, words, max_tokens=200, overlap=24)


def rank_of(found: Found, text: str) -> int | None:
    return next((i for i, s in enumerate(found.ranked) if s.passage.text == text), None)


@pytest.mark.parametrize(("fact", "question"), PARAPHRASES, ids=[q.split()[3] for _, q in PARAPHRASES])
def test_a_paraphrased_fact_ranks_first_by_meaning_and_not_by_words(
        embedder: TextEmbedder, tmp_path: Path, fact: str, question: str) -> None:
    assert not long_words(fact) & long_words(question)  # the premise: no shared word to find it by
    text = prose_with([(0.6, fact)], 4000, seed=11)
    chunks = word_chunks(text)

    by_words = find_evidence(chunks, question, RankConfig(Retrieval.BM25), embedder, None)
    assert by_words.passages > 200 and by_words.embedded == 0
    assert rank_of(by_words, fact) != 0

    recording = Recording(embedder)
    cache = VectorCache(tmp_path, embedder.key)
    # A recall stage narrower than the input (as on a long one): static vectors must keep the fact.
    narrow = RankConfig(Retrieval.SEMANTIC, static_keep=96, bm25_keep=16)
    by_meaning = find_evidence(chunks, question, narrow, recording, cache)
    assert rank_of(by_meaning, fact) == 0
    # Static recall left the full model about a hundred candidates, not the ~260 sentences.
    assert 1 < recording.calls < by_meaning.passages / 2
    q = recording.vectors[question]
    cosines = {t: float(v @ q) for t, v in recording.vectors.items() if t != question}
    best = cosines.pop(fact)
    assert best - max(cosines.values()) >= COSINE_MARGIN, (best, max(cosines.items(), key=lambda kv: kv[1]))

    hybrid = find_evidence(chunks, question, RankConfig(Retrieval.HYBRID, static_keep=96, bm25_keep=16),
                           recording, cache)
    assert rank_of(hybrid, fact) == 0
    assert hybrid.embedded == 0 and hybrid.cached == recording.calls  # the same candidates, from the cache


# Look-alikes that differ only in the city (cities and wording written for this file).
LOOKALIKE = "The {city} botanical garden waters its orchids from well number {n}."
LOOKALIKE_QUESTION = "Which well supplies the orchids at the {city} botanical garden?"
TOWNS = ["Bergen", "Porto", "Leeds", "Graz", "Turin", "Ghent", "Malmo", "Brno"]


def test_among_eight_look_alikes_hybrid_ranks_the_asked_citys_first(embedder: TextEmbedder, tmp_path: Path) -> None:
    facts = [LOOKALIKE.format(city=c, n=10 + 7 * i) for i, c in enumerate(TOWNS)]
    text = prose_with([((i + 0.5) / 8, f) for i, f in enumerate(facts)], 3000, seed=5)
    chunks = word_chunks(text)
    cache = VectorCache(tmp_path, embedder.key)
    for asked in (0, 3, 7):
        found = find_evidence(chunks, LOOKALIKE_QUESTION.format(city=TOWNS[asked]), RankConfig(Retrieval.HYBRID),
                              embedder, cache)
        assert found.ranked[0].passage.text == facts[asked], [s.passage.text for s in found.ranked[:3]]
        others = [s.score for s in found.ranked if s.passage.text in facts and s.passage.text != facts[asked]]
        assert len(others) == 7  # the look-alikes were all candidates, and all ranked below


# --- the vector cache ------------------------------------------------------------------------------

def small_text() -> tuple[str, str]:
    """Fewer passages than static recall keeps, so every question's candidates are all of them."""
    fact = "The retired sailor next door keeps forty beehives behind his garage."
    return prose_with([(0.5, fact)], 700, seed=3), fact


def test_a_second_question_embeds_only_itself_and_a_new_cache_object_still_hits(
        embedder: TextEmbedder, tmp_path: Path) -> None:
    text, fact = small_text()
    chunks = word_chunks(text)
    # Candidates are kept once per text: a sentence the prose filler repeats is embedded once.
    distinct = len({p.text for p in passages(chunks)})
    first = find_evidence(chunks, "Who keeps bees?", RankConfig(Retrieval.HYBRID), embedder,
                          VectorCache(tmp_path, embedder.key))
    assert first.passages < RankConfig(Retrieval.HYBRID).static_keep  # the premise above
    assert first.embedded == distinct + 1 and first.cached == 0

    cache = VectorCache(tmp_path, embedder.key)  # as a second run of askgpt opens it
    second = find_evidence(chunks, "What does the old mariner look after?", RankConfig(Retrieval.HYBRID),
                           embedder, cache)
    assert second.embedded == 1 and second.cached == distinct
    assert rank_of(second, fact) == 0
    again = find_evidence(chunks, "Who keeps bees?", RankConfig(Retrieval.HYBRID), embedder,
                          VectorCache(tmp_path, embedder.key))
    assert again.embedded == 0 and again.cached == distinct + 1
    assert [s.passage.seq for s in again.ranked] == [s.passage.seq for s in first.ranked]
    other_model = find_evidence(chunks, "Who keeps bees?", RankConfig(Retrieval.HYBRID), embedder,
                                VectorCache(tmp_path, embedder.key + "-other"))
    assert other_model.cached == 0  # vectors are keyed by the model that made them


def test_cache_info_shows_the_vectors_and_cache_clear_deletes_them(embedder: TextEmbedder, tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    from askgpt.runtime.retrieval.cache import cache_bytes
    from conftest import ASKGPT_BIN

    home = tmp_path / "home"
    folder = home / "cache" / "vectors"  # where ASKGPT_HOME puts it (runtime.store.settings)
    text, _ = small_text()
    find_evidence(word_chunks(text), "Who keeps bees?", RankConfig(Retrieval.HYBRID), embedder,
                  VectorCache(folder, embedder.key))
    held = cache_bytes(folder)
    assert held > 0
    env = {**os.environ, "ASKGPT_HOME": str(home)}
    info = subprocess.run([ASKGPT_BIN, "cache", "info", "--json"], capture_output=True, env=env, check=True)
    vectors = json.loads(info.stdout)["vectors"]
    assert vectors["folder"] == str(folder) and vectors["bytes"] == held
    cleared = subprocess.run([ASKGPT_BIN, "cache", "clear"], capture_output=True, env=env, check=True)
    assert cleared.stdout.startswith(b"freed") and cache_bytes(folder) == 0
    assert not list(folder.iterdir())


def test_a_cache_folder_that_cannot_be_made_is_skipped(embedder: TextEmbedder, tmp_path: Path) -> None:
    text, fact = small_text()
    blocker = tmp_path / "in-the-way"
    blocker.write_text("a file where the cache folder would go")
    distinct = len({p.text for p in passages(word_chunks(text))})
    for folder in (blocker, blocker / "vectors"):
        found = find_evidence(word_chunks(text), "What does the old mariner look after?",
                              RankConfig(Retrieval.HYBRID), embedder, VectorCache(folder, embedder.key))
        assert rank_of(found, fact) == 0
        assert found.cached == 0 and found.embedded == distinct + 1
    assert blocker.read_text() == "a file where the cache folder would go"


# --- fusion --------------------------------------------------------------------------------------

def passage(seq: int) -> Passage:
    return Passage(seq, "doc", f"sentence {seq}", seq + 1, seq + 1, 10 * seq, 10 * seq + 9)


def seqs(scored: list[Scored]) -> list[int]:
    return [s.passage.seq for s in scored]


def test_bm25_keeps_only_passages_that_share_a_word() -> None:
    ps = [passage(i) for i in range(4)]
    ranked = fuse(ps, {0: 1.0, 1: 0.0, 3: 4.0}, {0: 0.1, 1: 0.9, 2: 0.9, 3: 0.1}, Retrieval.BM25)
    assert seqs(ranked) == [3, 0]


def test_semantic_keeps_only_passages_near_enough_in_meaning() -> None:
    ps = [passage(i) for i in range(5)]
    dense = {0: DENSE_FLOOR - 0.05, 1: DENSE_FLOOR + 0.05, 2: 0.8, 3: float("nan")}  # 4: never embedded
    ranked = fuse(ps, {0: 9.0, 3: 9.0, 4: 9.0}, dense, Retrieval.SEMANTIC)
    assert seqs(ranked) == [2, 1]
    assert [s.score for s in ranked] == [s.dense for s in ranked]


def test_hybrid_puts_a_paraphrase_above_a_low_cosine_word_match() -> None:
    paraphrase, word_match, unrelated, both = (passage(i) for i in range(4))
    # As measured: a paraphrased fact 0.43-0.76 with no word in common; the best BM25 match in
    # prose around 0.1 (tests above). A passage that has both wins.
    bm25 = {1: 5.0, 3: 2.0}
    dense = {0: 0.45, 1: 0.1, 2: 0.05, 3: 0.45}
    ranked = fuse([paraphrase, word_match, unrelated, both], bm25, dense, Retrieval.HYBRID)
    assert seqs(ranked) == [3, 0, 1]  # the unrelated one (no word, low cosine) is not evidence
    assert ranked[1].bm25 == 0 and ranked[2].bm25 == 5.0


def test_equal_scores_keep_document_order() -> None:
    ps = [passage(i) for i in (5, 2, 7)]
    assert seqs(fuse(ps, {}, {5: 0.5, 2: 0.5, 7: 0.5}, Retrieval.SEMANTIC)) == [2, 5, 7]


# --- aggregate questions ---------------------------------------------------------------------------

@pytest.mark.parametrize("question", [
    "How many times does the bell ring?",
    "List every town the captain visited.",
    "Name all the towns on the coast.",
    "What are all the dates in the letter?",
    "How many ships sank?",
    "Find all mentions of the harbour master.",
    "List the names of the witnesses.",
])
def test_aggregate_questions(question: str) -> None:
    assert is_aggregate_question(question)


@pytest.mark.parametrize("question", [
    "Where do they meet each week?",
    "What does he eat every day?",
    "Summarize this",
    "What is this?",
    "Summarize all the chapters.",
    "Who betrayed the captain?",
    "Explain every detail of this.",
])
def test_questions_that_are_not_aggregates(question: str) -> None:
    assert not is_aggregate_question(question)


# --- the long-context manager ----------------------------------------------------------------------

@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch, embedder: TextEmbedder) -> list[Recording]:
    """The strategies' embedding model: the real one (one thread, see above), each load recorded."""
    loaded: list[Recording] = []

    def load() -> TextEmbedder:
        loaded.append(Recording(embedder))
        return loaded[-1]

    monkeypatch.setattr(strategies, "shipped_embedder", load)
    return loaded


def ask_long(text: str, question: str, config: LongContextConfig | None = None, source: str = "book.txt",
             ) -> tuple[ScriptedEngine, LongContext, LongContextReport]:
    engine = ScriptedEngine(answer="scripted answer", n_ctx=4096)
    manager = LongContext(engine, config or LongContextConfig())
    reply, report = manager.answer(Request(question, documents=(Document(source, text),)), GenerationConfig(64))
    assert reply.text() == "scripted answer" and report is not None
    return engine, manager, report


def line_number(text: str, sentence: str) -> int:
    return text.split("\n").index(sentence) + 1


def bytes_prose(facts: list[tuple[float, str]], n_bytes: int, seed: int) -> str:
    """About ``n_bytes`` tokens of the scripted engine (one a byte) of prose with the facts planted."""
    return plant(n_bytes, facts, "prose", seed, lambda t: len(t.encode()))[0]


def test_the_answer_from_evidence_favours_the_evidence_s_tokens_and_only_then(loads: list[Recording]) -> None:
    from askgpt.runtime.documents.strategies import COPY_LOGIT
    from askgpt.runtime.engine.sampling import CopyBias, SamplingConfig

    fact, question = PARAPHRASES[2]
    text = bytes_prose([(0.55, fact)], 20_000, seed=8)
    engine, manager, report = ask_long(text, question)
    assert report.strategy is Strategy.RETRIEVE and manager.last_request is not None
    (doc,) = manager.last_request.documents
    assert engine.samplings[-1].copy_bias == CopyBias(doc.text, COPY_LOGIT) and COPY_LOGIT > 0
    engine, _, _ = ask_long(text, question, LongContextConfig(copy_logit=0))
    assert engine.samplings[-1].copy_bias is None
    engine, _, report = ask_long(text, "How many times is a cottage mentioned?")
    assert report.gather and engine.samplings[-1].copy_bias is None  # a count is not copied
    # Nothing matches: the answer reads the model's own notes, not evidence to copy.
    engine, _, report = ask_long(text, "Qwertyuiop zanzibarian flugelhorns?",
                                 LongContextConfig(retrieval=Retrieval.BM25))
    assert report.used == 0 or report.strategy is not Strategy.RETRIEVE
    assert not report.from_evidence and engine.samplings[-1].copy_bias is None
    short = ScriptedEngine(answer="scripted answer", n_ctx=4096)  # read whole: no evidence chosen
    LongContext(short, LongContextConfig()).answer(Request(question, documents=(Document("a.txt", fact),)),
                                                  GenerationConfig(64))[0].text()
    assert short.samplings[-1].copy_bias is None
    own = CopyBias("the caller's text", 3.0)  # a caller's own bias is left as it is
    engine = ScriptedEngine(answer="scripted answer", n_ctx=4096)
    LongContext(engine, LongContextConfig()).answer(Request(question, documents=(Document("book.txt", text),)),
                                                   GenerationConfig(64, SamplingConfig(copy_bias=own)))[0].text()
    assert engine.samplings[-1].copy_bias == own


def test_a_question_reads_one_block_of_evidence_strongest_last_and_cites_its_line(loads: list[Recording]) -> None:
    fact, question = PARAPHRASES[2]
    text = bytes_prose([(0.55, fact)], 20_000, seed=8)
    engine, manager, report = ask_long(text, question)
    assert report.strategy is Strategy.RETRIEVE and report.retrieval == "hybrid" and len(loads) == 1
    assert report.embedded == loads[0].calls > 0 and report.chunks > 50
    assert manager.last_request is not None
    (doc,) = manager.last_request.documents
    assert doc.text.split("\n\n")[-1].find(fact) >= 0  # the strongest evidence nearest the question
    assert len(doc.text.encode()) < 2000  # evidence, not chunks
    assert fact in engine.prompts[-1] and question in engine.prompts[-1]
    assert (f"book.txt, line {line_number(text, fact)}", fact) in report.quotes


AGGREGATE = "The lighthouse keeper saw a whale on {day}."
DAYS = ["3 March", "19 April", "2 June", "28 August", "11 November"]


def test_an_aggregate_question_gathers_every_match_once_in_document_order(loads: list[Recording]) -> None:
    facts = [AGGREGATE.format(day=d) for d in DAYS]
    planted = [(0.05, facts[0]), (0.25, facts[1]), (0.45, facts[2]), (0.5, facts[2]), (0.7, facts[3]),
               (0.93, facts[4])]  # the third one twice
    text = bytes_prose(planted, 20_000, seed=4)
    assert text.count(facts[2]) == 2
    engine, manager, report = ask_long(text, "List all the dates on which the keeper saw a whale.")
    assert report.strategy is Strategy.RETRIEVE and report.gather
    quoted = [q for _, q in report.quotes]
    assert [f for f in facts if any(f in q for q in quoted)] == facts  # all five
    assert sum(q.count(facts[2]) for q in quoted) == 1  # the repeat merged
    assert manager.last_request is not None
    (doc,) = manager.last_request.documents
    at = [doc.text.find(f) for f in facts]
    assert min(at) >= 0 and doc.text.count(facts[2]) == 1
    first_lines = [int(re.findall(r"lines? (\d+)", where)[0]) for where, _ in report.quotes]
    assert first_lines == sorted(first_lines)  # the citations in document order
    assert at == sorted(at), doc.text  # and so the model reads them


def test_bm25_retrieval_never_loads_the_embedding_model(loads: list[Recording]) -> None:
    fact = "The passphrase for the Brno greenhouse is 5150."
    text = bytes_prose([(0.3, fact)], 20_000, seed=2)
    engine, manager, report = ask_long(text, "What is the passphrase for the Brno greenhouse?",
                                       LongContextConfig(retrieval=Retrieval.BM25))
    assert loads == [] and report.retrieval == "bm25" and report.embedded == report.cached == 0
    assert fact in engine.prompts[-1]


def test_a_second_question_about_the_same_document_embeds_only_what_is_new(
        loads: list[Recording], tmp_path: Path) -> None:
    fact, question = PARAPHRASES[0]
    text = bytes_prose([(0.4, fact), (0.8, PARAPHRASES[3][0])], 20_000, seed=9)
    config = LongContextConfig(vector_cache=tmp_path / "vectors")
    _, _, first = ask_long(text, question, config)
    _, _, second = ask_long(text, PARAPHRASES[3][1], config)
    assert len(loads) == 2
    made_first, made_second = set(loads[0].vectors), set(loads[1].vectors)
    assert first.embedded == len(made_first) and second.embedded == len(made_second)
    assert not made_first & made_second  # nothing embedded twice
    assert PARAPHRASES[3][1] in made_second and second.cached > 0
    assert 1 <= second.embedded < first.embedded
    assert any(fact in q for _, q in first.quotes) and any(PARAPHRASES[3][0] in q for _, q in second.quotes)
