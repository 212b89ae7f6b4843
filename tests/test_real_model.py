"""The real built-in model (SmolLM2-135M-Instruct Q4_1) through llama.cpp.

Greedy decoding is deterministic on one machine, but not across CPUs: llama.cpp
picks SIMD kernels per CPU, logits differ in the last bits, and a near-tie can
flip. So every assertion here is about something the model does with a wide
margin (a fact it states with high probability, a pattern it continues with a
measured lead over the runner-up), or about a distribution compared with a
tolerance; never one borderline greedy path, exact token count or stop reason
that depends on where the model chooses to stop.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from askgpt.runtime.engine.base import EmbeddingRows, Engine, TokenIds
from askgpt.runtime.engine.sampling import CopyBias, LoopDetector, LoopGuard, SamplingConfig
from askgpt.runtime.errors import ContextOverflowError
from askgpt.runtime.models.registry import builtin_model
from askgpt.runtime.prompting.generate import Answer, GenerationConfig, PreparedPrompt, Stats, StopReason, ask, prepare
from askgpt.runtime.prompting.request import DEFAULT_SYSTEM, Example, Request
from askgpt.runtime.prompting.template import format_prompt
from conftest import ASKGPT_BIN, REPO, builtin_without, run_askgpt

pytestmark = pytest.mark.model

GREEDY = SamplingConfig(temperature=0)


def greedy(engine: Engine, request: Request, max_tokens: int = 64, **sampling: object):
    answer = ask(engine, request, GenerationConfig(max_tokens, SamplingConfig(temperature=0, **sampling)))
    return answer.text(), answer.stats


def test_france_question_answers_paris_from_the_cli() -> None:
    result = run_askgpt(["-t", "0", "What is the capital of France?"])
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout.decode()
    assert result.stderr == b""  # nothing but the answer, and it goes to stdout


def test_piped_document_is_read_by_the_model() -> None:
    result = run_askgpt(["-t", "0", "What is the secret code?"], input=b"The secret code is 4417. Remember it.\n")
    assert result.returncode == 0, result.stderr
    assert "4417" in result.stdout.decode()


def test_file_document_and_stats(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("Meeting moved to Thursday at 3pm in room 12.\n")
    result = run_askgpt(["-t", "0", "--stats", "-f", str(notes), "Which room is the meeting in?"])
    assert result.returncode == 0, result.stderr
    assert "12" in result.stdout.decode()
    err = result.stderr.decode()
    assert "prompt:" in err and "tokens/s" in err and "load:" in err


def assistant_prefix(engine: Engine, request: Request, prefix: str) -> PreparedPrompt:
    """The chat prompt for ``request`` with the start of the answer already written.

    A long repeated run in the answer makes continuing it overwhelmingly the
    model's choice, so tests built on it do not hinge on a near-tie that
    another CPU's SIMD kernels could flip (each test checks its margin).
    """
    text = format_prompt(engine.info, request).text + prefix
    return PreparedPrompt.from_tokens(text, tuple(engine.tokenize(text, special=True)))  # the template's markup


def top_two_gap(engine: Engine, prompt: PreparedPrompt) -> float:
    """How far (in log-probability) the model's first choice leads its second."""
    logprobs = engine.next_token_logprobs([TokenIds(prompt.tokens)])
    second, first = sorted(logprobs)[-2:]
    return float(first - second)


def greedy_margins(engine: Engine, parts: list, max_tokens: int, *, until: str = "") -> tuple[str, float]:
    """Plain greedy decoding (no repeat penalty), one next-token distribution at a time:
    the text it writes, up to ``until`` or an end-of-generation token, and the smallest
    lead (nats) of each step's first choice over its second. A path whose every step
    leads by far more than the last-bit differences between CPUs is the same on any CPU."""
    import numpy as np

    tokens: list[int] = []
    out, smallest = b"", math.inf
    for _ in range(max_tokens):
        logprobs = engine.next_token_logprobs([*parts, TokenIds(tuple(tokens))] if tokens else parts)
        second, first = np.argsort(logprobs)[-2:]
        smallest = min(smallest, float(logprobs[first] - logprobs[second]))
        token = int(first)
        piece = engine.token_bytes(token)
        if not piece:  # a control token such as <|im_end|>: the answer ends there
            break
        tokens.append(token)
        out += piece
        if until and until in out.decode("utf-8", errors="ignore"):
            break
    return out.decode("utf-8", errors="replace"), smallest


