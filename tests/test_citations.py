"""Citations: the evidence the model was given, after its answer, under "Sources:", one
``- [where] text`` line each. On a terminal they follow the answer on stdout, dimmed and
neutralized; when stdout is a pipe or a file (or holds JSON) they go to stderr, so a script's
stdout is only the answer. --no-cite, the config's ``cite = false`` and the API's ``cite=False``
turn them off; `Response.citations` carries them for the Python API.

The scripted engine answers; the citations come from map-reduce's key sentences, which are
found without the model (the sentence planted below is the one particular to its part)."""

from __future__ import annotations

import io
import json
import os
import random
import re
import sys
from pathlib import Path

import pytest
from fakes import ScriptedEngine, ScriptedFactory
from terminal import run_in_pty
from typer.testing import CliRunner

from askgpt.assistant import Assistant, Citation
from askgpt.cli.app import create_app
from askgpt.cli.ask import Streams, run_ask
from askgpt.cli.terminal.render import CITATION_CHARS, Messages, format_citations, write_citations
from askgpt.runtime.store.settings import load_settings, resolve_paths
from askgpt.session import AskOptions

REPO = Path(__file__).resolve().parent.parent
FACT = "The lighthouse keeper Marta counted 1911 gulls."
WORDS = "the a river town market people walked along road near old house".split()
ANSWER = "scripted answer"


CITED = f"- [town.txt, line 151] {FACT}"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the document is named "town.txt": short, as a user types it


def document(tmp_path: Path) -> Path:
    """About 20k byte-tokens of look-alike sentences and one particular line (line 151)."""
    rng = random.Random(1)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(300)]
    lines[150] = FACT
    (tmp_path / "town.txt").write_text("\n".join(lines))
    return Path("town.txt")


def cited(text: str) -> list[str]:
    """The citation lines that end ``text`` (stderr or stdout): a blank line, "Sources:", then
    one ``- [town.txt, line N] sentence`` line each; the planted sentence among them."""
    assert "\nSources:\n" in text, text
    head, _, tail = text.rpartition("\nSources:\n")
    lines = tail.split("\n")
    assert lines[-1] == "" and (head == "" or head.endswith("\n")), repr(text)  # a blank line before, a newline after
    assert all(re.fullmatch(r"- \[town\.txt, line \d+\] \S.*", line) for line in lines[:-1]), lines
    assert CITED in lines, lines
    return lines[:-1]


def invoke(args: list[str], answer: str = ANSWER, **kwargs: object) -> object:
    return CliRunner().invoke(create_app(ScriptedFactory(ScriptedEngine(answer=answer))), ["--no-log", *args],
                              **kwargs)


def summarize(path: Path, *more: str) -> list[str]:
    return ["--strategy", "map-reduce", "--read-tokens", "512", *more, "-f", str(path), "Summarize this."]


def test_in_a_pipe_stdout_is_the_answer_and_the_citations_go_to_stderr(tmp_path: Path) -> None:
    doc = document(tmp_path)
    result = invoke(summarize(doc))
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert result.stdout == ANSWER + "\n"  # type: ignore[attr-defined]
    cited(result.stderr)  # type: ignore[attr-defined]


def _config(text: str) -> None:
    path = resolve_paths(os.environ).config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_cite_and_the_config_key_turn_them_off_and_cite_turns_them_back_on(tmp_path: Path) -> None:
    doc = document(tmp_path)
    off = invoke(summarize(doc, "--no-cite"))
    assert off.exit_code == 0 and off.stdout == ANSWER + "\n"  # type: ignore[attr-defined]
    assert "Sources:" not in off.stderr and FACT not in off.stderr  # type: ignore[attr-defined]
    _config("cite = false\n")
    assert load_settings(os.environ).defaults.cite is False
    configured = invoke(summarize(doc))
    assert configured.exit_code == 0 and "Sources:" not in configured.stderr  # type: ignore[attr-defined]
    forced = invoke(summarize(doc, "--cite"))
    cited(forced.stderr)  # type: ignore[attr-defined]


def test_the_config_key_takes_only_true_or_false() -> None:
    result = CliRunner().invoke(create_app(ScriptedFactory()), ["config", "set", "cite", "maybe"])
    assert result.exit_code == 2 and "'cite' takes true or false" in result.stderr
    assert CliRunner().invoke(create_app(ScriptedFactory()), ["config", "set", "cite", "off"]).exit_code == 0
    assert load_settings(os.environ).defaults.cite is False


def _ask_on_a_terminal(opts: AskOptions, answer: str = ANSWER) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    run_ask(opts, settings=load_settings(os.environ), engine_factory=ScriptedFactory(ScriptedEngine(answer=answer)),
            streams=Streams(stdin=io.BytesIO(), stdin_is_terminal=True, stdout=stdout, stdout_is_terminal=True),
            messages=Messages(stderr, quiet=False))
    return stdout.getvalue(), stderr.getvalue()


def test_on_a_terminal_they_follow_the_answer_on_stdout_dimmed(tmp_path: Path) -> None:
    doc = document(tmp_path)
    opts = AskOptions(prompt_words=("Summarize this.",), files=(str(doc),), strategy="map-reduce", read_tokens=512,
                      log=False)
    out, err = _ask_on_a_terminal(opts)
    assert "Sources:" not in err
    assert out.index(ANSWER) < out.index("Sources:")
    assert "\x1b[2m" in out[out.index(ANSWER) + len(ANSWER):]  # dim
    cited(re.sub("\x1b\\[[0-9;]*m", "", out))


