"""Answers restricted to labels, chosen by the model's log-probabilities.

Each label is scored as the start of the assistant's answer: its tokens (content, so
tokenized with control-token parsing off) after the prepared prompt, their log-probabilities
summed one after another. When one label's tokens begin another's ("pos" and "pos"+"itive"
under some tokenizer), the shorter would always score at least as high, so then every label
is scored as the whole answer: its tokens and the token that ends the assistant's turn.
The end token is not added always: on the built-in model it costs accuracy (a sentiment set,
17-19/24 with it against 20/24 without; docs/in-context-learning.md), because how likely the
model is to stop right after a label is a bias of its own, not the input's. A model without a
chat template gets the plain completion prompt, the label after a space (as its examples
are written) and a newline as its end.

Ties go to the label given first. A served model gives no log-probabilities here: its
answer is restricted to the labels by a JSON-schema grammar instead (`ServedLabelAnswer`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from askgpt.runtime.engine.base import Engine, PromptPart, TokenIds
from askgpt.runtime.errors import UsageError
from askgpt.runtime.prompting.generate import control_pattern, render
from askgpt.runtime.prompting.request import Example, Markup, Request
from askgpt.runtime.prompting.template import format_prompt

if TYPE_CHECKING:
    import numpy as np

AUTO = "auto"


@dataclass(frozen=True)
class LabelScores:
    """Whole-sequence log-probabilities of each label as the answer. After calibration
    ``logprobs`` are corrected scores (``log p - log p_cf``), ``raw`` the model's own and
    ``content_free`` the averaged label probabilities of the content-free inputs."""

    labels: tuple[str, ...]
    logprobs: tuple[float, ...]
    raw: LabelScores | None = None
    content_free: tuple[float, ...] | None = None
    ended: bool = False  # scored with the end-of-answer token after each label

    @property
    def probabilities(self) -> tuple[float, ...]:
        """Softmax over the labels: each label's share of the probability the labels hold."""
        top = max(self.logprobs)
        if top == -math.inf:
            return tuple(1 / len(self.labels) for _ in self.labels)
        exps = [math.exp(lp - top) for lp in self.logprobs]
        total = sum(exps)
        return tuple(e / total for e in exps)

    @property
    def best(self) -> str:
        """The most likely label; of equal ones the first given."""
        return self.labels[self.logprobs.index(max(self.logprobs))]


def parse_labels(text: str | Sequence[str], examples: Sequence[Example]) -> tuple[str, ...]:
    """``--labels A,B,...`` (or a sequence of labels), or ``auto``: the distinct outputs of
    ``examples`` in first-seen order. At least two labels, none empty, none repeated."""
    if isinstance(text, str) and text.strip().lower() == AUTO:
        if not examples:
            raise UsageError("--labels auto takes the labels from the examples, but none were given",
                             hint="give examples (-e, --examples, -T) or the labels themselves: --labels A,B")
        labels = tuple(dict.fromkeys(e.output.strip() for e in examples))
        if len(labels) < 2:
            raise UsageError(f"--labels auto found one label in the examples ({labels[0]!r}); it needs two or more")
        return labels
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    if any(not s for s in items):
        raise UsageError("--labels has an empty label", hint="e.g. --labels positive,negative")
    repeated = sorted({s for s in items if items.count(s) > 1})
    if repeated:
        raise UsageError(f"--labels names {', '.join(map(repr, repeated))} more than once")
    if len(items) < 2:
        raise UsageError("--labels needs at least two labels", hint="e.g. --labels positive,negative")
    return tuple(items)


_MARK = "LABEL"


def answer_end(engine: Engine) -> tuple[int, ...]:
    """The token(s) that end an assistant's answer: the chat template's end-of-turn control
    token (found after an assistant turn's content, tokenized as markup), else the model's
    end-of-sequence token; a newline for a model without a template."""
    info = engine.info
    if not info.chat_template:
        return tuple(engine.tokenize("\n", special=False))
    pieces = format_prompt(info, Request("question", examples=(Example("input", _MARK),))).pieces
    after = next((pieces[i + 1] for i, p in enumerate(pieces[:-1]) if isinstance(p, str) and p == _MARK), None)
    controls = control_pattern(engine)
    if isinstance(after, Markup) and controls is not None:
        found = controls.match(after.text)
        if found:
            return tuple(engine.tokenize(found.group(0), special=True))
    if info.eos_token:
        return tuple(engine.tokenize(info.eos_token, special=True))
    return tuple(engine.tokenize("\n", special=False))


def label_tokens(engine: Engine, label: str) -> tuple[int, ...]:
    """The label as the answer's content (plain prompts: after ``Output:`` and a space)."""
    ids = tuple(engine.tokenize(label if engine.info.chat_template else " " + label, special=False))
    if not ids:
        raise UsageError(f"the label {label!r} is no tokens for this model")
    return ids


def needs_end(tokens: Sequence[tuple[int, ...]]) -> bool:
    """Whether one label's tokens begin another's: then only whole answers compare fairly."""
    return any(a != b and b[:len(a)] == a for a in tokens for b in tokens)


def score_parts(engine: Engine, parts: Sequence[PromptPart], labels: Sequence[str], *,
                end: bool | None = None) -> LabelScores:
    """Each label's tokens after the prompt ``parts`` (``end``: and the end of the answer;
    None: when `needs_end`). The engine keeps the prompt in its attention cache, so each
    further step reads one token."""
    tokens = [label_tokens(engine, label) for label in labels]
    if end is None:
        end = needs_end(tokens)
    ending = answer_end(engine) if end else ()
    seen: dict[tuple[int, ...], np.ndarray] = {}  # labels sharing a prefix share its steps
    scores = []
    for label_ids in tokens:
        ids = (*label_ids, *ending)
        total = 0.0
        for i, token in enumerate(ids):
            prefix = ids[:i]
            if prefix not in seen:
                seen[prefix] = engine.next_token_logprobs([*parts, TokenIds(prefix)] if prefix else list(parts))
            total += float(seen[prefix][token])
        scores.append(total)
    return LabelScores(tuple(labels), tuple(scores), ended=end)


def score_labels(engine: Engine, request: Request, labels: Sequence[str], *, end: bool | None = None) -> LabelScores:
    """Whole-label log-probabilities of ``labels`` starting the answer to ``request``
    (``end``: as the whole answer; None: when one label's tokens begin another's)."""
    if not labels:
        raise UsageError("no labels to choose from")
    return score_parts(engine, render(engine, request).parts, labels, end=end)
