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


def test_the_cli_answers_through_the_assistant(monkeypatch: pytest.MonkeyPatch) -> None:
    """`askgpt ask` is a thin layer over the API's object: it answers with Assistant.respond."""
    from typer.testing import CliRunner

    from askgpt.assistant import Assistant as Api
    from askgpt.cli.app import create_app

    calls: list[str] = []
    real = Api.respond

    def spy(self: Api, request, config, long_context=None, *, progress=None):  # type: ignore[no-untyped-def]
        calls.append(request.instruction)
        return real(self, request, config, long_context, progress=progress)

    monkeypatch.setattr(Api, "respond", spy)
    factory = ScriptedFactory(ScriptedEngine(answer="Paris"))
    result = CliRunner().invoke(create_app(factory), ["What is the capital of France?"], catch_exceptions=False)
    assert result.exit_code == 0 and "Paris" in result.stdout
    assert calls == ["What is the capital of France?"] and factory.engine.closed
