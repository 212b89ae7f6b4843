"""The Python API: the example in docs/served-models-and-api.md run as written, and the objects' contracts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import ScriptedEngine, ScriptedFactory

from askgpt import Assistant
from askgpt.runtime.errors import ModelNotFoundError, StructuredOutputError, UsageError
from conftest import doc_page


def readme_example() -> str:
    text = doc_page("docs/served-models-and-api.md")
    return text.split("## Python API", 1)[1].split("```python", 1)[1].split("```", 1)[0]


@pytest.mark.model
def test_the_readme_example_runs(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("The meeting is in room 42 on Thursday.\n")
    result = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, capture_output=True, text=True,
                            env={"ASKGPT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr
    # The first answer may run to several lines (where the model stops is not asserted), so
    # the output is split at the usage line the example prints after it, not by line number.
    lines = result.stdout.splitlines()
    usage = next(i for i, line in enumerate(lines) if re.fullmatch(r"\d+ tokens, stopped by \w+", line))
    assert "Paris" in "\n".join(lines[:usage])
    assert "Paris" in lines[usage + 1]  # the JSON answer's city: one line, printed by the example
    assert "42" in "\n".join(lines[usage + 2:])


def test_response_streams_once_and_keeps_usage() -> None:
    factory = ScriptedFactory(ScriptedEngine(answer='{"a": 1}'))
    with Assistant(engine_factory=factory) as a:
        r = a.ask("q")
        assert r.usage is None
        pieces = list(r)
        assert "".join(pieces) == '{"a": 1}' and r.text() == '{"a": 1}' and list(r) == pieces
        assert r.usage is not None and r.usage.generated_tokens == len('{"a": 1}')
        assert r.json() == {"a": 1}
        assert "Answer concisely" in factory.engine.prompts[0]  # the CLI's default system prompt
        a.ask("q2", system="", examples=["x => y", ("u", "v")]).text()
        assert "Answer concisely" not in factory.engine.prompts[1] and "x" in factory.engine.prompts[1]
    assert factory.engine.closed and len(factory.calls) == 1  # loaded once, closed by the with block


def test_chat_keeps_turns_and_errors_are_typed() -> None:
    factory = ScriptedFactory(ScriptedEngine(answer="not json"))
    a = Assistant(engine_factory=factory)
    chat = a.chat()
    chat.ask("first").text()
    chat.ask("second").text()
    assert chat.turns == 2 and "first" in factory.engine.prompts[1]
    with pytest.raises(StructuredOutputError):
        a.ask("q", schema={"x": "string"}).json()
    with pytest.raises(UsageError):
        a.ask("q", strategy="nonsense")
    a.close()
    with pytest.raises(ModelNotFoundError):
        Assistant(model="/no/such/model.gguf")


def test_the_cli_and_the_api_answer_through_one_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """`askgpt ask` and `Assistant.ask` both answer with Session.respond (askgpt.session)."""
    from typer.testing import CliRunner

    from askgpt.cli.app import create_app
    from askgpt.session import Session

    calls: list[str] = []
    real = Session.respond

    def spy(self: Session, request, config, long_context=None, *, progress=None):  # type: ignore[no-untyped-def]
        calls.append(request.instruction)
        return real(self, request, config, long_context, progress=progress)

    monkeypatch.setattr(Session, "respond", spy)
    factory = ScriptedFactory(ScriptedEngine(answer="Paris"))
    result = CliRunner().invoke(create_app(factory), ["What is the capital of France?"], catch_exceptions=False)
    assert result.exit_code == 0 and "Paris" in result.stdout
    with Assistant(engine_factory=ScriptedFactory(ScriptedEngine(answer="Rome"))) as api:
        assert api.ask("And of Italy?").text() == "Rome"
    assert calls == ["What is the capital of France?", "And of Italy?"] and factory.engine.closed


def _logged(log_file: Path) -> list[tuple[str, str]]:
    from askgpt.runtime.store.log import ConversationLog

    return [(e.prompt, e.answer) for e in ConversationLog(log_file).recent(limit=100)]


def test_the_api_logs_like_the_cli_and_log_false_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session owns the conversation log: an `Assistant` answer is logged as `askgpt ask`'s
    is, `log=False` is --no-log, and the config's ``log = false`` turns both off."""
    from askgpt.runtime.store.settings import load_settings

    settings = load_settings({"ASKGPT_HOME": str(tmp_path)})
    with Assistant(settings=settings, engine_factory=ScriptedFactory(ScriptedEngine(answer="Paris"))) as api:
        api.ask("Capital of France?").text()
    with Assistant(settings=settings, log=False,
                   engine_factory=ScriptedFactory(ScriptedEngine(answer="Rome"))) as api:
        api.ask("Capital of Italy?").text()
    assert _logged(settings.paths.log_file) == [("Capital of France?", "Paris")]
    settings = load_settings({"ASKGPT_HOME": str(tmp_path / "off")})
    settings.paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    settings.paths.config_file.write_text("log = false\n")
    settings = load_settings({"ASKGPT_HOME": str(tmp_path / "off")})
    with Assistant(settings=settings, engine_factory=ScriptedFactory(ScriptedEngine(answer="Paris"))) as api:
        api.ask("Capital of France?").text()
    assert not settings.paths.log_file.exists() or _logged(settings.paths.log_file) == []


def test_an_explicit_zero_is_checked_not_taken_for_the_default() -> None:
    """One GenerationConfig builder for ask, chat and the API: max_tokens=0 is refused as
    `-n 0` is (it once silently meant "the default" in the API)."""
    with Assistant(engine_factory=ScriptedFactory(ScriptedEngine(answer="x"))) as api:
        with pytest.raises(UsageError, match="at least 1"):
            api.ask("hi", max_tokens=0)
