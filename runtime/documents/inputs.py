"""Reading what the user hands over: stdin, files and example files.

Everything is read as bytes and decoded as UTF-8 with replacement, so a stray
Latin-1 byte or a binary file never crashes a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from askgpt.runtime.documents.spool import LARGE_INPUT_BYTES, read_or_spool
from askgpt.runtime.errors import InputNotFoundError, InputReadError, UsageError
from askgpt.runtime.prompting.request import (
    STDIN_SOURCE,
    Document,
    Example,
    Request,
    build_request,
    parse_example,
    parse_examples,
    stdin_document,
)


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# The image formats askgpt reads (askgpt.vision.images), by their first bytes.
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"))


def image_format(head: bytes) -> str | None:
    """The image format whose signature ``head`` (a file's first 16 bytes or more) starts
    with: PNG, JPEG, GIF, WebP or BMP; None for anything else."""
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    # "BM", the file size, then two reserved 16-bit fields that are zero: text that starts
    # with "BM" has no NUL bytes there.
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\0\0\0\0":
        return "BMP"
    return None


def _refuse_image(head: bytes) -> None:
    found = image_format(head)
    if found is not None:
        raise UsageError(f"stdin holds a {found} image, not text",
                         hint='give it with -i -, e.g. cat photo.png | askgpt -i - "what is this"')


def read_stdin(stream: BinaryIO, *, is_terminal: bool, large: int = LARGE_INPUT_BYTES) -> str | Path | None:
    """The piped input; a temporary file holding it when it is over ``large`` bytes, too
    large to keep in memory (runtime.documents.spool); None for a terminal (never waited on).
    Piped image bytes are a `UsageError` (they would reach the model as garbled text)."""
    if is_terminal:
        return None
    data = read_or_spool(stream, large)
    if isinstance(data, Path):
        try:
            with data.open("rb") as fh:
                _refuse_image(fh.read(16))
        except BaseException:
            data.unlink(missing_ok=True)
            raise
        return data
    _refuse_image(data[:16])
    return decode(data)


@dataclass(frozen=True)
class Inputs:
    request: Request
    stdin_image: bytes | None = None  # stdin's bytes when `-i -` names it as an image
    spooled: Path | None = None  # a temporary file holding a large piped input

    def cleanup(self) -> None:
        """Remove the temporary file of a large piped input (call when done)."""
        if self.spooled is not None:
            self.spooled.unlink(missing_ok=True)


def _read_text(path: str, *, what: str, hint: str) -> str:
    """A named file's text; a missing one is an `InputNotFoundError` (exit 3), one that
    exists but cannot be read (permissions, an I/O error) an `InputReadError` (exit 1)."""
    try:
        return decode(Path(path).expanduser().read_bytes())
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"{what} not found: {path}", hint=hint) from exc
    except IsADirectoryError as exc:
        raise InputNotFoundError(f"{path} is a folder, not a file", hint=hint) from exc
    except OSError as exc:
        raise InputReadError(f"cannot read {what} {path}: {exc.strerror or exc}",
                             hint="check that you may read it") from exc


def read_document(path: str, large: int = LARGE_INPUT_BYTES) -> Document:
    """A -f file: its text, or for a file too large to hold in memory, a reference to it."""
    hint = "check the path given to -f/--file"
    file = Path(path).expanduser()
    try:
        size = file.stat().st_size if file.is_file() else 0
    except OSError:
        size = 0  # _read_text reports the problem
    if size > large:
        return Document(source=path, text="", path=file, size=size)
    return Document(source=path, text=_read_text(path, what="file", hint=hint))


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
    large_input_bytes: int = LARGE_INPUT_BYTES,
) -> Inputs:
    """Read every text input the command line names and combine them into a `Request`.

    ``-f -`` places stdin among the files; ``-i -`` makes it an image (its
    bytes are handed back undecoded); otherwise piped stdin is read once and
    `build_request` decides whether it is a document or the question.
    Images themselves are encoded by askgpt.vision and added by the caller.
    """
    for option, given in (("-f -", files), ("-i -", image_args)):
        if list(given).count("-") > 1:
            raise UsageError(f"{option} is given {list(given).count('-')} times, but stdin can be read once")
    if "-" in image_args:
        if "-" in files:
            raise UsageError("stdin can be an image (-i -) or a document (-f -), not both")
        if stdin_is_terminal:
            raise UsageError("-i - reads an image from stdin, but stdin is a terminal",
                             hint="pipe the image in: cat pic.png | askgpt -i - ...")
        image = stdin.read()
        request = build_request(
            prompt=" ".join(prompt_words), stdin_text=None, documents=[read_document(f) for f in files],
            system=system, examples=examples_of(example_args, examples_file), has_images=True)
        return Inputs(request, image)
    piped = read_stdin(stdin, is_terminal=stdin_is_terminal, large=large_input_bytes)
    spooled = piped if isinstance(piped, Path) else None
    stdin_text = piped if isinstance(piped, str) else None
    try:
        documents: list[Document] = []
        for name in files:
            if name == "-":
                if stdin_is_terminal:
                    raise UsageError("-f - reads stdin, but stdin is a terminal", hint="pipe the document in")
                documents.append(stdin_document(spooled) if spooled else Document(STDIN_SOURCE, stdin_text or ""))
            else:
                documents.append(read_document(name, large_input_bytes))
        return Inputs(build_request(
            prompt=" ".join(prompt_words),
            stdin_text=stdin_text,
            documents=documents,
            stdin_consumed="-" in files,
            system=system,
            examples=examples_of(example_args, examples_file),
            has_images=bool(image_args),
            stdin_file=spooled,
        ), spooled=spooled)
    except BaseException:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
        raise


def examples_of(example_args: Sequence[str], examples_file: str | None) -> list[Example]:
    """The -e/--example pairs, then the examples file's."""
    examples = [parse_example(e) for e in example_args]
    if examples_file:
        examples.extend(load_examples(examples_file))
    return examples
