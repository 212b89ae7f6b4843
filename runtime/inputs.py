"""Reading what the user hands over: stdin, files and example files.

Everything is read as bytes and decoded as UTF-8 with replacement, so a stray
Latin-1 byte or a binary file never crashes a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from .errors import InputNotFoundError, UsageError
from .prompt import Document, Request, build_request, load_examples, parse_example

STDIN_NAME = "stdin"


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def read_stdin(stream: BinaryIO, *, is_terminal: bool) -> str | None:
    """The piped input, or None for a terminal (which is never waited on)."""
    if is_terminal:
        return None
    return decode(stream.read())


def read_document(path: str) -> Document:
    p = Path(path).expanduser()
    try:
        return Document(source=path, text=decode(p.read_bytes()))
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"file not found: {path}", hint="check the path given to -f/--file") from exc
    except IsADirectoryError as exc:
        raise InputNotFoundError(f"{path} is a folder, not a file", hint="pass files one by one with -f") from exc
    except OSError as exc:
        raise InputNotFoundError(f"cannot read {path}: {exc.strerror}") from exc


def collect_request(
    *,
    prompt_words: Sequence[str],
    files: Sequence[str],
    stdin: BinaryIO,
    stdin_is_terminal: bool,
    system: str | None = None,
    example_args: Sequence[str] = (),
    examples_file: str | None = None,
) -> Request:
    """Read every input the command line names and combine them into a `Request`.

    ``-f -`` places stdin among the files; otherwise piped stdin is read once
    and `build_request` decides whether it is a document or the question.
    """
    stdin_text = read_stdin(stdin, is_terminal=stdin_is_terminal)
    documents: list[Document] = []
    for name in files:
        if name == "-":
            if stdin_is_terminal:
                raise UsageError("-f - reads stdin, but stdin is a terminal", hint="pipe the document in")
            documents.append(Document(STDIN_NAME, stdin_text or ""))
        else:
            documents.append(read_document(name))
    examples = [parse_example(e) for e in example_args]
    if examples_file:
        examples.extend(load_examples(examples_file))
    return build_request(
        prompt=" ".join(prompt_words),
        stdin_text=stdin_text,
        documents=documents,
        stdin_consumed="-" in files,
        system=system,
        examples=examples,
    )
