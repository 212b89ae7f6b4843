"""The real built-in model (SmolLM2-135M-Instruct Q4_1) through llama.cpp.

Greedy decoding (temperature 0) makes these answers deterministic for a given
model file and llama.cpp build.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ASKGPT_BIN, REPO, run_askgpt

from askgpt.cli.ask import DEFAULT_SYSTEM
from askgpt.runtime.ask import GenerationConfig, StopReason, ask
from askgpt.runtime.engine import EmbeddingRows, Engine, TokenIds
from askgpt.runtime.errors import ContextOverflowError
from askgpt.runtime.models import builtin_model
from askgpt.runtime.prompt import Example, Request
from askgpt.runtime.sampling import SamplingConfig

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


def test_streamed_utf8_survives_token_boundaries(real_engine: Engine) -> None:
    # Without a system prompt this model answers in French; "É" spans two bytes.
    text, _ = greedy(real_engine, Request("What is the capital of France?"))
    assert "É" in text and "\ufffd" not in text


def test_few_shot_examples_teach_the_output_format(real_engine: Engine) -> None:
    task = "Classify the sentiment of the text as positive or negative."
    examples = (
        Example("I loved this movie!", "positive"), Example("What a waste of time.", "negative"),
        Example("Absolutely wonderful experience.", "positive"), Example("The food was terrible.", "negative"),
    )
    texts = ["This is the best day of my life.", "I hate waiting in line.", "Great job, I am so happy!"]
    zero = [greedy(real_engine, Request(t, system=task))[0].strip() for t in texts]
    few = [greedy(real_engine, Request(t, system=task, examples=examples))[0].strip() for t in texts]
    labels = {"positive", "negative"}
    assert all(a in labels for a in few), few  # in-context examples fix the format
    assert not all(a in labels for a in zero), zero  # zero-shot rambles


def test_loop_guard_stops_a_looping_model(real_engine: Engine) -> None:
    request = Request("Repeat the word 'hello' forever.", system=DEFAULT_SYSTEM)
    # With no repeat penalty and no guard this model loops until the limit...
    _, unguarded = greedy(real_engine, request, 300, repeat_penalty=1.0, loop_guard=None)
    assert unguarded.stop_reason is StopReason.LENGTH and unguarded.generated_tokens == 300
    # ...the loop guard cuts it off...
    text, guarded = greedy(real_engine, request, 300, repeat_penalty=1.0)
    assert guarded.stop_reason is StopReason.LOOP and guarded.generated_tokens < 150
    # ...and the default sampling (repeat penalty + guard) ends it properly.
    _, default = greedy(real_engine, request, 300)
    assert default.stop_reason in (StopReason.END, StopReason.LOOP) and default.generated_tokens < 150


def test_counting_is_not_mistaken_for_a_loop(real_engine: Engine) -> None:
    _, stats = greedy(real_engine, Request("List numbers", system=DEFAULT_SYSTEM), 120, repeat_penalty=1.0)
    assert stats.stop_reason is StopReason.LENGTH


def test_seed_makes_sampling_repeatable(real_engine: Engine) -> None:
    def sample(seed: int) -> str:
        cfg = GenerationConfig(40, SamplingConfig(temperature=1.0, seed=seed))
        return ask(real_engine, Request("Tell me a story about a cat."), cfg).text()

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_kv_cache_reuse_does_not_leak_between_prompts(real_engine: Engine) -> None:
    a = Request("What is the capital of France?", system=DEFAULT_SYSTEM)
    b = Request("What is the capital of Japan?", system=DEFAULT_SYSTEM)  # shares a long prefix with a
    first, _ = greedy(real_engine, a)
    other, _ = greedy(real_engine, b)
    again, _ = greedy(real_engine, a)
    assert first == again and "Paris" in first and "Tokyo" in other


def test_embedding_rows_in_place_of_token_ids_give_the_same_answer(real_engine: Engine) -> None:
    """The seam for images: rows fed as embeddings behave like the tokens they came from."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(builtin_model().path))
    table = next(t for t in reader.tensors if t.name == "token_embd.weight")
    prompt = real_engine.tokenize(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    cut = 5  # the "user\nWhat is the" rows go in as embeddings
    rows = dequantize(table.data[prompt[1:1 + cut]], table.tensor_type)
    assert rows.shape == (cut, real_engine.info.n_embd)

    def run(parts: list) -> list[int]:
        out = []
        for tok in real_engine.generate(parts, GREEDY):
            out.append(tok)
            if len(out) == 12:
                break
        return out

    by_ids = run([TokenIds(tuple(prompt))])
    by_rows = run([TokenIds((prompt[0],)), EmbeddingRows(rows), TokenIds(tuple(prompt[1 + cut:]))])
    assert by_rows == by_ids
    assert run([TokenIds(tuple(prompt))]) == by_ids  # placeholders never fake a prefix-cache hit


def test_context_overflow_is_refused_not_truncated(real_engine: Engine) -> None:
    long = Request("Summarize: " + "The quick brown fox jumps over the lazy dog. " * 300)
    with pytest.raises(ContextOverflowError) as err:
        ask(real_engine, long, GenerationConfig(max_tokens=512))
    e = err.value
    assert e.n_ctx == real_engine.info.n_ctx and e.fits == e.n_ctx - 512 and e.given > e.fits


def test_context_overflow_from_the_cli(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("All work and no play makes Jack a dull boy. " * 400)
    result = run_askgpt(["--ctx", "512", "-n", "128", "-f", str(big), "summarize"])
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
    assert result.returncode == 4 and b"could not load" in result.stderr


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
    first = proc.stdout.read(20)  # wait until the answer is streaming
    assert first
    time.sleep(0.3)
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
    """The built-in model with its chat template removed, written by gguf's own tool."""
    out = tmp_path_factory.mktemp("models") / "smollm2-no-template.gguf"
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--remove-metadata", "tokenizer.chat_template",
         str(builtin_model().path), str(out), "--force"],
        check=True, capture_output=True, timeout=300,
    )
    return out


def test_model_without_template_gets_a_plain_prompt_and_stops_at_the_next_example(
    templateless_model: Path,
) -> None:
    result = run_askgpt(["-m", str(templateless_model), "-t", "0", "--stats",
                         "-s", "Translate English to French.",
                         "-e", "sea otter => loutre de mer", "-e", "peppermint => menthe poivrée", "cheese"])
    assert result.returncode == 0, result.stderr
    answer = result.stdout.decode()
    assert answer.strip() and "Input:" not in answer  # cut before the model invents a new example
    assert "stop: stop" in result.stderr.decode()