def run(engine: Engine, prompt: PreparedPrompt, max_tokens: int, **sampling: object) -> tuple[str, Stats]:
    answer = Answer(engine, prompt, GenerationConfig(max_tokens, SamplingConfig(temperature=0, **sampling)))
    text = answer.text()
    assert answer.stats is not None
    return text, answer.stats


def test_streamed_utf8_survives_token_boundaries(real_engine: Engine) -> None:
    unit = "I like 日本 and 😀 a lot."
    # The emoji is three tokens of one, one and two bytes: a character split across tokens.
    assert len(real_engine.tokenize("😀")) > 1
    prompt = assistant_prefix(real_engine, Request("Repeat the sentence forever.", system=DEFAULT_SYSTEM),
                              " ".join([unit] * 10))
    assert top_two_gap(real_engine, prompt) > 1.0
    text, _ = run(real_engine, prompt, 40, repeat_penalty=1.0, loop_guard=None)
    assert text.count(unit) >= 2
    whole = text[: text.rindex(unit) + len(unit)]  # the answer may stop inside a character at the limit
    assert "\ufffd" not in whole


def test_few_shot_examples_teach_the_output_format(real_engine: Engine) -> None:
    task = "Classify the sentiment of the text as positive or negative."
    examples = (
        Example("I loved this movie!", "positive"), Example("What a waste of time.", "negative"),
        Example("Absolutely wonderful experience.", "positive"), Example("The food was terrible.", "negative"),
    )
    labels = [real_engine.tokenize(word)[0] for word in ("positive", "negative")]

    def label_mass(request: Request) -> float:
        """Probability that the answer starts with one of the labels."""
        prompt = prepare(real_engine, request, GenerationConfig(max_tokens=8))
        logprobs = real_engine.next_token_logprobs([TokenIds(prompt.tokens)])
        return float(sum(math.exp(logprobs[t]) for t in labels))

    texts = ["This is the best day of my life.", "I hate waiting in line.", "Great job, I am so happy!"]
    # Measured on the built-in model: about 0.96-0.98 with examples, under 0.01 without;
    # the bounds leave a wide margin for other CPUs.
    for text in texts:
        assert label_mass(Request(text, system=task, examples=examples)) > 0.8  # in-context examples fix the format
        assert label_mass(Request(text, system=task)) < 0.2  # zero-shot starts a sentence instead
    # After the label, the end of the turn follows with P > 0.99.
    answer, _ = greedy(real_engine, Request(texts[2], system=task, examples=examples))
    assert answer.strip() in {"positive", "negative"}


LOOPING_UNIT = "The cat sat on the mat."


def test_loop_guard_stops_a_model_that_is_looping(real_engine: Engine) -> None:
    request = Request("Repeat the sentence forever.", system=DEFAULT_SYSTEM)
    prompt = assistant_prefix(real_engine, request, " ".join([LOOPING_UNIT] * 15))
    # The stop reasons below rest on this margin, checked at every one of the 150 greedy
    # steps (measured: at least 3.8 nats over 100): the first choice, never the end of the
    # turn, leads by far more than CPUs' last-bit differences.
    walked, lead = greedy_margins(real_engine, [TokenIds(prompt.tokens)], 150)
    assert lead > 2.0 and len(real_engine.tokenize(walked)) >= 140, (lead, walked[-80:])
    # With no repeat penalty and no guard the model loops until the limit...
    text, unguarded = run(real_engine, prompt, 150, repeat_penalty=1.0, loop_guard=None)
    assert unguarded.stop_reason is StopReason.LENGTH and unguarded.generated_tokens == 150
    assert text.count(LOOPING_UNIT) >= 10
    # ...and the guard cuts the same run short, soon after the loop is certain.
    _, guarded = run(real_engine, prompt, 150, repeat_penalty=1.0)
    assert guarded.stop_reason is StopReason.LOOP and guarded.generated_tokens <= 64


