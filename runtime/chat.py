"""Chat formatting with the model's own template.

A GGUF carries its chat template (``tokenizer.chat_template``, Jinja). It is
code from a downloaded file, so it is rendered only in Jinja's immutable
sandbox, with the same helpers Hugging Face and llama-cpp-python provide
(``raise_exception``, ``strftime_now``, ``tojson``). A model without a
template gets a plain completion prompt instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from .engine import ModelInfo
from .errors import ModelLoadError
from .prompt import PLAIN_STOP, Message, Request, build_messages, render_plain


class TemplateError(ModelLoadError):
    """The model's chat template failed to render."""


def _raise(message: str) -> None:
    raise TemplateError(f"the model's chat template refused the prompt: {message}")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the model's chat template does not parse: {exc}") from exc


def render_chat(template: str, messages: list[Message], *, bos_token: str, eos_token: str) -> str:
    import jinja2

    compiled = _compile(template)
    try:
        return str(compiled.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
            raise_exception=_raise,
            strftime_now=lambda fmt: datetime.now().strftime(fmt),
        ))
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"the model's chat template tried something unsafe: {exc}") from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the model's chat template failed: {exc}") from exc


def _fold_system(messages: list[Message]) -> list[Message]:
    """Some templates (Gemma's, for one) reject a system turn: prepend it to the first user turn."""
    if not messages or messages[0].role != "system":
        return messages
    system, rest = messages[0], messages[1:]
    first = rest[0]
    return [Message(first.role, f"{system.content}\n\n{first.content}"), *rest[1:]]


@dataclass(frozen=True)
class FormattedPrompt:
    text: str
    # Strings that end the answer. A chat model ends its turn with an end-of-generation
    # token instead, so for templates this is empty.
    stop: tuple[str, ...] = ()


def format_prompt(info: ModelInfo, request: Request) -> FormattedPrompt:
    """The prompt for this model: its chat template, or a plain completion prompt."""
    if not info.chat_template:
        return FormattedPrompt(render_plain(request), PLAIN_STOP)
    messages = build_messages(request)
    try:
        text = render_chat(info.chat_template, messages, bos_token=info.bos_token, eos_token=info.eos_token)
    except TemplateError:
        if messages[0].role != "system":
            raise
        text = render_chat(info.chat_template, _fold_system(messages),
                           bos_token=info.bos_token, eos_token=info.eos_token)
    return FormattedPrompt(text)
