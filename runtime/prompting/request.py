"""What the user asks, as values, and how it becomes chat messages.

Zero-shot: a task description (system) and the input. Few-shot (in-context
learning, the way GPT-3-class models are used without fine-tuning): the same,
with worked examples placed before the real input as earlier user/assistant
turns, so the model continues the pattern.

Documents (stdin, files) come first, each in its own delimited block, and the
instruction after them, so the model can tell the material from the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from askgpt.runtime.engine.base import EmbeddingRows, PromptPart
from askgpt.runtime.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

EXAMPLE_SEPARATOR = "=>"
STDIN_SOURCE = "stdin"  # the source name of a document read from stdin


@dataclass(frozen=True)
class Document:
    source: str  # file name as given, or "stdin"
    text: str
    # An input too large to hold in memory stays in this file (runtime.documents.spool) and
    # ``text`` is empty; only the long-context strategies read it, in segments.
    path: Path | None = None
    size: int = 0  # bytes, for a document on disk

    @property
    def on_disk(self) -> bool:
        return self.path is not None


@dataclass(frozen=True, eq=False)
class ImageBlock:
    """An image as the language model gets it: what the encoders found, as text,
    and optionally prompt parts placed at the start of its block. Built by askgpt.vision;
    the runtime only places it."""

    source: str
    text: str
    # The projector's embedding rows, or a vision model's own encoding (mmproj: its image
    # delimiters' token ids and its rows, in the order llama.cpp's mtmd lays them out).
    segments: tuple[PromptPart, ...] = ()
    # The image itself as a data: URL, for a served model that takes images (runtime.engine.served).
    data_url: str | None = None

    @property
    def rows(self) -> np.ndarray | None:
        """All its embedding rows, (n, n_embd); None when it has none."""
        import numpy as np

        rows = [part.rows for part in self.segments if isinstance(part, EmbeddingRows)]
        return np.vstack(rows) if rows else None


@dataclass(frozen=True)
class ImageSlot:
    """Where image ``index``'s prompt parts (embedding rows, a vision model's encoding, or a
    served model's data: URL) go inside a message. A value, not a marker in the text, so no
    document can forge or misplace one."""

    index: int


# A message's content: untrusted text (tokenized as plain text, never as control tokens)
# and image slots.
ContentPiece = str | ImageSlot


@dataclass(frozen=True)
class Markup:
    """Text the model's chat template wrote around the messages: the only text whose
    control-token spellings (``<|im_start|>``) become control tokens."""

    text: str


# A rendered prompt: the template's markup, content text and image slots, in order.
PromptPiece = Markup | str | ImageSlot


# Sent when the user gives none: the 135M built-in model answers short factual questions
# right 8/8 with it, 5/8 with its template's own default (benchmarks/answers.py).
DEFAULT_SYSTEM = "You are a helpful assistant. Answer concisely and accurately."


@dataclass(frozen=True)
class Example:
    input: str
    output: str


@dataclass(frozen=True)
class Turn:
    """An earlier question and answer of the same conversation (-c/--cid)."""

    user: str
    assistant: str


@dataclass(frozen=True)
class Request:
    instruction: str
    documents: tuple[Document, ...] = ()
    system: str | None = None
    examples: tuple[Example, ...] = ()
    images: tuple[ImageBlock, ...] = ()
    history: tuple[Turn, ...] = ()


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    # Given as a string or as pieces; held as pieces.
    content: tuple[ContentPiece, ...] | str

    def __post_init__(self) -> None:
        if isinstance(self.content, str):
            object.__setattr__(self, "content", (self.content,))

    @property
    def pieces(self) -> tuple[ContentPiece, ...]:
        return self.content if isinstance(self.content, tuple) else (self.content,)

    @property
    def text(self) -> str:
        """The content's text, image slots left out."""
        return "".join(p for p in self.pieces if isinstance(p, str))


def parse_example(text: str) -> Example:
    """``"INPUT => OUTPUT"``; the first ``=>`` separates, so outputs may contain it."""
    source, sep, target = text.partition(EXAMPLE_SEPARATOR)
    source, target = source.strip(), target.strip()
    if not sep or not source or not target:
        raise UsageError(
            f"bad example {text!r}",
            hint='write examples as -e "INPUT => OUTPUT"',
        )
    return Example(source, target)


def parse_examples(raw: str, source: str) -> tuple[Example, ...]:
    """JSONL text, one ``{"input": ..., "output": ...}`` object per line; ``source`` names it in errors."""
    examples: list[Example] = []
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{source} line {lineno}: not JSON ({exc.msg})") from exc
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("input"), str)
            or not isinstance(obj.get("output"), str)
        ):
            raise UsageError(
                f"{source} line {lineno}: expected an object with string 'input' and 'output'",
                hint='e.g. {"input": "cheese", "output": "fromage"}',
            )
        examples.append(Example(obj["input"], obj["output"]))
    if not examples:
        raise UsageError(f"{source} holds no examples")
    return tuple(examples)


