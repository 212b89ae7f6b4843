"""Bounded cost for every question: no default strategy reads every part of a large input
with the model. Model calls are counted on the scripted engine (one token per byte), so a
count cannot hide behind a fast model; one real-model run checks the CLI end to end."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from fakes import ScriptedEngine

from askgpt.runtime.bench.needle import haystack
from askgpt.runtime.documents.inputs import decode
from askgpt.runtime.documents.strategies import (
    LongContext,
    LongContextConfig,
    LongContextReport,
    Retrieval,
    Strategy,
    is_vague_question,
    not_text_share,
)
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import STDIN_SOURCE, Document, Request
from conftest import run_askgpt

VAGUE = ("What is this?", "Explain this.", "What do you think?", "what's this about?", "Tell me about this file",
         "What does it mean?", "describe the document")


def prose(tokens: int, seed: int = 1) -> str:
    """About ``tokens`` one-byte tokens of real prose (the standard library's docstrings)."""
    return haystack(tokens, 0.5, "The ferry to the island leaves at noon.", "prose", seed, len)[0]


def random_text(n_bytes: int, seed: int = 7) -> str:
    """Random bytes as askgpt decodes piped input."""
    return decode(random.Random(seed).randbytes(n_bytes))


def answer(text: str, question: str, config: LongContextConfig | None = None,
           ) -> tuple[ScriptedEngine, LongContextReport]:
    engine = ScriptedEngine(answer="note", n_ctx=4096)
    request = Request(question, documents=(Document(STDIN_SOURCE, text),))
    reply, report = LongContext(engine, config or LongContextConfig()).answer(request, GenerationConfig(64))
    assert reply.text() == "note" and report is not None  # the final call happens as the answer is read
    return engine, report


def test_vague_questions_are_told_from_ones_that_name_something() -> None:
    for question in VAGUE:
        assert is_vague_question(question), question
    for question in ("Who betrayed the captain?", "What is the secret code?", "When does the store open?",
                     "Explain the error on line 40", "What do you think of the ending?"):
        assert not is_vague_question(question), question


@pytest.mark.parametrize("question", ["What is this?", "Explain this."])
def test_a_vague_question_costs_the_same_model_calls_at_any_length(question: str) -> None:
    counts = []
    for tokens in (25_000, 100_000):
        engine, report = answer(prose(tokens), question)
        assert report.strategy is Strategy.MAP_REDUCE and "nothing particular" in report.reason
        assert report.chunks > 20 and report.used > 5  # the overview drew on the whole input
        counts.append(len(engine.prompts))
    assert counts == [1, 1]
    final = engine.prompts[-1]
    assert "the opening of stdin, line" in final and "key sentences of stdin" in final


def test_random_bytes_are_read_as_an_overview_marked_not_text() -> None:
    counts = []
    for n_bytes in (75_000, 300_000):
        text = random_text(n_bytes)
        assert not_text_share(text) > 0.3
        engine, report = answer(text, "What is this?")
        assert report.strategy is Strategy.MAP_REDUCE and report.chunks > 50
        counts.append(len(engine.prompts))
    assert counts == [1, 1]
    assert "(mostly not text)" in engine.prompts[-1] and "key sentences" not in engine.prompts[-1]
    assert not_text_share(prose(2_000)) == 0.0


def test_a_vague_question_about_a_document_on_disk_reads_only_its_opening_and_key_sentences(
        tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text(prose(60_000), encoding="utf-8")
    engine = ScriptedEngine(answer="note", n_ctx=4096)
    doc = Document(str(path), "", path=path, size=path.stat().st_size)  # too large to hold: read in segments
    reply, report = LongContext(engine, LongContextConfig(segment_chars=20_000)).answer(
        Request("Explain this.", documents=(doc,)), GenerationConfig(64))
    assert reply.text() == "note" and len(engine.prompts) == 1
    assert report is not None and report.strategy is Strategy.MAP_REDUCE and report.chunks > 50
    assert f"the opening of {path}, line" in engine.prompts[0]


def test_a_question_no_part_matches_reads_every_part_only_within_the_budget() -> None:
    # Words alone (bm25): with the embedding model, some passage is always nearest in meaning.
    question = "Qwzx flurble?"  # shares no word with any part
    words = LongContextConfig(retrieval=Retrieval.BM25)
    engine, report = answer(prose(4_000), question, words)  # about 4 parts of 1,024 tokens: within 8
    extracts = [p for p in engine.prompts if "Copy the sentences" in p]
    assert report.strategy is Strategy.RETRIEVE and len(extracts) == report.chunks >= 3
    for tokens in (30_000, 100_000):
        engine, report = answer(prose(tokens), question, words)
        assert len(engine.prompts) == 1 and report.strategy is Strategy.MAP_REDUCE
        assert "--strategy refine" in report.reason
    # The budget is a setting: raised, the same input is read part by part again.
    engine, report = answer(prose(30_000), question, LongContextConfig(chunk_calls=100, retrieval=Retrieval.BM25))
    assert report.strategy is Strategy.RETRIEVE and len(engine.prompts) > 25


def test_an_explicit_refine_says_how_long_it_will_take() -> None:
    told: list[str] = []
    engine = ScriptedEngine(answer="note", n_ctx=4096)
    request = Request("What is this?", documents=(Document(STDIN_SOURCE, prose(20_000)),))
    config = LongContextConfig(strategy=Strategy.REFINE)
    LongContext(engine, config, notify=told.append).answer(request, GenerationConfig(64))
    parts = len(engine.prompts) + 1  # every part but the last was a call; the last is read with the answer
    assert parts > 20  # asked for: every part is read
    assert len(told) == 1, told
    said = re.fullmatch(r"refine reads the input in about (\d+) parts, a model call each: about \d+ s more "
                        r"\(the first part took \d+\.\d s, [\d,]+ tokens/s\)", told[0])
    assert said and abs(int(said[1]) - parts) <= parts // 5, told  # an estimate, from the token count
    told.clear()
    small = Request("What is this?", documents=(Document(STDIN_SOURCE, prose(4_000)),))
    LongContext(ScriptedEngine(n_ctx=4096), config, notify=told.append).answer(small, GenerationConfig(64))
    assert told == []  # within the budget: nothing to warn about


@pytest.mark.model
def test_what_is_this_on_a_long_piped_document_answers() -> None:
    text = haystack(27_000, 0.5, "The ferry to the island leaves at noon.", "prose", 3, lambda s: len(s) // 4)[0]
    result = run_askgpt(["-n", "8", "What is this?"], input=text.encode())
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "-> map-reduce over" in err and "nothing particular" in err, err
    assert result.stdout.strip()
