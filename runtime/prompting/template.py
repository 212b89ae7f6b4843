"""Chat formatting with the model's own template.

A GGUF carries its chat template (``tokenizer.chat_template``, Jinja). It is
code from a downloaded file, so it is rendered only in Jinja's immutable
sandbox, with the same helpers Hugging Face and llama-cpp-python provide
(``raise_exception``, ``strftime_now``, ``tojson``). A model without a
template gets a plain completion prompt instead.

The template renders over placeholders, one per message, never over the messages' text:
its output is the only markup in the prompt, and runtime.prompting.generate tokenizes content between it
with control-token parsing off. So a document cannot write ``<|im_end|>`` into the prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from askgpt.runtime.engine.base import ModelInfo
from askgpt.runtime.errors import ModelLoadError
from askgpt.runtime.prompting.request import (
    PLAIN_STOP,
    Markup,
    Message,
    PromptPiece,
    Request,
    build_messages,
    render_plain,
    text_of,
)


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
            messages=[{"role": m.role, "content": m.text} for m in messages],
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
    return [Message(first.role, (*system.pieces, "\n\n", *first.pieces)), *rest[1:]]


# Stands for message i's content while the template renders: the template sees only these,
# so nothing a document says can reach its output as markup.
_SLOT = "\ue030{}\ue031"
_SLOT_PATTERN = re.compile("\ue030(\\d+)\ue031")


@dataclass(frozen=True)
class FormattedPrompt:
    # The template's markup, content text and image slots, in order (see runtime.prompting.generate.prepare).
    pieces: tuple[PromptPiece, ...]
    # Strings that end the answer. A chat model ends its turn with an end-of-generation
    # token instead, so for templates this is empty.
    stop: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The prompt as text, for showing and counting: image slots shown as ``[image N]``."""
        return text_of(self.pieces)


def _render_slots(info: ModelInfo, messages: list[Message]) -> tuple[PromptPiece, ...]:
    """Render the template over placeholders, then put each message's pieces in its place."""
    slotted = [Message(m.role, _SLOT.format(i)) for i, m in enumerate(messages)]
    text = render_chat(info.chat_template or "", slotted, bos_token=info.bos_token, eos_token=info.eos_token)
    pieces: list[PromptPiece] = []
    for i, chunk in enumerate(_SLOT_PATTERN.split(text)):
        if i % 2 == 0:
            if chunk:
                pieces.append(Markup(chunk))
            continue
        index = int(chunk)
        if index >= len(messages):
            raise TemplateError("the model's chat template wrote a message that was not given")
        pieces.extend(messages[index].pieces)
    return tuple(pieces)


def format_prompt(info: ModelInfo, request: Request) -> FormattedPrompt:
    """The prompt for this model: its chat template, or a plain completion prompt."""
    if not info.chat_template:
        return FormattedPrompt(render_plain(request), PLAIN_STOP)
    messages = build_messages(request)
    try:
        pieces = _render_slots(info, messages)
    except TemplateError:
        if messages[0].role != "system":
            raise
        pieces = _render_slots(info, _fold_system(messages))
    return FormattedPrompt(pieces)