def test_json_keeps_stdout_to_the_object_even_on_a_terminal(tmp_path: Path) -> None:
    doc = document(tmp_path)
    obj = '{"summary": "gulls"}'
    opts = AskOptions(prompt_words=("Summarize this.",), files=(str(doc),), strategy="map-reduce", read_tokens=512,
                      log=False, json_object=True)
    out, err = _ask_on_a_terminal(opts, answer=obj)
    assert json.loads(out) == {"summary": "gulls"}
    cited(err)
    piped = invoke(summarize(doc, "--json"), answer=obj)
    assert piped.exit_code == 0, piped.stderr  # type: ignore[attr-defined]
    assert json.loads(piped.stdout) == {"summary": "gulls"}  # type: ignore[attr-defined]
    cited(piped.stderr)  # type: ignore[attr-defined]


def test_a_real_terminal_shows_them_after_the_answer_and_stderr_stays_clear(tmp_path: Path) -> None:
    doc = document(tmp_path)
    answer = tmp_path / "answer.txt"
    answer.write_text(ANSWER)
    run = run_in_pty([sys.executable, str(REPO / "tests" / "scripted_cli.py"), str(answer), "0", "--no-log",
                      *summarize(doc)], cols=200, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert b"Sources:" not in run.stderr
    shown = [line.rstrip() for line in run.transcript]
    at = shown.index("Sources:")
    assert any(ANSWER in line for line in shown[:at])
    assert CITED in shown[at + 1:]


def test_untrusted_text_is_neutralized_and_never_markup_on_a_terminal() -> None:
    hostile = "a \x1b]0;PWNED\x07 b \x1b[2J [bold red]c[/bold red] :smile: [link=http://x]d[/link]"
    terminal = io.StringIO()
    write_citations(terminal, [("notes\x1b[31m.txt, line 3", hostile)], terminal=True)
    out = terminal.getvalue()
    for sequence in ("\x1b]0;", "\x1b[2J", "\x1b[31m", "\x07"):
        assert sequence not in out, sequence
    assert "\u241b]0;PWNED" in out and "[bold red]c[/bold red] :smile: [link=http://x]d[/link]" in out
    piped = io.StringIO()
    write_citations(piped, [("notes.txt, line 3", "plain [text]")], terminal=False)
    assert piped.getvalue() == "\nSources:\n- [notes.txt, line 3] plain [text]\n"  # no styling in a pipe


def test_long_citations_stay_one_readable_line_each() -> None:
    long = "word " * 200
    text = format_citations([("a.txt, lines 1-40", long), ("b.txt, lines 2-3", "first line\n  second line\n")])
    heading, first, second = text.strip("\n").split("\n")
    assert heading == "Sources:"
    cited = first.removeprefix("- [a.txt, lines 1-40] ")
    assert cited.endswith("\u2026") and len(cited) <= CITATION_CHARS and cited[:-1].strip() in long
    assert second == "- [b.txt, lines 2-3] first line second line"
    short = "x" * CITATION_CHARS  # at the limit: kept whole
    assert format_citations([("c", short)]).endswith(f"] {short}\n")


def chat(args: list[str], **kwargs: object) -> object:
    # The subcommand first: `askgpt --no-log chat` would ask the default command about "chat".
    return CliRunner().invoke(create_app(ScriptedFactory(ScriptedEngine(answer=ANSWER))),
                              ["chat", "--no-log", *args], **kwargs)


def test_a_file_name_s_control_characters_are_written_out_not_obeyed() -> None:
    text = format_citations([("odd\nname\x1b[31m.txt, line 3", "the fact\n")])
    assert text.splitlines() == ["", "Sources:", "- [odd\\nname\\x1b[31m.txt, line 3] the fact"]
    assert format_citations([("caf\u00e9 notes.txt", "x")]).endswith("- [caf\u00e9 notes.txt] x\n")
    assert format_citations([("a\\nb.txt", "x")]).endswith("- [a\\\\nb.txt] x\n")  # a real backslash, doubled


def test_chat_cites_after_each_answer(tmp_path: Path) -> None:
    doc = document(tmp_path)
    result = chat(["-f", str(doc)], input="Summarize this.\n")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    cited(result.stderr)  # type: ignore[attr-defined]
    assert "Sources:" not in result.stdout  # type: ignore[attr-defined]
    quiet = chat(["--no-cite", "-f", str(doc)], input="Summarize this.\n")
    assert quiet.exit_code == 0 and "Sources:" not in quiet.output  # type: ignore[attr-defined]


def test_the_python_api_exposes_them(tmp_path: Path) -> None:
    doc = document(tmp_path)
    with Assistant(engine_factory=ScriptedFactory(), log=False) as a:
        r = a.ask("Summarize this.", files=[str(doc)], strategy="map-reduce")
        assert r.text() == ANSWER
        assert Citation("town.txt, line 151", FACT) in r.citations
        assert a.ask("Summarize this.", files=[str(doc)], strategy="map-reduce", cite=False).citations == ()
        assert a.ask("hi").citations == ()  # nothing long: nothing quoted
        chat = a.chat()
        assert Citation("town.txt, line 151", FACT) in chat.ask("Summarize this.", files=[str(doc)]).citations
        assert a.chat(cite=False).ask("Summarize this.", files=[str(doc)]).citations == ()
    _config("cite = false\n")
    with Assistant(engine_factory=ScriptedFactory(), log=False) as a:
        assert a.ask("Summarize this.", files=[str(doc)], strategy="map-reduce").citations == ()
        assert a.ask("Summarize this.", files=[str(doc)], strategy="map-reduce", cite=True).citations != ()


@pytest.mark.parametrize("quiet", [["-q"], []])
def test_quiet_does_not_hide_them(tmp_path: Path, quiet: list[str]) -> None:
    doc = document(tmp_path)
    result = invoke(summarize(doc, *quiet))
    cited(result.stderr)  # type: ignore[attr-defined]