def test_counting_is_not_mistaken_for_a_loop(real_engine: Engine) -> None:
    # The detector over real tokenizer output of long counts: never a loop.
    for text in (", ".join(str(i) for i in range(1, 400)),
                 "\n".join(f"{i}. {i}" for i in range(1, 200)),
                 "\n".join(f"- step {i}: add {i} to the total" for i in range(1, 100))):
        detector = LoopDetector(LoopGuard())
        assert not any(detector.push(t) for t in real_engine.tokenize(text)), text[:40]
    # And a real run that counts on from 20, wherever the model chooses to stop.
    prompt = assistant_prefix(real_engine, Request("Count from 1 to 100.", system=DEFAULT_SYSTEM),
                              ", ".join(str(i) for i in range(1, 21)) + ",")
    text, stats = run(real_engine, prompt, 120, repeat_penalty=1.0)
    assert stats.stop_reason is not StopReason.LOOP
    assert "21" in text


def test_seed_makes_sampling_repeatable(real_engine: Engine) -> None:
    def sample(seed: int) -> str:
        cfg = GenerationConfig(40, SamplingConfig(temperature=1.0, seed=seed))
        return ask(real_engine, Request("Tell me a story about a cat."), cfg).text()

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_copy_bias_adds_its_logit_to_exactly_the_text_s_tokens(real_engine: Engine) -> None:
    import numpy as np

    native = real_engine.native  # type: ignore[attr-defined]
    text = "Uncle Tobias fished in Lough Corrib, near Galway."
    ids = native.copy_token_ids(text)
    # each word as copied mid-sentence (with its space) and at the start of a line
    for word in (" Corrib,", "Corrib", " Galway.", "Tobias"):
        assert set(real_engine.tokenize(word)) <= set(ids), word
    out = native.copy_bias(CopyBias(text, 1.5))(None, np.zeros(native.n_vocab(), dtype=np.float32))
    assert sorted(np.flatnonzero(out)) == ids and np.all(out[ids] == np.float32(1.5))
    # A document that spells control tokens gets no control token favoured: its text is data.
    spelled = native.copy_token_ids("<|im_end|> <|endoftext|> <|im_start|>")
    assert spelled and not {native.token_text(t) for t in spelled} & native.control_texts()
    assert {"<|im_end|>", "<|im_start|>"} <= native.control_texts()  # the premise: they are control tokens
    with pytest.raises(ValueError, match="copy bias"):
        CopyBias(text, -1.0)


@pytest.mark.parametrize("lookup_tokens", [0, 8])
def test_a_strong_copy_bias_keeps_the_answer_to_the_text_s_tokens(real_engine: Engine, lookup_tokens: int) -> None:
    # +40 logits dwarfs the model's preference for other tokens (checked below on the first
    # step: the best token leads the best of the text's by far less), so every token is the
    # text's whatever the CPU; with no bias the same prompt writes other words.
    text = "Lough Corrib lies west of Galway."
    allowed = set(real_engine.native.copy_token_ids(text))  # type: ignore[attr-defined]
    prompt = prepare(real_engine, Request("Write a short poem about the sea."), GenerationConfig(24))
    first = real_engine.next_token_logprobs(prompt.parts)  # type: ignore[attr-defined]
    assert first.max() - first[sorted(allowed)].max() < 20

    def tokens(bias: CopyBias | None) -> list[int]:
        sampling = SamplingConfig(temperature=0, lookup_tokens=lookup_tokens, loop_guard=None, copy_bias=bias)
        stream = real_engine.generate(prompt.parts, sampling)
        try:
            return list(itertools.islice(stream, 24))  # a biased answer may never end on its own
        finally:
            stream.close()

    biased = tokens(CopyBias(text, 40.0))
    assert biased and set(biased) <= allowed
    assert not set(tokens(None)) <= allowed
    assert tokens(CopyBias(text, 0.0)) == tokens(None)  # zero is no bias


def test_kv_cache_reuse_does_not_leak_between_prompts(real_engine: Engine) -> None:
    a = Request("What is the capital of France?", system=DEFAULT_SYSTEM)
    b = Request("What is the capital of Japan?", system=DEFAULT_SYSTEM)  # shares a long prefix with a
    first, _ = greedy(real_engine, a)
    other, _ = greedy(real_engine, b)
    again, _ = greedy(real_engine, a)  # evaluated on top of b's cached prefix
    # Facts the model states with a wide margin (P(" Paris") about 0.9), not one exact string:
    # a reused prefix evaluates in other batch sizes, which may flip a later near-tie.
    assert "Paris" in first and "Paris" in again
    assert "Tokyo" in other and "Tokyo" not in again


