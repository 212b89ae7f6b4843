"""Structured output: answers constrained to JSON (llama.cpp grammars built from a
JSON schema), and the first fenced code block of an answer (-x)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from askgpt.runtime.errors import StructuredOutputError, UsageError
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import Request

ANY_OBJECT: dict[str, Any] = {"type": "object"}
_SCALARS = {"string", "integer", "number", "boolean", "null"}
# A small model can go on listing forever; the grammar then ends the list for it.
SHORTHAND_MAX_ITEMS = 16
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)


def load_schema(text: str) -> dict[str, Any]:
    """``--schema``: a file holding a JSON schema, or inline JSON: a JSON schema, or the
    shorthand ``{"name": "string", "tags": ["string"], "size": "small|large"}`` (type
    names, [item] for arrays of at most 16, nested objects, a|b|c for a choice)."""
    source = text
    path = Path(text).expanduser()
    if not text.lstrip().startswith("{") and path.is_file():
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read schema file {text}: {exc}") from exc
    try:
        data = json.loads(source)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--schema is neither a file nor JSON: {exc.msg}",
                         hint="""e.g. --schema '{"name": "string", "age": "integer"}'""") from exc
    if not isinstance(data, dict):
        raise UsageError("--schema must be a JSON object")
    return data if _is_schema(data) else _expand(data)


def _is_schema(data: dict[str, Any]) -> bool:
    return isinstance(data.get("type"), str) or "properties" in data or "$schema" in data or "enum" in data


def _expand(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"type": "object", "properties": {k: _expand(v) for k, v in value.items()},
                "required": list(value), "additionalProperties": False}
    if isinstance(value, list):
        if len(value) != 1:
            raise UsageError("a shorthand array is [ITEM], with one item type")
        return {"type": "array", "items": _expand(value[0]), "maxItems": SHORTHAND_MAX_ITEMS}
    if isinstance(value, str):
        if value in _SCALARS:
            return {"type": value}
        if "|" in value:
            return {"type": "string", "enum": value.split("|")}
    raise UsageError(f"unknown shorthand type {value!r}",
                     hint=f"use {', '.join(sorted(_SCALARS))}, [item], {{...}} or a|b|c")


def schema_instruction(schema: dict[str, Any]) -> str:
    """Told to the model too: a small model fills the fields better when it knows them."""
    return f"Reply with JSON only, matching this JSON schema: {json.dumps(schema, separators=(',', ':'))}"


def constrain(request: Request, config: GenerationConfig,
              schema: dict[str, Any]) -> tuple[Request, GenerationConfig]:
    """The request and settings for an answer in JSON matching ``schema``: the schema
    shown to the model (system prompt) and enforced while sampling (grammar)."""
    system = "\n\n".join(x for x in (request.system, schema_instruction(schema)) if x)
    # The grammar bounds the form; a repeated value (a list of numbers) is not a loop to cut.
    sampling = replace(config.sampling, json_schema=json.dumps(schema), loop_guard=None)
    return replace(request, system=system), replace(config, sampling=sampling)


def check_json(text: str) -> Any:
    """The parsed answer; `StructuredOutputError` if it is not complete JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructuredOutputError(f"the answer is not complete JSON ({exc.msg})",
                                    hint="raise -n/--max-tokens if it was cut off") from exc


def first_code_block(text: str) -> str | None:
    """The body of the first fenced (``` or ~~~) code block, None when there is none."""
    m = _FENCE.search(text)
    return m.group(2) if m else None
