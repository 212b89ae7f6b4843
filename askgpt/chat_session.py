"""An interactive conversation on one loaded model (`askgpt chat`).

The session owns what persists between turns: system prompt, examples, earlier
turns, and documents or images attached for the next question. Each question is
one `Request` with the earlier turns as history; since that prompt extends the
previous one, the engine finds it in its attention cache and reads only the new
turn (runtime.engine.llama.engine's prefix match), so earlier turns are not evaluated
again. A window that fills up drops the oldest turns (conversation).

Lines starting with "/" are commands; `parse_line` turns them into `Command`s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from askgpt.conversation import fit_history
from askgpt.runtime.documents.strategies import LongContext, LongContextConfig, LongContextReport
from askgpt.runtime.engine.base import Engine
from askgpt.runtime.errors import UsageError
from askgpt.runtime.prompting.generate import Answer, GenerationConfig
from askgpt.runtime.prompting.request import Document, Example, ImageBlock, Request, Turn, parse_example
from askgpt.runtime.prompting.structured import constrain

COMMANDS = {
    "image": "PATH    attach an image to the next question",
    "file": "PATH     attach a document to the next question",
    "system": "TEXT   set the system prompt (empty: none)",
    "example": "IN => OUT  add a few-shot example",
    "clear": "        forget the conversation (system prompt and examples stay)",
    "save": "FILE     write the conversation as Markdown",
    "stats": "        token counts and speed of the last answer",
    "model": "NAME    switch to another model (the conversation stays)",
    "help": "         this list",
    "exit": "         leave (so does Ctrl-D)",
}
MULTILINE = '"""'


@dataclass(frozen=True)
class Command:
    name: str
    argument: str = ""


def parse_line(line: str) -> Command | str:
    """A typed line: a `Command` for "/name argument", else the text of a question.
    "//text" sends "/text" as a question."""
    stripped = line.strip()
    if stripped.startswith("//"):
        return stripped[1:]
    if not stripped.startswith("/"):
        return stripped
    name, _, argument = stripped[1:].partition(" ")
    name = name.lower()
    if name not in COMMANDS:
        raise UsageError(f"unknown command /{name}", hint="/help lists them")
    if name in {"image", "file", "save", "model", "example"} and not argument.strip():
        raise UsageError(f"/{name} needs {COMMANDS[name].split()[0]}")
    return Command(name, argument.strip())


def help_text() -> str:
    lines = [f"/{name} {text}" for name, text in COMMANDS.items()]
    lines.append(f'{MULTILINE} on a line of its own starts and ends a multi-line question; Ctrl-C stops an answer.')
    return "\n".join(lines)


@dataclass
class ChatSession:
    engine: Engine
    config: GenerationConfig
    system: str | None = None
    examples: list[Example] = field(default_factory=list)
    history: list[Turn] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)  # for the next question
    images: list[ImageBlock] = field(default_factory=list)
    dropped_turns: int = 0  # oldest turns left out of the last prompt to fit the window
    schema: dict[str, Any] | None = None  # --json/--schema: every answer is JSON matching it
    instruction: Callable[[str], str] | None = None  # -T: a template's wording around each question
    long_context: LongContextConfig = field(default_factory=LongContextConfig)  # --retrieval
    report: LongContextReport | None = None  # what the long-document strategy did for the last question

    def request(self, text: str) -> Request:
        if self.instruction is not None:
            text = self.instruction(text)
        request = Request(text, documents=tuple(self.documents), system=self.system,
                          examples=tuple(self.examples), images=tuple(self.images), history=tuple(self.history))
        fitted, self.dropped_turns = fit_history(self.engine, request)
        return fitted

    def ask(self, request: Request) -> Answer:
        """Documents longer than the model reads well go through the long-document
        strategies (runtime.documents.strategies), as on the one-shot path."""
        config = self.config
        if self.schema is not None:
            request, config = constrain(request, config, self.schema)
        answer, self.report = LongContext(self.engine, self.long_context).answer(request, config)
        return answer

    def finish(self, request: Request, answer: Answer) -> None:
        """Keep the turn (what was answered, also when Ctrl-C cut it short); attachments
        were for that question only."""
        self.history.append(Turn(_turn_text(request), answer.emitted))
        self.documents.clear()
        self.images.clear()

    def add_example(self, text: str) -> Example:
        example = parse_example(text)
        self.examples.append(example)
        return example

    def clear(self) -> None:
        self.history.clear()
        self.documents.clear()
        self.images.clear()

    def use_engine(self, engine: Engine) -> None:
        self.engine = engine

    def markdown(self) -> str:
        parts = ["# askgpt chat\n"]
        if self.system:
            parts.append(f"**System:** {self.system}\n")
        parts += [f"**Example:** {e.input} => {e.output}\n" for e in self.examples]
        for turn in self.history:
            parts.append(f"## You\n\n{turn.user}\n\n## askgpt\n\n{turn.assistant}\n")
        return "\n".join(parts)


def _turn_text(request: Request) -> str:
    """The question as later turns replay it: attachments by name (their text was sent once)."""
    names = [d.source for d in request.documents] + [i.source for i in request.images]
    return f"(about {', '.join(names)}) {request.instruction}" if names else request.instruction

