"""Inputs too large to hold in memory: spooled, read in segments, chunked and ranked as a stream."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fakes import ScriptedEngine
from hypothesis import given, settings
from hypothesis import strategies as st
from test_longdoc import haystack

from askgpt.runtime.documents.inputs import collect_inputs
from askgpt.runtime.documents.spool import read_or_spool, segments
from askgpt.runtime.documents.strategies import LongContext, LongContextConfig, Strategy
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import UsageError
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import Document


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(alphabet="ab\né😀\u00a0", max_size=200).map(str.encode), st.binary(max_size=200)),
       st.integers(1, 40), st.integers(1, 9))
def test_segments_rejoin_to_the_decoded_text_and_end_at_lines(tmp_path_factory: pytest.TempPathFactory,
                                                              data: bytes, size: int, read_bytes: int) -> None:
    path = tmp_path_factory.mktemp("seg") / "t.txt"
    path.write_bytes(data)
    parts = list(segments(path, size, read_bytes))
    assert "".join(parts) == data.decode("utf-8", errors="replace")  # a character split between reads is joined
    for part in parts[:-1]:
        assert 0 < len(part) <= size
        assert part.endswith("\n") or "\n" not in part  # a cut inside a line only when the line is too long


def test_small_input_stays_in_memory_and_large_goes_to_a_file() -> None:
    assert read_or_spool(io.BytesIO(b"x" * 10), limit=10) == b"x" * 10
    spooled = read_or_spool(io.BytesIO(b"y" * 25), limit=10)
    assert isinstance(spooled, Path)
    try:
        assert spooled.read_bytes() == b"y" * 25
    finally:
        spooled.unlink()


def _on_disk(tmp_path: Path, text: str) -> Document:
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    return Document(str(path), "", path=path, size=path.stat().st_size)


def test_chunks_of_a_document_on_disk_point_into_the_whole_text(tmp_path: Path) -> None:
    text = haystack(200, "The secret code for the vault is 4417.", 0.5, seed=3)
    doc = _on_disk(tmp_path, text)
    lc = LongContext(ScriptedEngine(), LongContextConfig(segment_chars=700))
    chunks = list(lc.iter_chunks([doc], 64, 8))
    covered = [False] * len(text)
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.first_line == text[:c.start].count("\n") + 1
        assert c.last_line == c.first_line + c.text.rstrip("\n").count("\n")
        covered[c.start:c.end] = [True] * (c.end - c.start)
    assert all(covered)
    assert len({c.start for c in chunks}) == len(chunks) > len(text) // 700  # many segments, each chunked


def test_ranking_in_blocks_finds_what_one_block_would(tmp_path: Path) -> None:
    # Passages are scored a block at a time (memory flat in the input's length); small blocks
    # must find the same best passage as one block over everything.
    from askgpt.runtime.retrieval.model import shipped_embedder
    from askgpt.runtime.retrieval.rank import RankConfig, Retrieval, find_evidence

    text = haystack(400, "The secret code for the vault is 4417.", 0.7, seed=4)
    lc = LongContext(ScriptedEngine(), LongContextConfig())
    chunks = lc.chunks([Document("d", text)], 64, 8)
    question = "What is the secret code for the vault?"
    for mode in (Retrieval.BM25, Retrieval.HYBRID):
        whole = find_evidence(iter(chunks), question, RankConfig(mode), shipped_embedder(), None)
        blocked = find_evidence(iter(chunks), question, RankConfig(mode, block=16), shipped_embedder(), None)
        assert whole.passages == blocked.passages > 16 * 3
        needle = "The secret code for the vault is 4417."
        assert whole.ranked[0].passage.text == blocked.ranked[0].passage.text == needle
        assert len(blocked.ranked) <= RankConfig(mode).static_keep + RankConfig(mode).bm25_keep  # kept, not all


def test_huge_piped_input_cannot_be_the_question() -> None:
    with pytest.raises(UsageError, match="too large to be the question"):
        collect_inputs(prompt_words=[], files=[], stdin=io.BytesIO(b"z" * 100), stdin_is_terminal=False,
                       large_input_bytes=50)


@pytest.mark.model
def test_piped_input_kept_on_disk_is_searched_and_cleaned_up(real_engine) -> None:  # type: ignore[no-untyped-def]
    text = haystack(600, "The secret code for the vault is 4417.", 0.6, seed=5)
    inputs = collect_inputs(prompt_words=["What", "is", "the", "secret", "code", "for", "the", "vault?"], files=[],
                            stdin=io.BytesIO(text.encode()), stdin_is_terminal=False, large_input_bytes=20_000)
    try:
        (doc,) = inputs.request.documents
        assert doc.on_disk and doc.text == "" and inputs.spooled is not None and inputs.spooled.exists()
        lc = LongContext(real_engine, LongContextConfig(segment_chars=16_000))
        answer, report = lc.answer(inputs.request, GenerationConfig(32, SamplingConfig(temperature=0)))
        assert "4417" in answer.text()
        assert report is not None and report.strategy is Strategy.RETRIEVE
        assert report.doc_tokens == sum(lc.count(s) for s in segments(inputs.spooled, 16_000)) + lc._wrapper("stdin")
    finally:
        inputs.cleanup()
    assert not inputs.spooled.exists()
