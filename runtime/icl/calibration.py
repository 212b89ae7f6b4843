"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use").

A prompt biases a model toward some labels whatever the input: the majority label of the
examples, the last example's label, labels the model likes anyway. The bias is estimated
by scoring the labels for content-free inputs under the same prompt (same system prompt,
same examples), and divided out: ``q = p / p_cf``, renormalized, before choosing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from askgpt.runtime.engine.base import Engine
from askgpt.runtime.icl.labels import LabelScores, score_labels
from askgpt.runtime.prompting.request import Request

CONTENT_FREE = ("N/A", "", "[MASK]")


def content_free(request: Request, text: str) -> Request:
    """``request`` with its input replaced by ``text``: no documents, no images."""
    return replace(request, instruction=text, documents=(), images=())


def calibrated(engine: Engine, request: Request, labels: Sequence[str]) -> LabelScores:
    """The labels' scores for ``request`` corrected by the content-free inputs' average
    label probabilities (kept in ``content_free``; the model's own scores in ``raw``)."""
    raw = score_labels(engine, request, labels)
    free = [score_labels(engine, content_free(request, text), labels, end=raw.ended).probabilities
            for text in CONTENT_FREE]
    bias = tuple(sum(p[i] for p in free) / len(free) for i in range(len(raw.labels)))
    # log p - log p_cf (softmax of it is p / p_cf renormalized); a label whose content-free
    # probability underflows to 0 gets the smallest positive float instead.
    top = max(raw.logprobs)
    norm = top + math.log(sum(math.exp(lp - top) for lp in raw.logprobs)) if top > -math.inf else 0.0
    corrected = tuple(lp - norm - math.log(max(b, 5e-324)) for lp, b in zip(raw.logprobs, bias, strict=True))
    return LabelScores(raw.labels, corrected, raw=raw, content_free=bias, ended=raw.ended)
