"""Cutting documents into chunks measured in the model's own tokens.

A chunk never exceeds its token budget, consecutive chunks overlap by about
``overlap`` tokens, cuts fall at paragraph breaks, else line ends, else
sentence ends where one is near, and every chunk knows its source and line
range. Python strings are code points, so a cut never splits a UTF-8
character. Every character of the input lies in at least one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

CountTokens = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    source: str
    text: str
    first_line: int  # 1-based, inclusive
    last_line: int
    start: int  # character offsets into the document's text
    end: int
    n_tokens: int

    @property
    def where(self) -> str:
        lines = f"line {self.first_line}" if self.first_line == self.last_line else \
            f"lines {self.first_line}-{self.last_line}"
        return f"{self.source}, {lines}"


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    line: int  # the line the unit starts on
    tokens: int
    paragraph_end: bool  # a blank line follows: the best place to cut


def _bounds(text: str, start: int, end: int, level: int) -> list[int]:
    """Candidate cut points inside text[start:end]: sentence ends (level 0), spaces (1),
    or every character (2: a run with no space at all)."""
    if level == 0:
        return [m.end() for m in _SENTENCE_END.finditer(text, start, end) if start < m.end() < end]
    if level == 1:
        return [i + 1 for i in range(start, end - 1) if text[i] == " "]
    return list(range(start + 1, end))


def _pieces(text: str, start: int, end: int, count: CountTokens, limit: int,
            level: int = 0) -> Iterator[tuple[int, int]]:
    """Split text[start:end] into pieces of at most ``limit`` tokens, cutting at the
    coarsest kind of boundary that works: sentence ends, else spaces, else characters."""
    if count(text[start:end]) <= limit:
        yield start, end
        return
    bounds = _bounds(text, start, end, level)
    if not bounds:
        yield from _pieces(text, start, end, count, limit, level + 1)
        return
    piece_start, prev, running = start, start, 0
    for b in [*bounds, end]:
        seg = count(text[prev:b])
        if running + seg > limit and prev > piece_start:
            # Close the piece at the previous bound (checked: seams can merge tokens).
            if count(text[piece_start:prev]) <= limit:
                yield piece_start, prev
            else:
                yield from _pieces(text, piece_start, prev, count, limit, level + 1)
            piece_start, running = prev, 0
        running += seg
        prev = b
    if count(text[piece_start:end]) <= limit:
        yield piece_start, end
    else:  # one segment alone is over the limit: cut it at finer boundaries
        yield from _pieces(text, piece_start, end, count, limit, min(level + 1, 2))


def _units(text: str, count: CountTokens, limit: int) -> list[_Unit]:
    units: list[_Unit] = []
    line_no = 1
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        end = n if nl < 0 else nl + 1
        following = text.find("\n", end)
        blank_follows = end < n and text[end:following if following >= 0 else n].strip() == ""
        for a, b in _pieces(text, pos, end, count, limit):
            units.append(_Unit(a, b, line_no, count(text[a:b]), False))
        if units:
            last = units[-1]
            units[-1] = _Unit(last.start, last.end, last.line, last.tokens, bool(blank_follows))
        pos = end
        line_no += 1
    return units


def chunk_text(text: str, source: str, count: CountTokens, *, max_tokens: int, overlap: int = 0) -> list[Chunk]:
    """Chunks of at most ``max_tokens`` tokens (as ``count`` measures them)."""
    if max_tokens < 8:
        raise ValueError("chunks need room for at least 8 tokens")
    overlap = max(0, min(overlap, max_tokens // 2))
    units = _units(text, count, max_tokens)
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        best_cut = None
        while j < len(units) and total + units[j].tokens <= max_tokens:
            total += units[j].tokens
            j += 1
            if units[j - 1].paragraph_end and total >= max_tokens * 0.6:
                best_cut = j
        if j == i:  # one unit over budget cannot happen (units are cut to fit), but never loop
            j = i + 1
        end = best_cut if best_cut is not None and j < len(units) else j
        chunk, used = _make_chunk(text, source, units[i:end], count, max_tokens)
        chunks.append(chunk)
        end = i + used
        if end >= len(units):
            break
        # Step back over trailing units to overlap about `overlap` tokens, always moving forward.
        back, k = 0, end
        while overlap and k - 1 > i and back + units[k - 1].tokens <= overlap:
            k -= 1
            back += units[k].tokens
        i = k
    return chunks


def _make_chunk(text: str, source: str, units: list[_Unit], count: CountTokens,
                max_tokens: int) -> tuple[Chunk, int]:
    """The chunk made of ``units`` (fewer, if their joined text counts over budget) and how many it used."""
    used = len(units)
    while True:
        start, end = units[0].start, units[used - 1].end
        n = count(text[start:end])
        # Token counts of joined units can differ slightly from their sum (merges at the seams).
        if n <= max_tokens or used == 1:
            break
        used -= 1
    piece = text[start:end]
    first_line = units[0].line
    return Chunk(source, piece, first_line, first_line + piece.rstrip("\n").count("\n"), start, end, n), used