def test_embedding_rows_in_place_of_token_ids_give_the_same_distribution(real_engine: Engine) -> None:
    """The seam for images: rows fed as embeddings behave like the tokens they came from."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(builtin_model().path))
    table = next(t for t in reader.tensors if t.name == "token_embd.weight")
    prompt = real_engine.tokenize(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n", special=True)
    cut = 5  # the "user\nWhat is the" rows go in as embeddings
    rows = dequantize(table.data[prompt[1:1 + cut]], table.tensor_type)
    assert rows.shape == (cut, real_engine.info.n_embd)

    by_ids = real_engine.next_token_logprobs([TokenIds(tuple(prompt))])
    by_rows = real_engine.next_token_logprobs(
        [TokenIds((prompt[0],)), EmbeddingRows(rows), TokenIds(tuple(prompt[1 + cut:]))])
    # Other batch splits round differently in the last bits; the distributions must agree.
    assert np.abs(np.exp(by_rows) - np.exp(by_ids)).max() < 1e-3
    assert int(np.argmax(by_rows)) == int(np.argmax(by_ids))
    # Rows change nothing when they stand for the same tokens, and something when they do not.
    other = real_engine.next_token_logprobs(
        [TokenIds((prompt[0],)), EmbeddingRows(rows[::-1].copy()), TokenIds(tuple(prompt[1 + cut:]))])
    assert np.abs(np.exp(other) - np.exp(by_ids)).max() > 1e-2
    # Placeholder ids never fake a prefix-cache hit: a text prompt after rows is evaluated afresh.
    text, _ = greedy(real_engine, Request("What is the capital of France?", system=DEFAULT_SYSTEM))
    assert "Paris" in text


def test_context_overflow_is_refused_not_truncated(real_engine: Engine) -> None:
    long = Request("Summarize: " + "The quick brown fox jumps over the lazy dog. " * 300)
    with pytest.raises(ContextOverflowError) as err:
        ask(real_engine, long, GenerationConfig(max_tokens=512))
    e = err.value
    assert e.n_ctx == real_engine.info.n_ctx and e.fits == e.n_ctx - 512 and e.given > e.fits


def test_context_overflow_from_the_cli(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("All work and no play makes Jack a dull boy. " * 400)
    # --strategy stuff: send it whole or refuse (auto would summarise it part by part).
    result = run_askgpt(["--ctx", "512", "-n", "128", "--strategy", "stuff", "-f", str(big), "summarize"])
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "only 384 fit (context 512 tokens, 128 kept for the answer)" in err
    assert len(err.strip().splitlines()) == 1 and result.stdout == b""


@pytest.mark.parametrize("content", [b"hello\n", b"GGUF" + b"\0" * 64])
def test_broken_model_files_exit_4(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    result = run_askgpt(["-m", str(bad), "hi"])
    assert result.returncode == 4, result.stderr
    assert result.stderr.decode().startswith("askgpt: error: ") and b"Traceback" not in result.stderr


def test_truncated_real_model_exits_4(tmp_path: Path) -> None:
    bad = tmp_path / "cut.gguf"
    with builtin_model().path.open("rb") as fh:
        bad.write_bytes(fh.read(2_000_000))
    result = run_askgpt(["-m", str(bad), "hi"])
    assert result.returncode == 4 and b"runs past the end of the file (truncated?)" in result.stderr


def test_ctrl_c_mid_answer_exits_130_with_partial_output() -> None:
    proc = subprocess.Popen(
        [ASKGPT_BIN, "-t", "0", "-n", "2000", "--ctx", "4096", "-s", "",
         "Write a very long story about a dragon, chapter by chapter."],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO / "tests",
        # A shell without job control (CI running us in the background) starts
        # children with SIGINT ignored; a user at a terminal has it live.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    first = proc.stdout.read(20)  # wait until the answer is streaming, then interrupt at once
    assert first                   # (a fixed wait could outlast a short answer on a fast machine)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert (first + rest).endswith(b"\n")
    assert err.decode().strip() == "askgpt: interrupted"


def test_closed_stdin_counts_as_no_input() -> None:
    result = subprocess.run(
        [ASKGPT_BIN, "-t", "0", "-n", "16", "What is the capital of France?"],
        capture_output=True, stdin=None, preexec_fn=lambda: os.close(0), cwd=REPO / "tests", timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout.decode()


def test_reader_closing_the_pipe_ends_quietly() -> None:
    script = f'set -o pipefail; "{ASKGPT_BIN}" -n 300 -s "" "Write a long story" | head -c 20 >/dev/null'
    result = subprocess.run(["bash", "-c", script], capture_output=True, cwd=REPO / "tests", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""


@pytest.fixture(scope="module")
def templateless_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in model with its chat template removed."""
    return builtin_without("tokenizer.chat_template", tmp_path_factory.mktemp("models"))


