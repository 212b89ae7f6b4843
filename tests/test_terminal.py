"""Answers rendered on a real pseudo-terminal: every line once, in order, in linear time."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import ASKGPT_BIN, REPO, run_askgpt
from hypothesis import given, settings
from hypothesis import strategies as st
from terminal import run_in_pty

from askgpt.cli.markdown_stream import StreamingMarkdown, stable_split

SCRIPTED_CLI = str(REPO / "tests" / "scripted_cli.py")


def markdown_answer() -> str:
    """A long answer (about 90 screen lines) in which every line carries a unique marker Lnnn."""
    n = iter(range(1, 1000))

    def m() -> str:
        return f"L{next(n):03d}"

    parts = [f"# Guide {m()}", "", f"Intro paragraph {m()} with **bold** and `code`.", "",
             f"## Steps {m()}", ""]
    parts += [f"- item {m()} of the list" for _ in range(30)]
    parts += ["", f"- loose item {m()}", "", f"- loose item {m()}", f"  continued {m()}"]
    parts += ["", f"Between {m()} the lists.", "", "```python"]
    parts += [f"x = {i}  # {m()}" for i in range(12)]
    parts += ["```", ""]
    parts += [f"{i}. numbered {m()}" for i in range(1, 16)]
    parts += ["", f"## Closing {m()}", "", f"Last words {m()}."]
    return "\n".join(parts) + "\n"


def markers(lines: list[str]) -> list[str]:
    return [m for line in lines for m in re.findall(r"L\d{3}", line)]


def scripted(tmp_path: Path, answer: str, delay: float, *args: str) -> list[str]:
    path = tmp_path / "answer.md"
    path.write_text(answer, encoding="utf-8")
    return [sys.executable, SCRIPTED_CLI, str(path), str(delay), *args]


def test_an_answer_taller_than_the_screen_shows_every_line_once_in_order(tmp_path: Path) -> None:
    answer = markdown_answer()
    expected = markers(answer.splitlines())
    run = run_in_pty(scripted(tmp_path, answer, 0.0004, "-n", "3000", "hi"), rows=24, cols=80, cwd=str(REPO / "tests"))
    assert run.returncode == 0, run.stderr
    assert len(run.transcript) > 24 * 3  # far taller than the screen
    assert markers(run.transcript) == expected
    assert any(line.lstrip().startswith("•") for line in run.transcript)  # rendered, not raw Markdown


def test_ctrl_c_keeps_what_was_rendered_and_exits_130(tmp_path: Path) -> None:
    answer = markdown_answer()
    typed = []

    def interrupt(chunk: bytes, send) -> None:
        if not typed and b"L020" in chunk:
            typed.append(True)
            send(b"\x03")  # Ctrl-C as typed: the terminal sends SIGINT to the foreground group

    run = run_in_pty(scripted(tmp_path, answer, 0.002, "-n", "3000", "hi"), rows=24, cols=80,
                     cwd=str(REPO / "tests"), on_output=interrupt)
    assert typed
    assert run.returncode == 130
    seen = markers(run.transcript)
    full = markers(answer.splitlines())
    assert len(seen) >= 20 and seen == full[:len(seen)]  # a prefix of the answer, each line once
    assert run.stderr.decode().strip() == "askgpt: interrupted"


def test_streamed_rendering_matches_rendering_the_whole_answer_at_once() -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    answer = markdown_answer()
    whole = Console(record=True, width=80, force_terminal=False)
    whole.print(Markdown(answer))
    streamed = Console(record=True, width=80, force_terminal=False)
    clock = iter(range(10**6))
    sink = StreamingMarkdown(streamed, min_interval=5, clock=lambda: next(clock))  # a draw every 5 pieces
    for i in range(0, len(answer), 3):
        sink.write(answer[i:i + 3])
    sink.finish()
    assert streamed.export_text().rstrip() == whole.export_text().rstrip()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["para text", "", "- item", "1. item", "```", "code", "# Head", "  indented",
                                 "> quote", "| a | b |", "|---|---|"]), max_size=30))
def test_stable_split_cuts_at_line_starts_outside_open_blocks(lines: list[str]) -> None:
    text = "\n".join(lines)
    cut, _ = stable_split(text)
    assert 0 <= cut <= len(text)
    assert cut == 0 or text[cut - 1] == "\n"
    head = text[:cut]
    assert head.splitlines().count("```") % 2 == 0  # never inside an open code fence


@pytest.mark.model
def test_real_model_answer_on_a_terminal_matches_the_piped_answer() -> None:
    args = ["-t", "0", "-n", "300", "Write a markdown guide with headings and bullet lists on how to learn Python."]
    piped = run_askgpt(args)
    assert piped.returncode == 0, piped.stderr
    rows = 8  # a small screen, so that the answer is taller than it whatever its length
    run = run_in_pty([ASKGPT_BIN, *args], rows=rows, cols=80, cwd=str(REPO / "tests"), timeout=180)
    assert run.returncode == 0, run.stderr

    def words(text: str) -> list[str]:
        return re.findall(r"[A-Za-z0-9]+", text)

    want, seen = words(piped.stdout.decode()), words("\n".join(run.transcript))
    assert len(want) > 40 and len(run.transcript) > rows
    # Nothing shown twice and nothing out of order: what the terminal shows is a
    # subsequence of the answer (rendering drops only Markdown syntax)...
    it = iter(want)
    assert all(w in it for w in seen)
    # ...and it shows (nearly) all of it.
    assert len(seen) >= 0.95 * len(want)


HOSTILE = "Title \x1b]0;PWNED\x07 link \x1b]8;;http://evil\x1b\\here\x1b]8;;\x1b\\ wipe \x1b[2J c1 \x9b31m end\n"


def test_escape_sequences_from_the_model_are_neutralised_on_a_terminal(tmp_path: Path) -> None:
    chunks: list[bytes] = []
    screen = run_in_pty(scripted(tmp_path, HOSTILE, 0.0, "say it"), cols=100, rows=20,
                        on_output=lambda chunk, send: chunks.append(chunk))
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    assert screen.returncode == 0
    for sequence in ("\x1b]0;PWNED", "\x1b]8;;", "\x1b[2J", "\x9b31m"):
        assert sequence not in raw, sequence
    text = "\n".join(screen.transcript)
    assert "PWNED" in text and "\u241b" in text  # shown, with a visible ESC, not obeyed
    assert "end" in text


def test_piped_output_stays_byte_faithful(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(scripted(tmp_path, HOSTILE, 0.0, "say it"), capture_output=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == HOSTILE
