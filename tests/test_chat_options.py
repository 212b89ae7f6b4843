"""`askgpt chat` takes the prompt options `ask` has (one session owns them: askgpt.session):
-T, --seed, -e/--examples, --stats, --json/--schema, driven with a scripted engine."""

from __future__ import annotations

import json
from pathlib import Path

from fakes import ScriptedEngine, ScriptedFactory
from typer.testing import CliRunner

from askgpt.cli.app import create_app


def _chat(args: list[str], lines: str, answer: str = "Bonjour.") -> tuple[ScriptedFactory, object]:
    factory = ScriptedFactory(ScriptedEngine(answer=answer))
    result = CliRunner().invoke(create_app(factory), ["chat", "--no-log", *args], input=lines)
    return factory, result


def test_a_template_gives_chat_its_task_and_examples() -> None:
    factory, result = _chat(["-T", "translate"], "Good night.\n")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    (prompt,) = factory.engine.prompts
    assert "Translate the user's text into French" in prompt  # the built-in template's system prompt
    assert "Où est la gare ?" in prompt and prompt.index("Où est la gare ?") < prompt.index("Good night.")


def test_seed_examples_and_stats(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"input": "chat", "output": "cat"}) + "\n")
    factory, result = _chat(["--seed", "7", "-e", "chien => dog", "--examples", str(pool), "--stats"],
                            "souris\noiseau\n", answer="mouse")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    first, second = factory.engine.prompts
    assert "chien" in first and "dog" in first and "cat" in first and "souris" in first
    assert second.startswith(first[: first.index("souris")])  # the second turn extends the first
    assert [s.seed for s in factory.engine.samplings] == [7, 7]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert stderr.count("tokens") >= 2  # a stats line after each answer


def test_json_constrains_every_answer_and_a_bad_one_is_an_error_line() -> None:
    factory, result = _chat(["--json"], "a city\n", answer='{"city": "Paris"}')
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    out = result.stdout  # type: ignore[attr-defined]
    assert json.loads(out[out.index("{"): out.rindex("}") + 1]) == {"city": "Paris"}  # the REPL's prompt around it
    assert factory.engine.samplings[0].json_schema is not None
    factory, result = _chat(["--schema", '{"city": "string"}'], "a city\n", answer="not json")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert "JSON" in result.stderr  # type: ignore[attr-defined]
