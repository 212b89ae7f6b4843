"""`askgpt chat`: the command parser, the session on the real model (earlier turns
stay in the attention cache), and the real REPL driven through a pseudo-terminal."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from terminal import run_in_pty

from askgpt.chat_session import COMMANDS, ChatSession, Command, parse_line
from askgpt.runtime.errors import UsageError
from conftest import ASKGPT_BIN, REPO


@given(st.text().filter(lambda t: not t.strip().startswith("/")))
def test_plain_lines_are_questions(text: str) -> None:
    assert parse_line(text) == text.strip()


@given(st.text(min_size=1).filter(lambda t: t.strip() == t and "\n" not in t))
def test_a_double_slash_sends_the_slash(text: str) -> None:
    assert parse_line("//" + text) == "/" + text


def test_commands_parse_and_check_their_argument() -> None:
    assert parse_line("/file notes.md") == Command("file", "notes.md")
    assert parse_line("  /SYSTEM  Be terse.  ") == Command("system", "Be terse.")
    assert parse_line("/system") == Command("system", "")  # no system prompt
    assert parse_line("/example a => b") == Command("example", "a => b")
    for name in COMMANDS:
        assert isinstance(parse_line(f"/{name} x"), Command)
    with pytest.raises(UsageError, match="needs"):
        parse_line("/image")
    with pytest.raises(UsageError, match="unknown"):
        parse_line("/imgae pic.png")


@pytest.mark.model
def test_a_second_turn_reuses_the_first_from_the_attention_cache(real_engine) -> None:  # type: ignore[no-untyped-def]
    from askgpt.runtime.engine.base import prompt_keys
    from askgpt.runtime.engine.sampling import SamplingConfig
    from askgpt.runtime.prompting.generate import GenerationConfig, prepare

    config = GenerationConfig(24, SamplingConfig(temperature=0))
    session = ChatSession(real_engine, config, system="Be brief.")
    first = session.request("Name three colours.")
    n_first = prepare(real_engine, first, config).n_tokens
    answer = session.ask(first)
    answer.text()
    session.finish(first, answer)
    second = prepare(real_engine, session.request("Which of them is warmest?"), config)
    llm = real_engine.native.llm
    cached = llm.input_ids[: llm.n_tokens].tolist()
    keys = prompt_keys(second.parts)
    pairs = zip(cached, keys, strict=False)
    common = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(cached), len(keys)))
    # The first question and (all but at most its last tokens of) the first answer are
    # already in the cache: only the new turn is read.
    assert common >= n_first + answer.stats.generated_tokens - 3  # type: ignore[union-attr]
    assert session.history[0].user == "Name three colours."


@pytest.mark.model
def test_the_repl_through_a_pseudo_terminal(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "notes.txt").write_text("The meeting is in room 42 on Thursday.\n")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "red.png")
    steps = [
        "My name is Zorblax.", "What is my name?",
        "/system You are a terse assistant.", "/example hi => HELLO",
        "/file notes.txt", "Which room is the meeting in?",
        "/image red.png", "What colour is this picture?",
        '"""', "Say hi", "in French.", '"""',
        "/stats", "/save out.md",
        "Write a very long story about a dragon who learns to cook.", "CTRL-C",
        "/model smollm2", "/bogus", "/help", "/clear", "CTRL-D",
    ]
    state = {"prompts": 0, "step": 0, "out": b"", "mark": 0}

    def on_output(chunk: bytes, send) -> None:  # type: ignore[no-untyped-def]
        state["out"] += chunk  # type: ignore[operator]
        out: bytes = state["out"]  # type: ignore[assignment]
        step = steps[state["step"]] if state["step"] < len(steps) else None  # type: ignore[index]
        if step == "CTRL-C":
            if len(out) - state["mark"] > 150:  # the story is being written: stop it
                send(b"\x03")
                state["step"] += 1  # type: ignore[operator]
            return
        prompts = out.count(b"askgpt> ") + out.count(b"....... ")
        if prompts > state["prompts"] and step is not None:  # type: ignore[operator]
            state["prompts"] = prompts
            state["step"] += 1  # type: ignore[operator]
            state["mark"] = len(out)
            send(b"\x04" if step == "CTRL-D" else step.encode() + b"\r")

    home = tmp_path / "home"
    run = run_in_pty([ASKGPT_BIN, "chat", "-t", "0", "-n", "200"], on_output=on_output, cwd=str(tmp_path),
                     env={"ASKGPT_HOME": str(home)}, timeout=600, stderr_to_pty=True, cols=120, rows=40)
    text = "\n".join(run.transcript)
    assert run.returncode == 0, text
    assert state["step"] == len(steps), text
    for expected in ["system prompt set", "example added: hi => HELLO", "attached notes.txt",
                     "attached red.png", "turn(s) in this conversation", "saved 5 turn(s)", "(stopped)",
                     "now smollm2", "unknown command /bogus", "/image PATH", "conversation cleared"]:
        assert expected in text, expected
    saved = (tmp_path / "out.md").read_text()
    assert saved.count("## You") == 5 and "Zorblax" in saved and "(about notes.txt)" in saved
    assert "Say hi\nin French." in saved  # the multi-line question, whole
    logged = json.loads(subprocess.run([ASKGPT_BIN, "logs", "-n", "20", "--json"], capture_output=True,
                                       env={**os.environ, "ASKGPT_HOME": str(home)}, cwd=REPO / "tests",
                                       check=True).stdout)
    assert len(logged) == 6 and len({e["conversation_id"] for e in logged}) == 1
    assert logged[0]["stop_reason"] == "interrupted"
    assert (home / "data" / "chat_history").is_file()  # line history kept for the next run


@pytest.mark.model
def test_a_document_larger_than_the_window_goes_through_a_strategy(real_engine) -> None:  # type: ignore[no-untyped-def]
    from askgpt.runtime.engine.sampling import SamplingConfig
    from askgpt.runtime.prompting.generate import GenerationConfig
    from askgpt.runtime.prompting.request import Document

    session = ChatSession(real_engine, GenerationConfig(16, SamplingConfig(temperature=0)))
    doc = "\n".join(f"Line {i}: the weather in town {i} was mild." for i in range(900)) + "\nThe vault code is 7734.\n"
    assert len(real_engine.tokenize(doc)) > 2 * real_engine.info.n_ctx
    session.documents.append(Document("big.txt", doc))
    request = session.request("What is the vault code?")
    answer = session.ask(request)  # a one-shot prompt this size would be a ContextOverflowError
    answer.text()
    session.finish(request, answer)
    assert answer.stats is not None and session.history[0].user == "(about big.txt) What is the vault code?"
