"""The conversation log (SQLite), continuing conversations, and `askgpt logs`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from askgpt.runtime.errors import ExitCode
from askgpt.runtime.prompting.request import Request, Turn
from askgpt.runtime.store.log import MIGRATIONS, Attachment, ConversationLog, Exchange, LogError
from conftest import ASKGPT_BIN, REPO, run_askgpt


def exchange(cid: str = "c1", prompt: str = "What is BPE?", answer: str = "Byte pair encoding.",
             model_path: str = "/nonexistent/model.gguf") -> Exchange:
    return Exchange(conversation_id=cid, model="m", model_path=model_path, prompt=prompt, answer=answer,
                    system="Be brief.", examples=(("a", "b"),),
                    documents=(Attachment.of_bytes("notes.md", b"hello"),), options={"temperature": 0},
                    prompt_tokens=10, answer_tokens=4, prompt_seconds=0.1, answer_seconds=0.2, stop_reason="end")


def test_an_exchange_round_trips(tmp_path: Path) -> None:
    log = ConversationLog(tmp_path / "logs.db")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights")
    first = log.record(exchange(model_path=str(model)))
    got = log.get(first)
    assert got is not None
    assert (got.prompt, got.answer, got.system, got.examples) == ("What is BPE?", "Byte pair encoding.",
                                                                   "Be brief.", (("a", "b"),))
    assert got.documents == (Attachment("notes.md", 5, Attachment.of_bytes("x", b"hello").sha256),)
    assert got.model_sha256 == Attachment.of_bytes("m", b"weights").sha256
    assert (got.prompt_tokens, got.answer_tokens, got.stop_reason) == (10, 4, "end")
    assert log.get(first + 1) is None


def test_recent_search_and_conversations(tmp_path: Path) -> None:
    log = ConversationLog(tmp_path / "logs.db")
    log.record(exchange("c1", "tell me about tokenizers", "BPE merges pairs"))
    log.record(exchange("c2", "what is a llama?", "An animal."))
    log.record(exchange("c1", "and sentencepiece?", "Another tokenizer."))
    assert [e.prompt for e in log.recent(limit=2)] == ["and sentencepiece?", "what is a llama?"]
    assert [e.prompt for e in log.recent(query="tokenizer")] == ["and sentencepiece?"]
    assert [e.prompt for e in log.recent(query="BPE")] == ["tell me about tokenizers"]
    assert log.recent(query='llama? -"AND:(') == []  # query syntax characters are plain text
    assert [e.prompt for e in log.recent(conversation="c1")] == ["and sentencepiece?", "tell me about tokenizers"]
    assert [e.answer for e in log.conversation("c1")] == ["BPE merges pairs", "Another tokenizer."]
    assert log.latest_conversation() == "c1"


def test_schema_is_versioned_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    ConversationLog(path).record(exchange())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(LogError, match="newer askgpt"):
        ConversationLog(path).recent()


WRITER = """
import sys
from askgpt.runtime.store.log import ConversationLog, Exchange
log = ConversationLog(__import__("pathlib").Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    log.record(Exchange(conversation_id=sys.argv[2], model="m", model_path="/none", prompt=f"q{i}", answer="a"))
"""


def test_parallel_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{k}", "40"], cwd=REPO / "tests",
                              stderr=subprocess.PIPE) for k in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    log = ConversationLog(path)
    assert len(log.recent(limit=1000)) == 160
    for k in range(4):
        assert [e.prompt for e in log.conversation(f"w{k}")] == [f"q{i}" for i in range(40)]


def test_a_damaged_log_is_a_log_error(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LogError):
        ConversationLog(path).record(exchange())


@pytest.mark.model
def test_history_keeps_the_latest_turns_that_fit(real_engine) -> None:  # type: ignore[no-untyped-def]
    from askgpt.conversation import fit_history

    turns = tuple(Turn(f"question {i} " + "word " * 100, f"answer {i}") for i in range(30))
    fitted, dropped = fit_history(real_engine, Request("next?", system="Be brief.", history=turns))
    assert dropped > 0 and fitted.history == turns[dropped:]
    # The left-out turns are summarized in the system prompt, latest first kept.
    assert fitted.system is not None and fitted.system.startswith("Be brief.\n\nEarlier in this conversation")
    assert f'"question {dropped - 1} word' in fitted.system and '"question 0 word' not in fitted.system
    assert fit_history(real_engine, Request("next?", history=turns[:2])) == (Request("next?", history=turns[:2]), 0)


@pytest.mark.model
def test_an_earlier_turn_informs_the_next_answer(real_engine) -> None:  # type: ignore[no-untyped-def]
    from askgpt.runtime.engine.base import TokenIds
    from askgpt.runtime.prompting.generate import GenerationConfig, prepare

    name = " Zorblax"
    turn = Turn("My name is Zorblax. Please remember it.", "Nice to meet you, Zorblax! I will remember your name.")

    def name_logprob(history: tuple[Turn, ...]) -> float:
        prompt = prepare(real_engine, Request("What is my name?", history=history), GenerationConfig(8))
        ids = [t for p in prompt.parts if isinstance(p, TokenIds) for t in p.ids]
        ids += real_engine.tokenize("Your name is", special=False)
        total = 0.0
        for token in real_engine.tokenize(name, special=False):
            total += float(real_engine.next_token_logprobs([TokenIds(tuple(ids))])[token])
            ids.append(token)
        return total

    # Measured: -2.1 with the earlier turn, -21.4 without; the bar leaves a wide margin.
    assert name_logprob((turn,)) > name_logprob(()) + 10


def ask_in(home: Path, *args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return run_askgpt(["-t", "0", "-n", "8", *args], input=input, env={"ASKGPT_HOME": str(home)})


def logs(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    import os

    return subprocess.run([ASKGPT_BIN, "logs", *args], capture_output=True, cwd=REPO / "tests",
                          env={**os.environ, "ASKGPT_HOME": str(home)}, timeout=60)


@pytest.mark.model
def test_cli_logs_each_exchange_and_continues_conversations(tmp_path: Path) -> None:
    home = tmp_path / "home"
    doc = tmp_path / "notes.md"
    doc.write_text("The meeting is on Thursday.")
    assert ask_in(home, "-f", str(doc), "When is the meeting?").returncode == 0
    assert ask_in(home, "-c", "And where?").returncode == 0
    assert ask_in(home, "Unrelated question.").returncode == 0
    assert ask_in(home, "--no-log", "Not kept.").returncode == 0
    listed = json.loads(logs(home, "--json").stdout)
    assert [e["prompt"] for e in listed] == ["Unrelated question.", "And where?", "When is the meeting?"]
    first, second, third = listed[2], listed[1], listed[0]
    assert second["conversation_id"] == first["conversation_id"] != third["conversation_id"]
    assert first["documents"][0]["source"] == str(doc) and first["documents"][0]["size"] == 27
    assert second["prompt_tokens"] > third["prompt_tokens"]  # the earlier turn was sent again
    assert len(first["model_sha256"]) == 64
    # --cid continues a given conversation, even after another one.
    assert ask_in(home, "--cid", first["conversation_id"], "Thanks.").returncode == 0
    thread = json.loads(logs(home, "--cid", first["conversation_id"], "--json").stdout)
    assert [e["prompt"] for e in thread] == ["Thanks.", "And where?", "When is the meeting?"]
    assert b"When is the meeting?" in logs(home, "-q", "meeting").stdout
    shown = logs(home, "show", str(first["id"]))
    assert shown.returncode == 0 and b"document: " in shown.stdout and b"> When is the meeting?" in shown.stdout
    assert logs(home, "show", "999").returncode == ExitCode.NOT_FOUND
    assert logs(home, "path").stdout.decode().strip() == str(home / "data" / "logs.db")
    unknown = ask_in(home, "--cid", "nope", "hi")
    assert unknown.returncode == ExitCode.NOT_FOUND and b"no conversation" in unknown.stderr


@pytest.mark.model
def test_logging_off_in_the_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text("log = false\n")
    assert ask_in(home, "hi").returncode == 0
    assert not (home / "data" / "logs.db").exists()


@pytest.mark.model
def test_a_damaged_or_locked_log_never_stops_an_answer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    db = home / "data" / "logs.db"
    db.write_bytes(b"garbage " * 1000)
    result = ask_in(home, "What is the capital of France?")
    assert result.returncode == 0 and b"Paris" in result.stdout
    assert b"not logged" in result.stderr and len(result.stderr.decode().strip().splitlines()) == 1
    continued = ask_in(home, "-c", "And of Italy?")
    assert continued.returncode == 0 and b"without the earlier turns" in continued.stderr

    db.unlink()
    assert ask_in(home, "hi").returncode == 0  # a fresh log
    holder = sqlite3.connect(db, timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock past the busy timeout
    try:
        locked = ask_in(home, "What is the capital of France?")
        assert locked.returncode == 0 and b"Paris" in locked.stdout
        assert b"not logged" in locked.stderr
    finally:
        holder.close()
    assert len(ConversationLog(db).recent()) == 1  # the first answer's row; the locked one was skipped
