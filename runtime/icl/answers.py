"""Label answers: the best-scoring label as an `Answer` (a local model), or a served model's
answer restricted to the labels by a grammar (it gives no log-probabilities)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

from askgpt.runtime.engine.base import Engine
from askgpt.runtime.engine.capabilities import gives_logprobs
from askgpt.runtime.errors import StructuredOutputError
from askgpt.runtime.icl.calibration import calibrated
from askgpt.runtime.icl.labels import LabelScores, answer_end, label_tokens, score_labels
from askgpt.runtime.prompting.generate import Answer, GenerationConfig, Stats, StopReason, check_fits, prepare, render
from askgpt.runtime.prompting.request import Request
from askgpt.runtime.prompting.structured import constrain


def has_logprobs(engine: Engine) -> bool:
    """Whether the engine gives next-token log-probabilities (a served model does not)."""
    return gives_logprobs(engine)


class LabelAnswer(Answer):
    """The label with the highest (optionally calibrated) score, as an answer: iterating
    scores the labels and yields the winner; ``scores`` holds them afterwards."""

    def __init__(self, engine: Engine, request: Request, labels: Sequence[str], *, calibrate: bool = False,
                 config: GenerationConfig | None = None) -> None:
        prompt = render(engine, request)
        self._prepared = prompt
        longest = max(len(label_tokens(engine, label)) for label in labels) + len(answer_end(engine))
        check_fits(prompt.n_tokens, n_ctx=engine.info.n_ctx, max_tokens=longest)
        super().__init__(engine, prompt, config or GenerationConfig(max_tokens=longest))
        self._scorer = engine
        self._request = request
        self.labels = tuple(labels)
        self.calibrate = calibrate
        self.scores: LabelScores | None = None
        self._label = ""

    def __iter__(self) -> Iterator[str]:
        start = time.perf_counter()
        reason = StopReason.END
        try:
            if self.calibrate:
                self.scores = calibrated(self._scorer, self._request, self.labels)
            else:
                self.scores = score_labels(self._scorer, self._request, self.labels)
            self._label = self.scores.best
            yield self._label
        except (KeyboardInterrupt, GeneratorExit):
            reason = StopReason.INTERRUPTED
            raise
        finally:
            self.stats = Stats(prompt_tokens=self._prepared.n_tokens,
                               generated_tokens=len(label_tokens(self._scorer, self._label)) if self._label else 0,
                               prompt_seconds=time.perf_counter() - start, generate_seconds=0.0,
                               stop_reason=reason)

    def text(self) -> str:
        return "".join(self)

    @property
    def emitted(self) -> str:
        return self._label


def label_schema(labels: Sequence[str]) -> dict[str, object]:
    return {"enum": list(labels)}


def label_of(text: str, labels: Sequence[str]) -> str:
    """The label a grammar-restricted answer names: a JSON string (quotes stripped), else
    the bare text; matched exactly, then ignoring case."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text.strip().strip('"')
    value = str(value).strip()
    if value in labels:
        return value
    folded = {label.casefold(): label for label in reversed(labels)}
    if value.casefold() in folded:
        return folded[value.casefold()]
    raise StructuredOutputError(f"the served model answered {text[:80]!r}, which is none of the labels",
                                hint="it may not support JSON-schema grammars; use a local model for --labels")


SERVED_NOTE = ("the served model gives askgpt no log-probabilities, so the answer is restricted to the "
               "labels by a grammar instead (no label probabilities{calibration})")


class ServedLabelAnswer(Answer):
    """A served model's answer restricted to ``labels`` by the JSON schema ``{"enum": labels}``
    (runtime.prompting.structured), printed without its quotes."""

    def __init__(self, engine: Engine, request: Request, labels: Sequence[str], config: GenerationConfig, *,
                 calibrate: bool = False) -> None:
        constrained, settings = constrain(request, config, label_schema(labels))
        prompt = prepare(engine, constrained, settings)
        self._inner = Answer(engine, prompt, settings)
        super().__init__(engine, prompt, settings)
        self.labels = tuple(labels)
        self.scores: LabelScores | None = None
        self.note = SERVED_NOTE.format(calibration=", so no --calibrate either" if calibrate else "")
        self._label = ""

    def __iter__(self) -> Iterator[str]:
        try:
            text = self._inner.text()
        finally:
            self.stats = self._inner.stats
        if self.stats is not None and self.stats.stop_reason is StopReason.INTERRUPTED:
            return
        self._label = label_of(text, self.labels)
        yield self._label

    def text(self) -> str:
        return "".join(self)

    @property
    def emitted(self) -> str:
        return self._label

