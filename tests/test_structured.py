"""Structured output: schemas (shorthand and full), JSON under a grammar on the real
model validated with jsonschema, and -x's first code block."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from fakes import ScriptedEngine, ScriptedFactory
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from askgpt.cli.app import create_app
from askgpt.runtime.errors import ExitCode, UsageError
from askgpt.runtime.prompting.structured import first_code_block, load_schema
from conftest import run_askgpt


def test_shorthand_schemas_expand() -> None:
    schema = load_schema('{"name": "string", "age": "integer", "tags": ["string"], "size": "small|large", '
                         '"home": {"city": "string", "lat": "number"}}')
    assert schema["type"] == "object" and schema["required"] == ["name", "age", "tags", "size", "home"]
    props = schema["properties"]
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "maxItems": 16}
    assert props["size"] == {"type": "string", "enum": ["small", "large"]}
    assert props["home"]["properties"]["lat"] == {"type": "number"}
    full = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert load_schema(json.dumps(full)) == full  # a real JSON schema is used as it is


def test_schema_from_a_file_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"ok": "boolean"}')
    assert load_schema(str(path))["properties"]["ok"] == {"type": "boolean"}
    for bad in ("not json", "[1]", '{"x": "colour"}', '{"x": ["a", "b"]}'):
        with pytest.raises(UsageError):
            load_schema(bad)


@given(st.text(alphabet=st.characters(blacklist_characters="`~\r"), max_size=80))
def test_the_first_code_block_is_found_whole(code: str) -> None:
    body = code if code.endswith("\n") or not code else code + "\n"
    text = f"Here it is:\n```python\n{body}```\nand another:\n```\nsecond\n```\n"
    assert first_code_block(text) == body


def test_no_code_block() -> None:
    assert first_code_block("just prose, `inline` only") is None


SCHEMAS = [
    ("Describe a made-up person named Ada who is 36.",
     '{"name": "string", "age": "integer", "hobbies": ["string"]}'),
    ("Give a fruit with its colour and whether it is sweet.",
     '{"fruit": "string", "colour": "red|green|yellow", "sweet": "boolean"}'),
    ("Describe a city with its location.",
     '{"city": "string", "location": {"country": "string", "lat": "number", "lon": "number"}}'),
    ("List three numbers and their sum.", '{"numbers": ["integer"], "sum": "integer"}'),
]


@pytest.mark.model
@pytest.mark.parametrize(("question", "shorthand"), SCHEMAS)
def test_the_real_model_answers_valid_json(real_engine, question: str, shorthand: str) -> None:  # type: ignore[no-untyped-def]
    from askgpt.runtime.engine.sampling import SamplingConfig
    from askgpt.runtime.prompting.generate import GenerationConfig, ask
    from askgpt.runtime.prompting.request import Request
    from askgpt.runtime.prompting.structured import schema_instruction

    schema = load_schema(shorthand)
    sampling = SamplingConfig(temperature=0, json_schema=json.dumps(schema), loop_guard=None)
    answer = ask(real_engine, Request(question, system=schema_instruction(schema)), GenerationConfig(256, sampling))
    jsonschema.validate(json.loads(answer.text()), schema)


@pytest.mark.model
def test_cli_json_schema_and_a_cut_off_answer() -> None:
    result = run_askgpt(["-t", "0", "--schema", '{"city": "string", "country": "string"}',
                         "Which city is the capital of France?"])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    jsonschema.validate(data, load_schema('{"city": "string", "country": "string"}'))
    anything = run_askgpt(["-t", "0", "--json", "Describe a cat."])
    assert isinstance(json.loads(anything.stdout), dict)
    cut = run_askgpt(["-t", "0", "-n", "3", "--schema", '{"story": "string"}', "Tell a long story."])
    assert cut.returncode == ExitCode.RUNTIME_ERROR and b"not complete JSON" in cut.stderr


def test_extract_prints_the_first_code_block_only() -> None:
    engine = ScriptedEngine(answer="Sure:\n```python\nprint('hi')\n```\nDone.")
    result = CliRunner().invoke(create_app(ScriptedFactory(engine)), ["-x", "code please"], catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout == "print('hi')\n"
    plain = CliRunner().invoke(create_app(ScriptedFactory(ScriptedEngine(answer="no code"))), ["-x", "q"],
                               catch_exceptions=False)
    assert plain.stdout == "no code\n" and "no fenced code block" in plain.stderr
