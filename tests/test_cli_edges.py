"""What a new user tripped over (issue 19, section 5): each ends in one clear line on
stderr and the documented exit code, or does what it should. CLI logic runs on the
scripted engine (tests/fakes.py); the context rounding that llama.cpp itself does is
checked on the real built-in model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import ScriptedEngine, ScriptedFactory
from typer.testing import CliRunner

from askgpt import __version__
from askgpt.cli.app import create_app
from askgpt.cli.terminal.render import format_error
from askgpt.runtime.documents.inputs import image_format
from askgpt.runtime.errors import ExitCode, UsageError
from askgpt.runtime.store.settings import context_size
from conftest import REPO, run_askgpt

SCRIPTED_CLI = str(REPO / "tests" / "scripted_cli.py")


def invoke(args: list[str], *, factory: ScriptedFactory | None = None, input: bytes | str | None = None):
    factory = factory or ScriptedFactory()
    result = CliRunner().invoke(create_app(factory), args, input=input, catch_exceptions=False)
    return result, factory


def one_error_line(result, code: int, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


# --- 1. a context too small for llama.cpp, the model or the documents -----------------------------

@pytest.mark.parametrize("args", [["--ctx", "10", "-n", "16", "hi"], ["--ctx", "100", "-f", "-", "what is this"]])
def test_a_context_below_256_is_refused_before_anything_loads(args: list[str]) -> None:
    result, factory = invoke(args, input="some notes")
    one_error_line(result, ExitCode.USAGE_ERROR, "'--ctx': must be 0 (the model's training context) or at least 256")
    assert factory.calls == []


def test_contexts_are_made_what_llama_cpp_makes_them() -> None:
    # llama.cpp pads a context to a multiple of 256, while llama-cpp-python sizes its token
    # buffer by the number asked: asking for the padded size keeps the two equal.
    assert [context_size(n) for n in (0, 256, 257, 300, 512, 999, 4096)] == [0, 256, 512, 512, 512, 1024, 4096]
    for bad in (-1, 1, 255):
        with pytest.raises(UsageError):
            context_size(bad)


def test_a_small_config_ctx_is_refused_naming_the_config(isolated_home: Path) -> None:
    (isolated_home / "config").mkdir(parents=True)
    (isolated_home / "config" / "config.toml").write_text("ctx = 10\n")
    result, factory = invoke(["hi"])
    assert result.exit_code == ExitCode.USAGE_ERROR and "ctx" in result.stderr
    assert factory.calls == []


def test_a_window_too_small_to_read_a_long_document_in_parts_is_refused_at_once() -> None:
    # Each part would get a few tokens: thousands of model calls before the first word.
    factory = ScriptedFactory(ScriptedEngine(n_ctx=256))
    result, _ = invoke(["--strategy", "refine", "-n", "16", "-f", "-", "what is this"], factory=factory,
                       input="The cat sat on the mat. " * 400)
    one_error_line(result, ExitCode.USAGE_ERROR, "too small to read the documents in parts")
    assert "raise --ctx to at least" in result.stderr
    assert factory.engine.prompts == []  # no model call was made


@pytest.mark.model
def test_a_context_that_is_not_a_multiple_of_256_takes_a_prompt_past_the_number_asked() -> None:
    # Before: --ctx 300 let llama.cpp make 512 positions but gave llama-cpp-python a
    # 300-token buffer, so a prompt of 300-500 tokens ended in "internal error: ValueError:
    # could not broadcast". The prompt here is about 420 tokens (checked by --stats).
    result = run_askgpt(["--ctx", "300", "-n", "4", "-t", "0", "--stats", "Repeat: " + "cat " * 400])
    assert result.returncode == 0, result.stderr
    stats = result.stderr.decode()
    prompt_tokens = int(stats.split("prompt: ")[1].split(" tokens")[0])
    assert 300 < prompt_tokens < 512 - 4


# --- 2. model names ---------------------------------------------------------------------------------

def test_a_file_that_exists_is_a_path_whatever_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "copy.bin").write_bytes(b"GGUF")  # the scripted engine never reads it
    monkeypatch.chdir(tmp_path)
    result, factory = invoke(["-m", "copy.bin", "hi"])
    assert result.exit_code == 0, result.stderr
    assert factory.calls[0][0].path == (tmp_path / "copy.bin").resolve()


@pytest.mark.parametrize(("alias", "needle"), [("smollm2", "a name of the built-in model"),
                                               ("Default", "a name of the built-in model"),
                                               ("my model", "no spaces")])
def test_models_add_refuses_built_in_names_and_spaces(alias: str, needle: str, tmp_path: Path,
                                                     isolated_home: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    result, _ = invoke(["models", "add", str(tmp_path / "m.gguf"), "--alias", alias])
    one_error_line(result, ExitCode.USAGE_ERROR, needle)
    assert not (isolated_home / "data" / "models.json").exists()
    served, _ = invoke(["models", "add", alias, "--endpoint", "http://localhost:9/v1"])
    one_error_line(served, ExitCode.USAGE_ERROR, needle)


def test_a_default_model_name_says_where_it_was_set(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASKGPT_MODEL", "nosuch")
    from_env, _ = invoke(["hi"])
    one_error_line(from_env, ExitCode.NOT_FOUND, "no model named 'nosuch' (the default model, set by $ASKGPT_MODEL)")
    chat, _ = invoke(["chat"], input="")
    one_error_line(chat, ExitCode.NOT_FOUND, "(the default model, set by $ASKGPT_MODEL)")
    monkeypatch.delenv("ASKGPT_MODEL")
    (isolated_home / "config").mkdir(parents=True)
    (isolated_home / "config" / "config.toml").write_text('model = "other"\n')
    from_config, _ = invoke(["hi"])
    one_error_line(from_config, ExitCode.NOT_FOUND, "(the default model, set by the model key of ")
    assert "config.toml" in from_config.stderr
    given, _ = invoke(["-m", "third", "hi"])  # a name given on the command line is just named
    one_error_line(given, ExitCode.NOT_FOUND, "no model named 'third'")
    assert "default model" not in given.stderr


# --- 3. attachments of earlier turns ----------------------------------------------------------------

def test_continuing_says_which_earlier_attachments_are_not_sent_again(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("The meeting is on Thursday.")
    assert invoke(["-f", str(notes), "When is the meeting?"])[0].exit_code == 0
    result, factory = invoke(["-c", "And where?"])
    assert result.exit_code == 0
    assert "not sent again" in result.stderr and str(notes) in result.stderr
    assert "Thursday" not in factory.engine.prompts[0]  # as the warning says
    fresh, _ = invoke(["-c", "And who?"])  # the turns since had no attachment, but the first still did
    assert str(notes) in fresh.stderr


# --- 4. stdout that cannot be written ---------------------------------------------------------------

def scripted(args: list[str], answer: str, tmp_path: Path, **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    answer_file = tmp_path / "answer.txt"
    answer_file.write_text(answer)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    return subprocess.Popen([sys.executable, SCRIPTED_CLI, str(answer_file), "0", *args], env=env,
                            cwd=tmp_path, stderr=subprocess.PIPE, **kwargs)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_one_line_not_an_internal_error(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = scripted(["-n", "16", "x"], "scripted answer", tmp_path, stdout=full)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.RUNTIME_ERROR, err
    lines = err.decode().strip().splitlines()
    assert lines == ["askgpt: error: cannot write the answer to stdout: No space left on device; "
                     "check the file or device stdout goes to"]
    with open("/dev/full", "w") as full:  # any command's output, not only answers
        proc = subprocess.run([sys.executable, SCRIPTED_CLI, str(tmp_path / "answer.txt"), "0", "templates", "list"],
                              stdout=full, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == ExitCode.RUNTIME_ERROR
    assert proc.stderr.decode().strip().splitlines() == ["askgpt: error: cannot write: No space left on device"]


def logged() -> list[dict]:
    return json.loads(invoke(["logs", "--json"])[0].stdout)


def test_an_answer_cut_short_by_a_closed_pipe_is_logged_as_ctrl_c_ones_are(tmp_path: Path) -> None:
    # Longer than a pipe's buffer, so the writer is still writing when the reader goes away;
    # random words, so the loop guard never stops it first however slow the reader is.
    import random

    rng = random.Random(0)
    answer = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                      for _ in range(40_000))
    proc = scripted(["-n", "200000", "x"], answer, tmp_path, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    head = proc.stdout.read(20)
    proc.stdout.close()  # `| head -c 20`
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err  # the reader went away: no error
    assert err == b""
    piped = logged()[0]
    assert piped["stop_reason"] == "interrupted"
    assert piped["answer"].startswith(head.decode()) and len(piped["answer"]) < len(answer)

    def ctrl_c(i: int) -> None:
        if i == 8:
            raise KeyboardInterrupt

    result, _ = invoke(["y"], factory=ScriptedFactory(ScriptedEngine(on_token=ctrl_c)))
    assert result.exit_code == ExitCode.INTERRUPTED
    interrupted = logged()[0]
    assert interrupted["stop_reason"] == "interrupted" and interrupted["answer"] == "scripted"


# --- 5. image options without an image --------------------------------------------------------------

@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--ocr", "maybe"], ExitCode.USAGE_ERROR, "--ocr must be one of"),
    (["--image-mode", "bogus"], ExitCode.USAGE_ERROR, "--image-mode must be one of"),
    (["--encoder", "bogus"], ExitCode.NOT_FOUND, "no image encoder named 'bogus'"),
    (["--mmproj", "nosuch.gguf"], ExitCode.NOT_FOUND, "vision projector not found: nosuch.gguf"),
])
def test_image_options_are_checked_without_an_image(args: list[str], code: int, needle: str) -> None:
    result, factory = invoke([*args, "hi"])
    one_error_line(result, code, needle)
    assert factory.calls == []  # refused before the model loads
    assert result.stdout == ""


def test_good_image_options_without_an_image_are_fine() -> None:
    result, _ = invoke(["--ocr", "off", "--image-mode", "both", "--encoder", "builtin", "hi"])
    assert result.exit_code == 0 and result.stdout == "scripted answer\n"


# --- 6. templates edit ------------------------------------------------------------------------------

def test_an_unchanged_edit_saves_nothing(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = isolated_home / "config" / "templates" / "translate.json"
    monkeypatch.setenv("EDITOR", "cat")
    result, _ = invoke(["templates", "edit", "translate"])
    assert result.exit_code == 0 and "unchanged; nothing was saved" in result.stdout
    assert not saved.exists()
    assert "built-in" in invoke(["templates", "show", "translate"])[0].stdout
    monkeypatch.setenv("EDITOR", f"{sys.executable} -c \"import sys, pathlib; p = pathlib.Path(sys.argv[1]); "
                                 "p.write_text(p.read_text().replace('French', 'German'))\"")
    changed, _ = invoke(["templates", "edit", "translate"])
    assert changed.exit_code == 0 and "saved translate" in changed.stdout
    assert "German" in json.loads(saved.read_text())["system"]


# --- 7. exit codes, stdin twice, half answers, words that are commands, punctuation ---------------------

def test_a_file_that_exists_but_cannot_be_read_is_not_not_found(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.txt"
    locked.write_text("secret")
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:  # chmod 000 does not stop root, who may run the tests
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    result, _ = invoke(["-f", str(locked), "hi"])
    one_error_line(result, ExitCode.RUNTIME_ERROR, f"cannot read file {locked}: Permission denied")


def test_an_unknown_conversation_is_the_same_error_for_logs_and_ask() -> None:
    assert invoke(["hi"])[0].exit_code == 0
    listed, _ = invoke(["logs", "--cid", "nosuch"])
    one_error_line(listed, ExitCode.NOT_FOUND, "no conversation 'nosuch' in the log")
    asked, factory = invoke(["--cid", "nosuch", "hi"])
    one_error_line(asked, ExitCode.NOT_FOUND, "no conversation 'nosuch' in the log")
    assert factory.engine.prompts == []


@pytest.mark.parametrize("args", [["-f", "-", "-f", "-", "hi"], ["-i", "-", "-i", "-", "hi"]])
def test_stdin_is_read_once(args: list[str]) -> None:
    result, _ = invoke(args, input="doc")
    one_error_line(result, ExitCode.USAGE_ERROR, "but stdin can be read once")


def test_json_without_streaming_writes_no_half_object() -> None:
    cut = ScriptedFactory(ScriptedEngine(answer='{"city": "Par'))
    result, _ = invoke(["--json", "--no-stream", "a city"], factory=cut)
    one_error_line(result, ExitCode.RUNTIME_ERROR, "not complete JSON")
    assert "nothing was written" in result.stderr
    assert result.stdout == ""
    assert logged()[0]["answer"] == '{"city": "Par'  # kept in the log all the same
    whole, _ = invoke(["--json", "--no-stream", "a city"], factory=ScriptedFactory(ScriptedEngine(answer='{"a": 1}')))
    assert whole.exit_code == 0 and json.loads(whole.stdout) == {"a": 1}


def test_help_and_version_alone_are_commands_not_questions() -> None:
    helped, factory = invoke(["help"])
    assert helped.exit_code == 0 and "Usage:" in helped.stdout
    version, _ = invoke(["version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"askgpt {__version__}"
    assert factory.calls == []
    asked, factory = invoke(["help", "me"])  # with more words it is a question
    assert asked.stdout == "scripted answer\n" and "help me" in factory.engine.prompts[0]
    word, factory = invoke(["ask", "help"])  # and `ask` asks the word itself
    assert word.stdout == "scripted answer\n" and factory.engine.prompts


def test_error_lines_have_no_period_before_the_hint() -> None:
    result, _ = invoke(["-t", "-1", "x"])  # click's message ends with a period
    assert result.exit_code == ExitCode.USAGE_ERROR and ".;" not in result.stderr
    assert format_error(UsageError("llama.cpp said no.", hint="try again")) == \
        "askgpt: error: llama.cpp said no; try again"


# --- 8. an image piped as text ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_an_image_on_stdin_is_refused_with_the_way_to_give_it(fmt: str) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format=fmt)
    data = buf.getvalue()
    assert image_format(data[:16]) is not None
    for args in (["what is this"], ["-f", "-", "what is this"]):
        result, factory = invoke(args, input=data)
        one_error_line(result, ExitCode.USAGE_ERROR, "not text; give it with -i -")
        assert factory.calls == []


@pytest.mark.parametrize("text", [b"BMW makes cars.\n", b"RIFF is a container\n", b"GIF87 is old\n", b"\xff\xfe"])
def test_text_that_starts_like_an_image_is_still_text(text: bytes) -> None:
    assert image_format(text) is None
    result, _ = invoke(["what"], input=text)
    assert result.exit_code == 0


# --- 9. --show-prompt and the replayed turns in `logs show` ----------------------------------------

def test_show_prompt_prints_the_prompt_and_runs_nothing() -> None:
    result, factory = invoke(["--show-prompt", "-s", "Be terse.", "-f", "-", "What is it?"], input="A note.")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ('<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n<document source="stdin">\n'
                             "A note.\n</document>\n\nWhat is it?<|im_end|>\n<|im_start|>assistant\n\n")
    assert factory.engine.prompts == []  # nothing was generated
    assert logged() == []  # and nothing was asked


def test_show_prompt_includes_the_replayed_turns() -> None:
    assert invoke(["first question"])[0].exit_code == 0
    result, factory = invoke(["--show-prompt", "-c", "second question"])
    assert result.exit_code == 0
    assert result.stdout.index("first question") < result.stdout.index("scripted answer") \
        < result.stdout.index("second question")
    assert factory.engine.prompts == []


def test_show_prompt_refuses_a_strategy_whose_prompt_needs_the_model() -> None:
    factory = ScriptedFactory(ScriptedEngine(n_ctx=4096))
    result, _ = invoke(["--show-prompt", "--strategy", "refine", "--read-tokens", "64", "-f", "-", "what?"],
                       factory=factory, input="The cat sat on the mat. " * 100)
    one_error_line(result, ExitCode.USAGE_ERROR, "--show-prompt cannot show it without running the model")
    assert factory.engine.prompts == []


def test_logs_show_lists_the_turns_that_were_replayed() -> None:
    assert invoke(["first question"])[0].exit_code == 0
    assert invoke(["-c", "second question"])[0].exit_code == 0
    assert invoke(["-c", "third question"])[0].exit_code == 0
    third = logged()[0]
    assert third["options"]["replayed_turns"] == 2
    shown, _ = invoke(["logs", "show", str(third["id"])])
    text = shown.stdout
    assert "replayed: the 2 earlier turn(s)" in text
    assert text.index("> first question") < text.index("> second question") < text.index("> third question")
    as_json = json.loads(invoke(["logs", "show", str(third["id"]), "--json"])[0].stdout)
    assert [t["user"] for t in as_json["replayed_turns"]] == ["first question", "second question"]
    first = logged()[-1]
    assert "replayed" not in invoke(["logs", "show", str(first["id"])])[0].stdout


# --- 10. models rm --delete-file on a served model ---------------------------------------------------

def test_delete_file_on_a_served_model_is_refused_and_keeps_the_entry(isolated_home: Path) -> None:
    assert invoke(["models", "add", "srv", "--endpoint", "http://localhost:9/v1"])[0].exit_code == 0
    registry = isolated_home / "data" / "models.json"
    before = registry.read_bytes()
    result, _ = invoke(["models", "rm", "srv", "--delete-file"])
    one_error_line(result, ExitCode.USAGE_ERROR, "srv is a served model")
    assert registry.read_bytes() == before
    removed, _ = invoke(["models", "rm", "srv"])
    assert removed.exit_code == 0 and removed.stdout.strip() == "removed srv"
    assert "srv" not in json.loads(registry.read_text())


def test_the_python_api_refuses_a_small_context_too() -> None:
    from askgpt import Assistant

    factory = ScriptedFactory()
    with pytest.raises(UsageError, match="ctx must be 0"):
        Assistant(ctx=100, engine_factory=factory)
    assert factory.calls == []
    with Assistant(ctx=300, engine_factory=factory) as assistant:
        assert assistant.ask("hi").text() == "scripted answer"
    assert factory.calls[0][1].n_ctx == 512
