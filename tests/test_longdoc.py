"""Long documents: chunking, strategy choice, no window errors, context shift, real needles."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from fakes import ScriptedEngine
from hypothesis import given, settings
from hypothesis import strategies as st

from askgpt.runtime.documents.chunking import chunk_text
from askgpt.runtime.documents.salience import key_sentences
from askgpt.runtime.documents.strategies import (
    LongContext,
    LongContextConfig,
    Strategy,
    is_whole_input_task,
)
from askgpt.runtime.errors import ContextOverflowError, UsageError
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import Document, Request
from askgpt.runtime.retrieval.rank import bm25_scores
from conftest import run_askgpt


def word_count(text: str) -> int:
    return len(text.split()) + text.count("\n")


TEXTS = st.lists(
    st.one_of(st.text(alphabet="abc xyz.!?é😀", min_size=0, max_size=80), st.just(""), st.just("word " * 60),
              st.just("x" * 300), st.just("One sentence here. " * 40)),
    min_size=1, max_size=40,
).map("\n".join)


@settings(max_examples=200, deadline=None)
@given(TEXTS, st.integers(8, 60), st.integers(0, 30))
def test_chunks_cover_every_character_stay_in_budget_and_overlap(text: str, budget: int, overlap: int) -> None:
    chunks = chunk_text(text, "doc", word_count, max_tokens=budget, overlap=overlap)
    covered = [False] * len(text)
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.n_tokens == word_count(c.text) <= budget
        assert c.first_line == text[:c.start].count("\n") + 1
        for i in range(c.start, c.end):
            covered[i] = True
    assert all(covered)
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # always moving forward
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start <= a.end  # no gap
        if overlap == 0:
            assert b.start == a.end


def test_cuts_prefer_paragraph_breaks() -> None:
    paragraphs = ["\n".join(f"sentence {p}.{i} goes here" for i in range(6)) for p in range(6)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, "doc", word_count, max_tokens=40, overlap=0)
    assert len(chunks) > 2
    for c in chunks[:-1]:
        following = text[c.end:c.end + 1]
        assert c.text.endswith("\n") and (following == "\n" or c.text.endswith("\n\n")), repr(c.text[-20:])


def test_whole_input_instructions_are_told_from_questions() -> None:
    for text in ("Summarize this", "list all the errors", "give me a TL;DR", "What are the key points?"):
        assert is_whole_input_task(text), text
    for text in ("Who betrayed the captain?", "What is the secret code?", "When does the store open?"):
        assert not is_whole_input_task(text), text


def test_bm25_ranks_the_matching_chunk_first() -> None:
    texts = ["the weather was mild", "the vault code is 4417 and the key is blue", "markets sell bread"]
    scores = bm25_scores(texts, "What is the vault code?")
    assert max(range(3), key=lambda i: scores[i]) == 1
    assert bm25_scores(texts, "zebra giraffe") == [0.0, 0.0, 0.0]


def scripted(n_ctx: int = 512) -> ScriptedEngine:
    return ScriptedEngine(answer="note", n_ctx=n_ctx)


@pytest.mark.parametrize("size, question, expected", [
    (50, "What is the code?", Strategy.STUFF),
    (3000, "What is the code?", Strategy.RETRIEVE),
    (3000, "Summarize this.", Strategy.MAP_REDUCE),
])
def test_auto_strategy_choice(size: int, question: str, expected: Strategy) -> None:
    engine = scripted(4096)
    lc = LongContext(engine, LongContextConfig(read_tokens=256))
    request = Request(question, documents=(Document("doc", "x" * size),))
    strategy, reason, doc_tokens, _ = lc.plan(request, GenerationConfig(64))
    assert strategy is expected and reason and size < doc_tokens < size + 60  # text plus its delimiters


@pytest.mark.parametrize("strategy", [Strategy.AUTO, Strategy.RETRIEVE, Strategy.MAP_REDUCE, Strategy.REFINE])
def test_no_window_error_for_any_length_around_the_window(strategy: Strategy) -> None:
    # One-byte tokens: the sweep crosses the window from well below to far above. Refine
    # carries its running answer (160 tokens) into every call, so it needs a larger window
    # than the others (see the next test).
    window = 768 if strategy is Strategy.REFINE else 512
    for size in (100, 300, 480, 500, 512, 530, 700, 1500, 5000):
        engine = scripted(window)
        text = "\n".join(f"line {i} about the code" for i in range(size // 23 + 1))[:size]
        request = Request("What is the code?", documents=(Document("doc", text),))
        answer, report = LongContext(engine, LongContextConfig(strategy=strategy, read_tokens=128)).answer(
            request, GenerationConfig(64))
        assert answer.text() == "note"
        assert all(len(p) <= window - 32 for p in engine.prompts)  # every call fitted with room to answer


def test_a_window_too_small_for_refine_is_refused_with_the_window_that_works() -> None:
    """Parts of a few tokens each beside refine's running answer would mean thousands of
    model calls: refused at once, naming a --ctx that works (and that one does)."""
    text = "\n".join(f"line {i} about the code" for i in range(200))
    request = Request("What is the code?", documents=(Document("doc", text),))
    config = LongContextConfig(strategy=Strategy.REFINE, read_tokens=128)
    with pytest.raises(UsageError, match="too small to read the documents in parts") as refused:
        LongContext(scripted(512), config).answer(request, GenerationConfig(64))
    works = int(str(refused.value.hint).rsplit(" ", 1)[1])
    assert works % 256 == 0 and works > 512
    engine = scripted(works)
    answer, _ = LongContext(engine, config).answer(request, GenerationConfig(64))
    assert answer.text() == "note" and all(len(p) <= works - 32 for p in engine.prompts)


def test_stuff_that_does_not_fit_is_refused_not_cut() -> None:
    engine = scripted(512)
    request = Request("What?", documents=(Document("doc", "y" * 2000),))
    with pytest.raises(ContextOverflowError):
        LongContext(engine, LongContextConfig(strategy=Strategy.STUFF)).answer(request, GenerationConfig(64))


def test_map_calls_share_their_prefix_so_the_engine_can_reuse_it() -> None:
    # A question no chunk shares a word with: every chunk is read by an extract call (about
    # 30 of them, so the budget of per-part calls is raised past the default 8).
    engine = scripted(4096)
    text = "\n\n".join(f"paragraph {i} " + "words " * 40 for i in range(30))
    config = LongContextConfig(strategy=Strategy.RETRIEVE, read_tokens=300, chunk_calls=64)
    LongContext(engine, config).answer(
        Request("Which colour is the sky?", documents=(Document("doc", text),)), GenerationConfig(32))
    maps = [p for p in engine.prompts if "Copy the sentences" in p]
    assert len(maps) > 3
    common = min(len(p) for p in maps)
    for i, chars in enumerate(zip(*maps, strict=False)):
        if len(set(chars)) > 1:
            common = i
            break
    assert "Which colour is the sky?" in maps[0][:common]  # the instruction is in the shared prefix, before the chunk


# --- the real model -----------------------------------------------------------------------------------

FILLER = ("the river town market morning people walked slowly along old stone bridge while merchants "
          "called out prices for bread fish cloth and spices").split()


def haystack(n_paragraphs: int, needle: str, depth: float, seed: int) -> str:
    rng = random.Random(seed)
    paras = [" ".join(rng.choice(FILLER) for _ in range(rng.randint(30, 60))).capitalize() + "."
             for _ in range(n_paragraphs)]
    paras.insert(int(depth * n_paragraphs), needle)
    return "\n\n".join(paras)


@pytest.mark.model
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_needle_far_past_the_window_is_found(tmp_path: Path, depth: float) -> None:
    doc = tmp_path / "hay.txt"
    doc.write_text(haystack(300, "The secret code for the vault is 4417.", depth, seed=int(depth * 10)))
    result = run_askgpt(["-t", "0", "--ctx", "2048", "-f", str(doc), "What is the secret code for the vault?"])
    assert result.returncode == 0, result.stderr
    assert "4417" in result.stdout.decode()
    err = result.stderr.decode()
    assert re.search(r"document: [\d,]+ tokens, window 2,048 -> hybrid retrieval over \d+ chunks, \d+ passages? used",
                     err), err


@pytest.mark.model
def test_several_large_files_and_stdin_together(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text(haystack(120, "The meeting room is number 12.", 0.3, seed=1))
    second.write_text(haystack(120, "The captain was betrayed by the cook named Silas.", 0.6, seed=2))
    piped = haystack(120, "The ferry leaves at noon.", 0.5, seed=3).encode()
    result = run_askgpt(["-t", "0", "--stats", "-f", str(first), "-f", str(second), "Who betrayed the captain?"],
                        input=piped)
    assert result.returncode == 0, result.stderr
    assert "Silas" in result.stdout.decode()
    assert b"long context: retrieve" in result.stderr


@pytest.mark.model
def test_a_long_answer_continues_past_the_window_by_context_shift(real_engine) -> None:  # type: ignore[no-untyped-def]
    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.llama.engine import load_llama_engine
    from askgpt.runtime.engine.sampling import SamplingConfig
    from askgpt.runtime.models.registry import builtin_model
    from askgpt.runtime.prompting.generate import Answer, PreparedPrompt, StopReason
    from askgpt.runtime.prompting.template import format_prompt

    engine = load_llama_engine(builtin_model(), EngineConfig(n_ctx=256))
    try:
        # A repeated sentence in the answer makes the model go on for certain (see test_real_model).
        text = format_prompt(engine.info, Request("Repeat the sentence forever.")).text + \
            " ".join(["The cat sat on the mat."] * 8)
        prompt = PreparedPrompt.from_tokens(text, tuple(engine.tokenize(text)))
        assert prompt.n_tokens < 128
        answer = Answer(engine, prompt, GenerationConfig(600, SamplingConfig(temperature=0, repeat_penalty=1.0,
                                                                             loop_guard=None)))
        out = answer.text()
        assert answer.stats is not None and answer.stats.stop_reason is StopReason.LENGTH
        assert answer.stats.generated_tokens == 600 > engine.info.n_ctx  # far past the 256-token window
        assert engine.context_shifts >= 2
        assert out.count("The cat sat on the mat.") > 40  # still coherent after the shifts
    finally:
        engine.close()


@pytest.mark.model
def test_cli_long_answer_in_a_small_window_exits_0() -> None:
    result = run_askgpt(["--ctx", "256", "-n", "400", "-t", "0", "Write a long story about a lighthouse keeper."])
    assert result.returncode == 0, result.stderr
    assert b"error" not in result.stderr


@pytest.mark.model
def test_a_find_all_instruction_works_through_every_part(tmp_path: Path) -> None:
    facts = ["The bakery opens at 7.", "The museum is closed on Monday.", "The bridge was built in 1850."]
    rng = random.Random(5)
    parts = []
    for fact in facts:
        parts.append(haystack(8, fact, rng.random(), seed=rng.randint(0, 99)))
    doc = tmp_path / "town.txt"
    doc.write_text("\n\n".join(parts))
    result = run_askgpt(["-t", "0", "-n", "200", "--read-tokens", "400", "--stats", "-f", str(doc),
                         "List all the facts about opening and closing hours."])
    assert result.returncode == 0, result.stderr
    stats = re.search(rb"long context: retrieve, [\d,]+ document tokens, (\d+) chunks, (\d+) used, (\d+) model calls",
                      result.stderr)
    assert stats is not None, result.stderr
    chunks, used, calls = (int(g) for g in stats.groups())
    assert chunks >= 2 and used >= 2 and calls == 1  # every matching passage gathered, then one answer
    assert b"passages gathered" in result.stderr
    assert b"Sources:" not in result.stdout  # stdout is a pipe: the answer only, the citations on stderr
    err = result.stderr.decode()
    quoted = err[err.index("\nSources:\n"):]
    for fact in facts[:2]:  # the two parts that match, each cited on its own line
        assert re.search(rf"- \[{re.escape(str(doc))}, line \d+\] {re.escape(fact)}\n", quoted), quoted


@pytest.mark.model
def test_a_summary_of_every_part_quotes_their_key_sentences(tmp_path: Path) -> None:
    facts = ["The bakery opens at 7.", "The museum is closed on Monday.", "The bridge was built in 1850."]
    rng = random.Random(5)
    doc = tmp_path / "town.txt"
    doc.write_text("\n\n".join(haystack(8, fact, rng.random(), seed=rng.randint(0, 99)) for fact in facts))
    result = run_askgpt(["-t", "0", "-n", "200", "--read-tokens", "400", "--stats", "-f", str(doc),
                         "Summarize the facts in this text."])
    assert result.returncode == 0, result.stderr
    assert re.search(rb"long context: map-reduce, [\d,]+ document tokens, \d+ chunks, [3-9]\d* used, 1 model calls",
                     result.stderr), result.stderr
    err = result.stderr.decode()
    quoted = err[err.index("\nSources:\n"):]
    for fact in facts:  # each part's own fact is among its most distinctive sentences
        assert re.search(rf"- \[{re.escape(str(doc))}, line \d+\] {re.escape(fact)}\n", quoted), quoted


@pytest.mark.model
def test_bench_needle_prints_the_grid_and_json(tmp_path: Path) -> None:
    import json

    args = ["bench", "needle", "--kinds", "exact", "--sizes", "1k,3k", "--depths", "0,100", "--seeds", "1",
            "--ctx", "2048"]
    grid = run_askgpt([*args, "--filler", "synthetic"], timeout=300)
    assert grid.returncode == 0, grid.stderr
    text = grid.stdout.decode()
    assert "filler: synthetic" in text and re.search(r"^\s+1000\s+\d+\s+\d+", text, re.M), text
    assert "peak RSS" in text
    data = json.loads(run_askgpt([*args, "--filler", "prose", "--json"], timeout=300).stdout)
    cells = data["cells"]
    assert len(cells) == 4 and {c["size"] for c in cells} == {1000, 3000}
    assert {c["strategy"] for c in cells if c["size"] == 3000} == {"retrieve"}  # past the 1,024 reading budget
    assert all(c["tokens"] >= c["size"] for c in cells) and data["peak_rss_mb"] > 0


def test_bench_needle_rejects_bad_lists() -> None:
    result = run_askgpt(["bench", "needle", "--depths", "0,150"])
    assert result.returncode == 2 and b"between 0 and 100" in result.stderr


@settings(max_examples=150, deadline=None)
@given(TEXTS, st.integers(8, 60))
def test_key_sentences_are_quoted_exactly_with_their_line(text: str, budget: int) -> None:
    chunks = chunk_text(text, "doc", word_count, max_tokens=budget, overlap=4)
    keys = key_sentences(lambda: iter(chunks))
    lines = text.split("\n")
    for k in keys:
        assert k.text in lines[k.line - 1]  # sentences never span lines, so the line holds it whole
        assert k.score > 0
    assert [k.seq for k in keys] == sorted(k.seq for k in keys)


def test_the_sentence_particular_to_one_part_is_picked() -> None:
    text = haystack(60, "The lighthouse keeper Marta counted 1911 gulls.", 0.4, seed=2)
    chunks = chunk_text(text, "doc", word_count, max_tokens=200, overlap=0)
    keys = key_sentences(lambda: iter(chunks), per_chunk=1)
    assert "The lighthouse keeper Marta counted 1911 gulls." in [k.text for k in keys]
