"""One answer, as the Python API and the CLI both read it: streamed once, kept, logged when done."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from askgpt.runtime.documents.strategies import LongContextReport
from askgpt.runtime.icl.answers import LabelAnswer, ServedLabelAnswer
from askgpt.runtime.icl.labels import LabelScores
from askgpt.runtime.prompting.generate import Answer, Stats
from askgpt.runtime.prompting.structured import check_json


@dataclass(frozen=True)
class Citation:
    """A piece of the input the model was given as evidence: where it is ("report.txt, lines
    12-14") and its text, exactly as the input has it (untrusted: data, not markup)."""

    where: str
    text: str


class Response:
    """One answer: iterate for the text as it is generated (once), or call `text()`."""

    def __init__(self, answer: Answer, *, on_done: Callable[[Answer], None] | None = None,
                 report: LongContextReport | None = None, warnings: list[str] | None = None,
                 cite: bool = True) -> None:
        self._answer = answer
        self.report = report  # what a long-document strategy did (None: the documents fitted)
        self._cite = cite  # False: --no-cite, cite=False or the config's cite = false
        # What the CLI would have said on stderr about this answer (the Python API prints nothing).
        self.warnings: list[str] = warnings if warnings is not None else []
        self._pieces: list[str] = []
        self._done = False
        self._on_done = on_done  # the conversation log's record, once the answer has ended

    def __iter__(self) -> Iterator[str]:
        if self._done:
            yield from self._pieces
            return
        try:
            for piece in self._answer:
                self._pieces.append(piece)
                yield piece
        finally:
            self._done = True
            if self._on_done is not None:
                done, self._on_done = self._on_done, None
                done(self._answer)

    def text(self) -> str:
        for _ in self:
            pass
        return "".join(self._pieces)

    def json(self) -> Any:
        """The answer parsed as JSON (`StructuredOutputError` if it is not)."""
        return check_json(self.text())

    @property
    def citations(self) -> tuple[Citation, ...]:
        """The evidence the model was given from the input, with where it is, for checking the
        answer; empty when the documents were read whole or citing is off."""
        if not self._cite or self.report is None:
            return ()
        return tuple(Citation(where, text) for where, text in self.report.quotes)

    @property
    def usage(self) -> Stats | None:
        """Token counts, timings and why generation stopped; None until it has ended."""
        return self._answer.stats

    @property
    def answer(self) -> Answer:
        """The runtime's streamed answer underneath (for logging and rendering)."""
        return self._answer

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The labels the answer was restricted to (``labels=``), None for a free answer."""
        return self._answer.labels if isinstance(self._answer, LabelAnswer | ServedLabelAnswer) else None

    @property
    def scores(self) -> LabelScores | None:
        """Each label's score, once the answer is read (``labels=`` on a local model)."""
        return self._answer.scores if isinstance(self._answer, LabelAnswer | ServedLabelAnswer) else None

    @property
    def note(self) -> str | None:
        """What a user should be told about how the answer was made: a served model's labels
        come from a grammar, not from log-probabilities."""
        return self._answer.note if isinstance(self._answer, ServedLabelAnswer) else None

    def __str__(self) -> str:
        return self.text()