def build_request(
    *,
    prompt: str,
    stdin_text: str | None,
    documents: Sequence[Document] = (),
    stdin_consumed: bool = False,
    system: str | None = None,
    examples: Sequence[Example] = (),
    has_images: bool = False,
    stdin_file: Path | None = None,
) -> Request:
    """Combine the prompt words, piped stdin and files into one request.

    Piped stdin is a document placed before the files, unless ``-f -`` already
    placed it (``stdin_consumed``). With no prompt words, stdin is the question
    itself (``echo "2+2?" | askgpt``). Empty stdin is ignored. ``stdin_file`` holds
    piped input too large to keep in memory (then ``stdin_text`` is None).
    """
    docs = list(documents)
    instruction = prompt.strip()
    if stdin_file is not None and not stdin_consumed:
        if not instruction:
            raise UsageError("the piped input is too large to be the question",
                             hint='say what to do with it, e.g. cat big.log | askgpt "summarize the errors"')
        docs.insert(0, stdin_document(stdin_file))
    piped = stdin_text if stdin_text and stdin_text.strip() else None
    if piped is not None and not stdin_consumed:
        if instruction:
            docs.insert(0, Document(STDIN_SOURCE, piped))
        else:
            instruction = piped.strip()
    if not instruction:
        if has_images and not docs:
            raise UsageError("an image given but no instruction",
                             hint='say what to do with it, e.g. askgpt -i pic.png "describe this"')
        if docs:
            raise UsageError(
                "documents given but no instruction",
                hint='say what to do with them, e.g. askgpt -f notes.md "summarize"',
            )
        raise UsageError("nothing to ask", hint='give a prompt, e.g. askgpt "What is BPE?" (see askgpt --help)')
    return Request(instruction=instruction, documents=tuple(docs), system=system, examples=tuple(examples))


def stdin_document(path: Path) -> Document:
    return Document(STDIN_SOURCE, "", path=path, size=path.stat().st_size)


def attribute(value: str) -> str:
    """A value for askgpt's own ``<document source="...">`` markup: a file name cannot close
    the attribute or break the line (it is content, tokenized as text, either way)."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", value).replace('"', "&quot;")


def image_block(index: int, image: ImageBlock) -> tuple[ContentPiece, ...]:
    pieces: list[ContentPiece] = [f'<image source="{attribute(image.source)}">']
    if image.segments or image.data_url:
        pieces.append(ImageSlot(index))
    if image.text.strip():
        pieces.append(f"\n{image.text.strip()}\n")
    pieces.append("</image>")
    return tuple(pieces)


def user_content(request: Request) -> tuple[PromptPiece, ...]:
    """The final user turn: delimited documents and images first, then the instruction."""
    blocks: list[tuple[ContentPiece, ...]] = [
        (f'<document source="{attribute(d.source)}">\n{d.text.strip()}\n</document>',) for d in request.documents]
    blocks += [image_block(i, image) for i, image in enumerate(request.images)]
    blocks.append((request.instruction,))
    pieces: list[ContentPiece] = []
    for i, block in enumerate(blocks):
        if i:
            pieces.append("\n\n")
        pieces.extend(block)
    return join_text(pieces)


def text_of(pieces: Sequence[PromptPiece]) -> str:
    """Pieces as text, for showing and counting: an image slot shows as ``[image N]``."""
    return "".join(p.text if isinstance(p, Markup) else p if isinstance(p, str) else f"[image {p.index + 1}]"
                   for p in pieces)


def join_text(pieces: Sequence[PromptPiece]) -> tuple[PromptPiece, ...]:
    """Adjacent plain strings merged into one (markup and image slots stay apart)."""
    out: list[PromptPiece] = []
    for piece in pieces:
        if isinstance(piece, str) and out and isinstance(out[-1], str):
            out[-1] += piece
        elif not (isinstance(piece, str) and not piece):
            out.append(piece)
    return tuple(out)


def build_messages(request: Request) -> list[Message]:
    messages: list[Message] = []
    if request.system:
        messages.append(Message("system", request.system))
    for ex in request.examples:
        messages.append(Message("user", ex.input))
        messages.append(Message("assistant", ex.output))
    for turn in request.history:
        messages.append(Message("user", turn.user))
        messages.append(Message("assistant", turn.assistant))
    messages.append(Message("user", user_content(request)))
    return messages


# A plain completion model would go on to invent the next example; stop there.
PLAIN_STOP = ("\nInput:",)


def render_plain(request: Request) -> tuple[PromptPiece, ...]:
    """A completion prompt for models without a chat template (stop at `PLAIN_STOP`). It has
    no control tokens: all of it is tokenized as text."""
    parts: list[PromptPiece] = []
    if request.system:
        parts.append(request.system.strip() + "\n\n")
    for ex in [*request.examples, *(Example(t.user, t.assistant) for t in request.history)]:
        parts.append(f"Input: {ex.input}\nOutput: {ex.output}\n\n")
    parts.append("Input: ")
    parts.extend(user_content(request))
    parts.append("\nOutput:")
    return join_text(parts)
