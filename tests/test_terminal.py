"""Answers rendered on a real pseudo-terminal: every line once, in order, in linear time."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from terminal import run_in_pty

from askgpt.cli.terminal.markdown_stream import StreamingMarkdown, live_tail, stable_split
from conftest import ASKGPT_BIN, REPO, run_askgpt

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
    now = [0.0]  # one time unit per piece; a draw takes none of it
    sink = StreamingMarkdown(streamed, min_interval=5, clock=lambda: now[0])  # a draw every 5 pieces
    for i in range(0, len(answer), 3):
        sink.write(answer[i:i + 3])
        now[0] += 1
    sink.finish()
    assert streamed.export_text().rstrip() == whole.export_text().rstrip()


def rendered(text: str, width: int) -> list[str]:
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console(width=width, force_terminal=False, color_system=None)
    lines = ["".join(seg.text for seg in line).rstrip() for line in console.render_lines(Markdown(text))]
    while lines and not lines[-1]:
        lines.pop()
    return lines


WORDS = st.text(alphabet="abcdefghij ", min_size=1, max_size=70).map(lambda s: s.strip() or "x")


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.tuples(WORDS, st.booleans(), st.booleans()), min_size=1, max_size=40),
       start=st.integers(min_value=0, max_value=120), repeat_one=st.booleans(), rows=st.integers(1, 12))
def test_the_live_tail_of_a_numbered_list_shows_what_the_whole_list_shows(
        items: list[tuple[str, bool, bool]], start: int, repeat_one: bool, rows: int) -> None:
    # The live block is drawn from its tail only; the screen's last rows must not tell the difference.
    lines = []
    for k, (words, nested, gap) in enumerate(items):
        number = start if repeat_one else start + k  # models also write "1." on every item
        lines.append(f"{number}. {words}")
        if nested:
            lines.append(" " * len(f"{number}. ") + f"- {words[::-1]}")
        if gap:
            lines.append("")
    text = "\n".join(lines) + "\n"
    tail = live_tail(text, rows)
    assert len(tail) < len(text) or len(items) <= rows
    assert rendered(tail, 40)[-rows:] == rendered(text, 40)[-rows:]


@settings(max_examples=100, deadline=None)
@given(code=st.lists(st.sampled_from(["x = 1", "", "    return f(x)  # a comment that is long enough to wrap",
                                      "def f(y):", 's = """doc', '"""']), max_size=60),
       info=st.sampled_from(["python", "", "text"]), closed=st.booleans(), rows=st.integers(1, 12))
def test_the_live_tail_of_a_code_block_shows_what_the_whole_block_shows(
        code: list[str], info: str, closed: bool, rows: int) -> None:
    text = "\n".join([f"```{info}", *code, *(["```"] if closed else [])]) + "\n"
    tail = live_tail(text, rows)
    # Trailing blank lines show as nothing (rich strips them), so they are not counted.
    shown = len(code) - next((i for i, line in enumerate(reversed(code)) if line.strip()), len(code))
    assert len(tail) < len(text) or shown <= rows + 1
    assert rendered(tail, 40)[-rows:] == rendered(text, 40)[-rows:]


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


# Scripts parse these fields: their form is fixed, uncoloured, on a terminal and in a pipe.
STATS_FIELDS = re.compile(r"prompt: (\d+) tokens in \d+\.\d\ds \| answer: (\d+) tokens, (\d+\.\d) tokens/s \| ")


def stats_fields(line: str) -> tuple[int, int]:
    match = STATS_FIELDS.match(line)
    assert match is not None, line
    assert float(match.group(3)) > 0
    return int(match.group(1)), int(match.group(2))


def test_stats_fields_keep_their_form_on_a_terminal_and_in_a_pipe(tmp_path: Path) -> None:
    import subprocess

    answer = "# Notes\n\nSome **bold** words, `code` and a list:\n\n- one\n- two\n"
    tokens = len(answer.encode())  # the scripted engine's tokens are bytes
    cmd = scripted(tmp_path, answer, 0.001, "--stats", "hi")

    piped = subprocess.run(cmd, capture_output=True, cwd=str(REPO / "tests"))
    assert piped.returncode == 0, piped.stderr
    in_pipe = [line for line in piped.stderr.decode().splitlines() if line.startswith("prompt: ")]
    assert len(in_pipe) == 1
    prompt, answered = stats_fields(in_pipe[0])
    assert answered == tokens

    # The answer on a terminal, stats to a file or pipe (askgpt --stats ... 2>stats.txt).
    on_tty = run_in_pty(cmd, cols=200, rows=24, cwd=str(REPO / "tests"))
    assert on_tty.returncode == 0, on_tty.stderr
    assert any(line.lstrip().startswith("•") for line in on_tty.transcript)  # the answer was rendered
    lines = [line for line in on_tty.stderr.decode().splitlines() if line.startswith("prompt: ")]
    assert len(lines) == 1 and stats_fields(lines[0]) == (prompt, tokens)

    # Both on the terminal: the stats line is written as plain text, with no escape sequence inside it.
    chunks: list[bytes] = []
    both = run_in_pty(cmd, cols=200, rows=24, cwd=str(REPO / "tests"), stderr_to_pty=True,
                      on_output=lambda chunk, send: chunks.append(chunk))
    assert both.returncode == 0
    raw = b"".join(chunks).decode()
    start = raw.index("prompt: ")
    line = raw[start:raw.index("\n", start)].rstrip("\r")
    assert "\x1b" not in line
    assert stats_fields(line) == (prompt, tokens)
    assert [shown for shown in both.transcript if shown.startswith("prompt: ")] == [line]


def test_draws_take_at_most_their_budget_of_the_time_and_never_stop_for_long() -> None:
    import io
    import threading

    from rich.console import Console

    now = [0.0]
    draws: list[float] = []

    class SlowDraws(StreamingMarkdown):
        def _draw(self) -> None:  # a draw that takes draw_cost seconds of the clock
            draws.append(now[0])
            super()._draw()
            now[0] += draw_cost

    for draw_cost, want_gap in ((0.001, 0.25), (0.01, 0.51), (0.1, 2.1)):  # 0.1 s would need 5 s: capped at 2
        draws.clear()
        sink = SlowDraws(Console(file=io.StringIO(), force_terminal=True, width=80, height=24),
                         min_interval=0.25, budget=0.02, max_interval=2.0, clock=lambda: now[0])
        for thread in threading.enumerate():  # the renderer's imports, done in the background, first
            if thread.name == "askgpt-render-warm-up":
                thread.join()
        for i in range(1000):  # 100 tokens/s for 10 s
            sink.write(f"word{i} ")
            now[0] += 0.01
        sink.finish()
        gaps = [b - a for a, b in zip(draws, draws[1:], strict=False)]
        assert len(gaps) >= 3
        assert all(want_gap - 0.011 <= gap <= want_gap + 0.011 for gap in gaps), (draw_cost, gaps)
