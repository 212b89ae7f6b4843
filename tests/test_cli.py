"""CLI logic on the scripted engine: routing, inputs, rendering, exit codes."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from fakes import ScriptedEngine, ScriptedFactory
from typer.testing import CliRunner

from askgpt import __version__
from askgpt.cli.app import create_app
from askgpt.cli.terminal.render import make_sink, stream_answer
from askgpt.runtime.errors import ModelLoadError


def invoke(args: list[str], *, factory: ScriptedFactory | None = None, input: bytes | str | None = None):
    factory = factory or ScriptedFactory()
    result = CliRunner().invoke(create_app(factory), args, input=input, catch_exceptions=False)
    return result, factory


def test_bare_prompt_routes_to_ask_and_joins_words() -> None:
    result, factory = invoke(["What", "is", "BPE?"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "scripted answer\n"
    prompt = factory.engine.prompts[0]
    assert "<|im_start|>user\nWhat is BPE?<|im_end|>" in prompt
    assert factory.engine.closed


def test_options_before_prompt_route_to_ask() -> None:
    result, factory = invoke(["-m", "smollm2", "-n", "7", "hello"])
    assert result.exit_code == 0, result.stderr
    assert factory.calls[0][0].builtin
    assert result.stdout == "scripte\n"  # 7 one-byte tokens of the scripted answer


def test_explicit_ask_subcommand_and_subcommand_coexist() -> None:
    asked, _ = invoke(["ask", "models"])  # the word "models" as a question
    assert asked.exit_code == 0 and asked.stdout == "scripted answer\n"
    listed, factory = invoke(["models", "list"])
    assert listed.exit_code == 0
    assert "smollm2" in listed.stdout and "built-in" in listed.stdout
    assert factory.calls == []  # listing never loads a model


def test_version_and_help() -> None:
    version, _ = invoke(["--version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"askgpt {__version__}"
    helped, factory = invoke(["--help"])
    assert helped.exit_code == 0 and "models" in helped.stdout and "ask" in helped.stdout
    ask_help, _ = invoke(["ask", "--help"])
    for flag in ("--model", "--system", "--file", "--example", "--examples", "--temperature",
                 "--max-tokens", "--seed", "--ctx", "--no-stream", "--stats", "--quiet"):
        assert flag in ask_help.stdout
    assert factory.calls == []


def test_only_the_answer_goes_to_stdout_stats_to_stderr() -> None:
    result, _ = invoke(["--stats", "hi"])
    assert result.stdout == "scripted answer\n"
    assert "prompt:" in result.stderr and "tokens/s" in result.stderr and "load:" in result.stderr


def test_no_stream_prints_the_same_answer() -> None:
    result, _ = invoke(["--no-stream", "hi"])
    assert result.exit_code == 0 and result.stdout == "scripted answer\n"


def test_piped_stdin_is_the_document_and_the_argument_the_instruction() -> None:
    result, factory = invoke(["summarize this"], input="line one\nline two\n")
    assert result.exit_code == 0
    prompt = factory.engine.prompts[0]
    doc = prompt.index('<document source="stdin">\nline one\nline two\n</document>')
    assert doc < prompt.index("summarize this")


def test_stdin_alone_is_the_question() -> None:
    result, factory = invoke([], input="What is 2+2?\n")
    assert result.exit_code == 0
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in factory.engine.prompts[0]


def test_files_and_stdin_order(tmp_path: Path) -> None:
    notes, todo = tmp_path / "notes.md", tmp_path / "todo.txt"
    notes.write_text("NOTES")
    todo.write_bytes(b"TODO \xff")  # not UTF-8: decoded with replacement
    result, factory = invoke(["-f", str(notes), "-f", "-", "-f", str(todo), "what is overdue?"], input="PIPED")
    assert result.exit_code == 0, result.stderr
    p = factory.engine.prompts[0]
    order = [p.index(f'source="{notes}"'), p.index('source="stdin"'), p.index(f'source="{todo}"'),
             p.index("what is overdue?")]
    assert order == sorted(order)
    assert "TODO \ufffd" in p


def test_few_shot_examples_become_turns(tmp_path: Path) -> None:
    jsonl = tmp_path / "ex.jsonl"
    jsonl.write_text(json.dumps({"input": "plush girafe", "output": "girafe peluche"}) + "\n")
    result, factory = invoke([
        "-s", "Translate English to French.",
        "-e", "sea otter => loutre de mer", "-e", "peppermint => menthe poivrée",
        "--examples", str(jsonl), "cheese",
    ])
    assert result.exit_code == 0, result.stderr
    p = factory.engine.prompts[0]
    expected = (
        "<|im_start|>system\nTranslate English to French.<|im_end|>\n"
        "<|im_start|>user\nsea otter<|im_end|>\n<|im_start|>assistant\nloutre de mer<|im_end|>\n"
        "<|im_start|>user\npeppermint<|im_end|>\n<|im_start|>assistant\nmenthe poivrée<|im_end|>\n"
        "<|im_start|>user\nplush girafe<|im_end|>\n<|im_start|>assistant\ngirafe peluche<|im_end|>\n"
        "<|im_start|>user\ncheese<|im_end|>\n<|im_start|>assistant\n"
    )
    assert p == expected


def test_default_system_prompt_and_empty_system() -> None:
    _, factory = invoke(["hi"])
    assert factory.engine.prompts[0].startswith("<|im_start|>system\nYou are a helpful assistant.")
    _, factory = invoke(["-s", "", "hi"])
    assert factory.engine.prompts[0].startswith("<|im_start|>user\nhi")


def test_config_file_and_env_defaults(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_home / "config").mkdir(parents=True)
    (isolated_home / "config" / "config.toml").write_text('ctx = 1280\nsystem = "Be terse."\nmax_tokens = 3\n')
    result, factory = invoke(["hi"])
    assert factory.calls[0][1].n_ctx == 1280
    assert factory.engine.prompts[0].startswith("<|im_start|>system\nBe terse.")
    assert result.stdout == "scr\n"
    result, factory = invoke(["--ctx", "999", "-n", "4", "hi"])  # flags beat the config
    # 999 rounded up to llama.cpp's multiple of 256, as llama.cpp itself would make it
    assert factory.calls[0][1].n_ctx == 1024 and result.stdout == "scri\n"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        ([], 2, "nothing to ask"),
        (["-e", "no separator", "x"], 2, "INPUT => OUTPUT"),
        (["--bogus-flag", "x"], 2, "No such option"),
        (["-t", "-1", "x"], 2, "temperature"),
        (["-f", "/no/such/file.txt", "x"], 3, "file not found"),
        (["--examples", "/no/such.jsonl", "x"], 3, "examples file not found"),
        (["-m", "/no/such/model.gguf", "x"], 3, "model file not found"),
        (["-m", "nosuchname", "x"], 3, "no model named 'nosuchname'"),
        (["--strategy", "guess", "x"], 2, "--strategy must be one of"),
        (["--ocr", "maybe", "-i", "nope.png", "x"], 2, "--ocr must be one of"),
        (["--image-mode", "pixels", "-i", "nope.png", "x"], 2, "--image-mode must be one of"),
        (["-i", "/no/such/image.png", "x"], 3, "image not found"),
        (["--read-tokens", "10", "x"], 2, "--read-tokens must be at least 64"),
    ],
)
def test_errors_are_one_line_with_documented_exit_codes(args: list[str], code: int, needle: str) -> None:
    result, _ = invoke(args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_context_overflow_says_how_many_tokens_given_and_fit() -> None:
    factory = ScriptedFactory(ScriptedEngine(n_ctx=300))
    result, _ = invoke(["-s", "", "-n", "100", "x" * 500], factory=factory)
    assert result.exit_code == 1
    # 500 x's + ChatML's "<|im_start|>user\n", "<|im_end|>\n", "<|im_start|>assistant\n"
    # = 550 one-byte tokens; 300 - 100 = 200 fit.
    assert "the input is 550 tokens but only 200 fit" in result.stderr
    assert factory.engine.prompts == []  # nothing was generated from a truncated prompt


def test_model_load_failure_exits_4() -> None:
    def failing(ref, config):
        raise ModelLoadError("llama.cpp could not load it")

    result = CliRunner().invoke(create_app(failing), ["hi"])
    assert result.exit_code == 4 and "could not load" in result.stderr


def test_ctrl_c_flushes_partial_answer_and_exits_130() -> None:
    def interrupt(i: int) -> None:
        if i == 8:
            raise KeyboardInterrupt

    engine = ScriptedEngine(on_token=interrupt)
    result, _ = invoke(["hi"], factory=ScriptedFactory(engine))
    assert result.exit_code == 130
    assert result.stdout == "scripted\n"  # what was generated, then a newline
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr
    assert engine.closed


def test_debug_shows_traceback_only_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet, _ = invoke(["-f", "/no/such", "x"])
    assert "Traceback" not in quiet.stderr
    loud, _ = invoke(["--debug", "-f", "/no/such", "x"])
    assert "Traceback" in loud.stderr and loud.exit_code == 3
    monkeypatch.setenv("ASKGPT_DEBUG", "1")
    env, _ = invoke(["-f", "/no/such", "x"])
    assert "Traceback" in env.stderr


def test_internal_errors_are_one_line_too() -> None:
    def buggy(i: int) -> None:
        raise ZeroDivisionError("oops")

    result, _ = invoke(["hi"], factory=ScriptedFactory(ScriptedEngine(on_token=buggy)))
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("rerun with --debug for a traceback")
    assert "Traceback" not in result.stderr


def test_bad_config_file_is_a_usage_error(isolated_home: Path) -> None:
    (isolated_home / "config").mkdir(parents=True)
    (isolated_home / "config" / "config.toml").write_text("temprature = 3\n")
    result, _ = invoke(["hi"])
    assert result.exit_code == 2 and "unknown key(s)" in result.stderr and "temprature" in result.stderr


def test_loop_and_length_warnings_go_to_stderr_unless_quiet() -> None:
    engine = ScriptedEngine(answer="ab" * 40)
    result, _ = invoke(["hi"], factory=ScriptedFactory(engine))
    assert "repeating itself" in result.stderr
    assert result.stdout.count("ab") < 40  # stopped by the loop guard
    quiet, _ = invoke(["-q", "-n", "3", "hi"])
    assert quiet.stderr == "" and quiet.stdout == "scr\n"


class TerminalBuffer(io.StringIO):
    """A stdout that says it is a terminal, as rich checks."""

    def isatty(self) -> bool:
        return True


def has_colour(text: str) -> bool:
    """Any SGR escape that sets a foreground or background colour."""
    for params in re.findall(r"\x1b\[([0-9;]*)m", text):
        for p in filter(None, params.split(";")):
            if 30 <= int(p) <= 49 or 90 <= int(p) <= 107:
                return True
    return False


def test_terminal_answer_is_rendered_markdown() -> None:
    out = TerminalBuffer()
    stream_answer(["Some **bold** ", "and a list:\n\n", "- `code` item\n"], make_sink(out, markdown=True))
    text = out.getvalue()
    assert "**" not in text and "bold" in text and "code" in text
    assert "\x1b[1m" in text  # bold rendered by the terminal, not as asterisks
    assert has_colour(text)


def test_no_color_keeps_markdown_but_drops_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = TerminalBuffer()
    stream_answer(["Some **bold** ", "and `code`\n"], make_sink(out, markdown=True))
    text = out.getvalue()
    assert "**" not in text and "bold" in text
    assert not has_colour(text), repr(text)


def test_piped_answer_is_plain_and_unwrapped() -> None:
    out = io.StringIO()
    long_line = "word " * 60 + "**kept**"
    stream_answer([long_line], make_sink(out, markdown=False))
    assert out.getvalue() == long_line + "\n"


def test_askgpt_model_env_replaces_the_builtin_and_m_beats_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKGPT_MODEL", "/no/such/env-model.gguf")
    result, _ = invoke(["hi"])
    assert result.exit_code == 3 and "env-model.gguf" in result.stderr
    result, factory = invoke(["-m", "smollm2", "hi"])
    assert result.exit_code == 0 and factory.calls[0][0].builtin


def test_reading_spinner_is_silent_off_a_terminal() -> None:
    # stderr is not a terminal under the runner: no spinner frames may leak into it.
    result, _ = invoke(["hi"])
    assert result.stderr == ""


def test_logs_config_and_templates_commands_on_the_scripted_engine() -> None:
    assert invoke(["first question"])[0].exit_code == 0
    assert invoke(["-c", "second question"])[0].exit_code == 0
    listed = json.loads(invoke(["logs", "--json"])[0].stdout)
    assert [e["prompt"] for e in listed] == ["second question", "first question"]
    assert listed[0]["conversation_id"] == listed[1]["conversation_id"]
    assert "first question" in invoke(["logs", "show", str(listed[1]["id"])])[0].stdout

    assert invoke(["config", "set", "max_tokens", "3"])[0].exit_code == 0
    shown = json.loads(invoke(["config", "show", "--json"])[0].stdout)
    assert shown["max_tokens"] == {"value": 3, "source": "config file"}
    assert invoke(["hello"])[0].stdout == "scr\n"  # the config's max_tokens applies
    assert invoke(["config", "unset", "max_tokens"])[0].exit_code == 0

    result, factory = invoke(["-T", "classify", "I love it."])
    assert result.exit_code == 0
    prompt = factory.engine.prompts[0]
    assert "Classify the sentiment" in prompt and "What a fantastic day!" in prompt
    assert invoke(["templates", "save", "t1", "-s", "Task one."])[0].exit_code == 0
    assert "t1" in invoke(["templates", "list"])[0].stdout


def test_chat_on_the_scripted_engine() -> None:
    result, factory = invoke(["chat"], input="hello\n/system Be terse.\nagain\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("scripted answer") == 2
    second = factory.engine.prompts[1]
    assert "Be terse." in second and "hello" in second and "scripted answer" in second  # the first turn is resent
    assert len(factory.calls) == 1  # the model loaded once
