"""Inputs too large to hold as Python strings: kept on disk and read in segments.

A piped input past `LARGE_INPUT_BYTES` is copied to a temporary file block by
block (a pipe cannot be read twice); a large `-f` file is read where it lies.
Long-context strategies then read such a document as a series of segments of
about `SEGMENT_CHARS` characters, each ending at a line end where one is near,
decoded incrementally (a UTF-8 character split between two reads is joined,
invalid bytes become U+FFFD as everywhere else). Memory stays flat in the
input's length: one segment, its chunks and the few chunks kept.
"""

from __future__ import annotations

import codecs
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

LARGE_INPUT_BYTES = 16 << 20  # larger inputs stay on disk
SEGMENT_CHARS = 1 << 20
_READ_BYTES = 1 << 20


def read_or_spool(stream: BinaryIO, limit: int = LARGE_INPUT_BYTES) -> bytes | Path:
    """The stream's bytes if there are at most ``limit`` of them, else a temporary file
    holding all of them (the caller deletes it)."""
    head = stream.read(limit + 1)
    if len(head) <= limit:
        return head
    fd, name = tempfile.mkstemp(prefix="askgpt-stdin-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            del head
            shutil.copyfileobj(stream, out, _READ_BYTES)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def segments(path: Path, size: int = SEGMENT_CHARS, read_bytes: int = _READ_BYTES) -> Iterator[str]:
    """The file's text in pieces of about ``size`` characters that end at a line end
    (or, in a line longer than ``size``, anywhere); joined, they are the whole text."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    with path.open("rb") as f:
        while True:
            block = f.read(read_bytes)
            pending += decoder.decode(block, final=not block)
            while len(pending) >= size:
                cut = pending.rfind("\n", 0, size) + 1 or size
                yield pending[:cut]
                pending = pending[cut:]
            if not block:
                break
    if pending:
        yield pending
