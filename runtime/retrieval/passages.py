"""Passages: the sentences of a document's chunks, each with its place (source, lines) and
its neighbours, so the model can be given the evidence and just enough around it.

Chunks overlap; a passage is emitted once, from the first chunk that holds it. A "sentence"
of a text without sentence ends (a log, a table) is cut at line ends, and anything still
longer than MAX_WORDS words is cut into runs of that many words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

MAX_WORDS = 60
_ABBREVIATION = re.compile(
    r"(?<![\w.])(?:[A-Za-z]|Dr|Mr|Mrs|Ms|Mx|Prof|St|Mt|Jr|Sr|No|Nr|vs|etc|ca|bzw|usw|Abb|Fig|approx)\.$")
_CARRY_CHARS = 4096
_BLANK_LINE = re.compile(r"\n\s*\n")
_ENDS = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n")


class ChunkLike(Protocol):
    """A piece of a document with its place (runtime.documents.chunking's Chunk)."""

    @property
    def source(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def first_line(self) -> int: ...
    @property
    def start(self) -> int: ...


@dataclass(frozen=True)
class Passage:
    seq: int  # position in the input, over all documents
    source: str
    text: str
    first_line: int
    last_line: int
    start: int  # character offsets into the source
    end: int
    before: str = ""  # the passage just before it in the same paragraph (context for the model)
    after: str = ""

    @property
    def where(self) -> str:
        lines = f"line {self.first_line}" if self.first_line == self.last_line else \
            f"lines {self.first_line}-{self.last_line}"
        return f"{self.source}, {lines}"


def _pieces(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the sentences of ``text``, long ones cut at lines, then at MAX_WORDS words."""
    start = 0
    for m in _ENDS.finditer(text):
        if _ABBREVIATION.search(text, max(0, m.start() - 8), m.start()):
            continue  # "Dr. Osei", "J. R. Hartley", "z. B.": not a sentence end
        closers = len(m.group()) - len(m.group().lstrip("\"')]"))  # a closing quote ends the sentence too
        yield from _short(text, start, m.start() + closers)
        start = m.end()
    yield from _short(text, start, len(text))


def _short(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    piece = text[start:end]
    if not piece.strip():
        return
    if len(piece.split()) <= MAX_WORDS:
        yield start, end
        return
    if "\n" in piece.strip():
        offset = start
        for line in piece.split("\n"):
            yield from _short(text, offset, offset + len(line))
            offset += len(line) + 1
        return
    words = list(re.finditer(r"\S+", piece))
    for i in range(0, len(words), MAX_WORDS):
        run = words[i:i + MAX_WORDS]
        yield start + run[0].start(), start + run[-1].end()


def passages(chunks: Iterable[ChunkLike]) -> Iterator[Passage]:
    """The passages of ``chunks`` in order, each once, with its neighbours attached."""
    covered: dict[str, int] = {}
    seq = 0
    previous: Passage | None = None
    # The text after the last passage, up to the end of the chunks read, kept only to see whether
    # a blank line follows it; capped, since only whitespace can lie between passages.
    carry = ""
    for chunk in chunks:
        done = covered.get(chunk.source, -1)
        for lo, hi in _pieces(chunk.text):
            start, end = chunk.start + lo, chunk.start + hi
            if end <= done:
                continue  # already emitted from the chunk before (the overlap)
            if start < done:
                lo, start = lo + (done - start), done
            text = " ".join(chunk.text[lo:hi].split())
            if not text:
                continue
            piece = chunk.text[lo:hi]
            lead, trail = len(piece) - len(piece.lstrip()), len(piece) - len(piece.rstrip())
            lo, hi, start, end = lo + lead, hi - trail, start + lead, end - trail
            first = chunk.first_line + chunk.text.count("\n", 0, lo)
            last = first + chunk.text.count("\n", lo, hi)
            current = Passage(seq, chunk.source, text, first, last, start, end)
            seq += 1
            if previous is not None:
                # Neighbours are context only within one paragraph: across a blank line they
                # are another topic, which a small model copies as if it were the answer.
                if previous.end >= chunk.start:
                    gap = chunk.text[previous.end - chunk.start:lo]
                elif previous.source == chunk.source:
                    gap = carry[:chunk.start - previous.end] + chunk.text[:lo]
                else:
                    gap = "\n\n"
                same = previous.source == current.source and not _BLANK_LINE.search(gap)
                yield _with(previous, after=current.text if same else "")
                current = _with(current, before=previous.text if same else "")
            previous = current
            done = end
        covered[chunk.source] = done
        if previous is not None and previous.source == chunk.source:
            carry = (chunk.text[previous.end - chunk.start:] if previous.end >= chunk.start
                     else carry[:chunk.start - previous.end] + chunk.text)[:_CARRY_CHARS]
    if previous is not None:
        yield previous


def _with(p: Passage, *, before: str | None = None, after: str | None = None) -> Passage:
    return Passage(p.seq, p.source, p.text, p.first_line, p.last_line, p.start, p.end,
                   p.before if before is None else before, p.after if after is None else after)
