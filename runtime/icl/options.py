"""The in-context-learning options (--labels, --calibrate, --shots, --select, --seed) as
`askgpt ask`, templates and the Python API all resolve and apply them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from askgpt.runtime.engine.base import Engine
from askgpt.runtime.errors import UsageError
from askgpt.runtime.icl.answers import LabelAnswer, ServedLabelAnswer, has_logprobs
from askgpt.runtime.icl.labels import AUTO, parse_labels
from askgpt.runtime.icl.selection import Select, parse_select, select_examples
from askgpt.runtime.prompting.generate import Answer, GenerationConfig
from askgpt.runtime.prompting.request import Request

# --shots without --select: the nearest examples (on the built-in model and a sentiment
# task they beat random ones; see docs/in-context-learning.md).
DEFAULT_SELECT = Select.SIMILAR
DEFAULT_SEED = 0
# How much of the input's documents the similarity search reads (the examples are short).
QUERY_CHARS = 4000


@dataclass(frozen=True)
class IclOptions:
    """``labels``: "A,B,...", "auto" or a sequence; None for a free answer. ``shots``: how
    many examples to draw per input from all the examples given (None: use them all)."""

    labels: str | tuple[str, ...] | None = None
    calibrate: bool = False
    shots: int | None = None
    select: Select | None = None
    seed: int | None = None

    @classmethod
    def of(cls, *, labels: str | Sequence[str] | None = None, calibrate: bool = False, shots: int | None = None,
           select: str | Select | None = None, seed: int | None = None) -> IclOptions:
        return cls(labels if labels is None or isinstance(labels, str) else tuple(labels), calibrate, shots,
                   None if select is None else parse_select(select), seed)

    def over(self, labels: Sequence[str] = (), shots: int | None = None,
             select: Select | None = None) -> IclOptions:
        """These options over a template's (``labels``, ``shots``, ``select``): given ones win."""
        return replace(self, labels=self.labels if self.labels is not None else (tuple(labels) or None),
                       shots=self.shots if self.shots is not None else shots,
                       select=self.select if self.select is not None else select)

    def check(self) -> IclOptions:
        """Usage errors, before anything is read or loaded."""
        if self.calibrate and self.labels is None:
            raise UsageError("--calibrate corrects label probabilities, so it needs --labels",
                             hint="e.g. --labels positive,negative --calibrate")
        if self.shots is not None and self.shots < 0:
            raise UsageError("--shots must be 0 or more")
        if self.select is not None and self.shots is None:
            raise UsageError("--select chooses which examples --shots draws, so it needs --shots",
                             hint="e.g. --examples pool.jsonl --shots 4 --select similar")
        if self.seed is not None and self.seed < 0:
            raise UsageError("--seed must be 0 or more")
        if isinstance(self.labels, str) and self.labels.strip().lower() != AUTO:
            parse_labels(self.labels, ())
        elif isinstance(self.labels, tuple):
            parse_labels(self.labels, ())
        return self


@dataclass(frozen=True)
class IclPlan:
    request: Request  # with the examples drawn for this input
    labels: tuple[str, ...] | None
    labels_from_examples: bool  # --labels auto: the caller says which labels it took
    calibrate: bool
    shots: int | None = None  # as drawn (None: every example given was kept)
    select: str | None = None
    seed: int | None = None


def query_of(request: Request) -> str:
    """The input the examples are matched against: the documents (their start) and the words."""
    docs = " ".join(d.text[:QUERY_CHARS] for d in request.documents)
    return f"{docs} {request.instruction}".strip()


def plan_request(request: Request, options: IclOptions) -> IclPlan:
    """The request with ``options.shots`` examples drawn from all of its examples (the
    pool), and the labels (``auto``: the pool's distinct outputs, whatever was drawn)."""
    options.check()
    pool = request.examples
    labels = None if options.labels is None else parse_labels(options.labels, pool)
    auto = isinstance(options.labels, str) and options.labels.strip().lower() == AUTO
    if options.shots is None:
        return IclPlan(request, labels, auto, options.calibrate)
    if not pool and options.shots > 0:
        raise UsageError("--shots draws from the examples, but none were given",
                         hint="give a pool with --examples FILE (or -e, or a template's)")
    how = options.select or DEFAULT_SELECT
    seed = DEFAULT_SEED if options.seed is None else options.seed
    drawn = select_examples(pool, query_of(request), options.shots, how, seed)
    return IclPlan(replace(request, examples=drawn), labels, auto, options.calibrate, options.shots, how.value, seed)


def label_answer(engine: Engine, request: Request, labels: Sequence[str], config: GenerationConfig | None = None,
                 *, calibrate: bool = False) -> LabelAnswer | ServedLabelAnswer:
    """The answer restricted to ``labels``: by their log-probabilities, or for a served
    model by a grammar (its ``note`` says so)."""
    if has_logprobs(engine):
        return LabelAnswer(engine, request, labels, calibrate=calibrate)
    return ServedLabelAnswer(engine, request, labels, config or GenerationConfig(), calibrate=calibrate)


def is_label_answer(answer: Answer) -> bool:
    return isinstance(answer, LabelAnswer | ServedLabelAnswer)
