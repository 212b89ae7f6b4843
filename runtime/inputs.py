"""Reading what the user hands over: stdin, files and example files.

Everything is read as bytes and decoded as UTF-8 with replacement, so a stray
Latin-1 byte or a binary file never crashes a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import InputNotFoundError, UsageError
from .prompt import STDIN_SOURCE, Document, Example, Request, build_request, parse_example, parse_examples


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def read_stdin(stream: BinaryIO, *, is_terminal: bool) -> str | None:
    """The piped input, or None for a terminal (which is never waited on)."""
    if is_terminal:
        return None
    return decode(stream.read())


@dataclass(frozen=True)
class Inputs:
    request: Request
    stdin_image: bytes | None = None  # stdin's bytes when `-i -` names it as an image


def _read_text(path: str, *, what: str, hint: str) -> str:
    """A named file's text; a missing or unreadable one is an `InputNotFoundError` (exit 3)."""
    try:
        return decode(Path(path).expanduser().read_bytes())
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"{what} not found: {path}", hint=hint) from exc
    except IsADirectoryError as exc:
        raise InputNotFoundError(f"{path} is a folder, not a file", hint=hint) from exc
    except OSError as exc:
        raise InputNotFoundError(f"cannot read {what} {path}: {exc.strerror}", hint=hint) from exc


def read_document(path: str) -> Document:
    return Document(source=path, text=_read_text(path, what="file", hint="check the path given to -f/--file"))


def load_examples(path: str) -> tuple[Example, ...]:
    """A JSONL file of few-shot examples (see `parse_examples`)."""
    return parse_examples(_read_text(path, what="examples file", hint="check the path given to --examples"), path)


def collect_inputs(
    *,
    prompt_words: Sequence[str],
    files: Sequence[str],
    stdin: BinaryIO,
    stdin_is_terminal: bool,
    system: str | None = None,
    example_args: Sequence[str] = (),
    examples_file: str | None = None,
    image_args: Sequence[str] = (),
) -> Inputs:
    """Read every text input the command line names and combine them into a `Request`.

    ``-f -`` places stdin among the files; ``-i -`` makes it an image (its
    bytes are handed back undecoded); otherwise piped stdin is read once and
    `build_request` decides whether it is a document or the question.
    Images themselves are encoded by askgpt.vision and added by the caller.
    """
    if "-" in image_args:
        if "-" in files:
            raise UsageError("stdin can be an image (-i -) or a document (-f -), not both")
        if stdin_is_terminal:
            raise UsageError("-i - reads an image from stdin, but stdin is a terminal",
                             hint="pipe the image in: cat pic.png | askgpt -i - ...")
        image = stdin.read()
        request = build_request(
            prompt=" ".join(prompt_words), stdin_text=None, documents=[read_document(f) for f in files],
            system=system, examples=_examples(example_args, examples_file), has_images=True)
        return Inputs(request, image)
    stdin_text = read_stdin(stdin, is_terminal=stdin_is_terminal)
    documents: list[Document] = []
    for name in files:
        if name == "-":
            if stdin_is_terminal:
                raise UsageError("-f - reads stdin, but stdin is a terminal", hint="pipe the document in")
            documents.append(Document(STDIN_SOURCE, stdin_text or ""))
        else:
            documents.append(read_document(name))
    return Inputs(build_request(
        prompt=" ".join(prompt_words),
        stdin_text=stdin_text,
        documents=documents,
        stdin_consumed="-" in files,
        system=system,
        examples=_examples(example_args, examples_file),
        has_images=bool(image_args),
    ))


def _examples(example_args: Sequence[str], examples_file: str | None) -> list[Example]:
    examples = [parse_example(e) for e in example_args]
    if examples_file:
        examples.extend(load_examples(examples_file))
    return examples