def test_model_without_template_gets_a_plain_prompt_and_stops_at_the_next_example(
    templateless_model: Path, isolated_home: Path,
) -> None:
    # Eight identical examples make the model continue the pattern, the next "Input:"
    # included. The test checks the margin it relies on: along that greedy path every
    # first choice leads its runner-up by at least 0.5 nats (measured: 1.2), far above
    # the last-bit differences between CPUs, so the exact answer and the stop reason
    # below are the same on any CPU. The CLI runs without the repeat penalty, as the walk does.
    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.llama.engine import load_llama_engine
    from askgpt.runtime.models.registry import ModelRef

    examples = tuple(Example("cheese", "fromage") for _ in range(8))
    request = Request("cheese", system="Translate English to French.", examples=examples)
    with load_llama_engine(ModelRef("templateless", templateless_model), EngineConfig(n_ctx=2048)) as engine:
        prompt = prepare(engine, request, GenerationConfig(64))
        assert prompt.stop, "a templateless prompt stops at the next example"
        text, lead = greedy_margins(engine, list(prompt.parts), 24, until=prompt.stop[0])
    assert lead >= 0.5, (text, lead)
    assert prompt.stop[0] in text and text.split(prompt.stop[0])[0].strip() == "fromage", text

    (isolated_home / "config").mkdir(parents=True, exist_ok=True)
    (isolated_home / "config" / "config.toml").write_text("repeat_penalty = 1.0\n")
    args = [arg for ex in examples for arg in ("-e", f"{ex.input} => {ex.output}")]
    result = run_askgpt(["-m", str(templateless_model), "-t", "0", "--stats",
                         "-s", "Translate English to French.", *args, "cheese"])
    assert result.returncode == 0, result.stderr
    answer = result.stdout.decode()
    assert answer.strip() == "fromage"  # cut before the model invents a new example
    assert "stop: stop" in result.stderr.decode()


def test_bench_speed_compares_askgpt_with_raw_llama_cpp(tmp_path: Path) -> None:
    import json

    result = run_askgpt(["bench", "speed", "--rounds", "1", "-n", "16", "--ctx", "1024", "--json", "-q"], timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["prompt_tokens"] > 200 and data["rounds"] == 1
    for key in ("askgpt_prefill", "raw_prefill", "askgpt_decode", "raw_decode"):
        assert data[key] > 1.0, key  # tokens/s, measured on both sides
    assert 0 < data["first_token_seconds"] < 30 and data["peak_rss_mb"] > 50


def test_threads_batch_and_a_quantized_attention_cache(tmp_path: Path) -> None:
    sizes = {}
    for kv in ("f16", "q8_0"):
        result = run_askgpt(["--stats", "-n", "4", "-t", "0", "--threads", "1", "--batch", "64", "--kv-type", kv,
                             "--ctx", "2048", "Say hi."])
        assert result.returncode == 0, result.stderr
        found = re.search(rb"kv cache: ([\d,]+) MiB", result.stderr)
        assert found is not None, result.stderr
        sizes[kv] = int(found.group(1).replace(b",", b""))
    # 30 layers x 2,048 positions x K and V x 192 wide: 45 MiB at 2 bytes, 34/32 bytes for q8_0
    assert sizes["f16"] == 45 and 23 <= sizes["q8_0"] <= 24
    bad = run_askgpt(["--kv-type", "q4", "hi"])
    assert bad.returncode == 2 and b"--kv-type must be one of f16|q8_0|f32" in bad.stderr
