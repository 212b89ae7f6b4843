"""What quantization cost: perplexity, KL divergence and top-1 agreement against a reference.

Both models read the same text (askgpt ships a default: about 3,500 tokens of
prose, code, tables and numbers written for this purpose, convert/data) in
windows of the context size. At every position, the reference's next-token
distribution P and the model's Q give KL(P || Q); the report gives its mean
and 99th percentile, how often both models rank the same token first, and
each model's perplexity on the text. Both models must share a vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.runtime.errors import UsageError

# (tokens) -> (len(tokens), n_vocab) log-probabilities of the next token at each position
Scorer = Callable[[list[int]], Any]


@dataclass(frozen=True)
class QualityReport:
    model: str
    reference: str
    tokens: int  # positions scored
    perplexity: float
    reference_perplexity: float
    kl_mean: float
    kl_p99: float
    top1_agreement: float

    def lines(self) -> list[str]:
        return [
            f"{self.model} against {self.reference}, {self.tokens:,} positions",
            f"perplexity: {self.perplexity:.3f} (reference {self.reference_perplexity:.3f}, "
            f"{self.perplexity / self.reference_perplexity - 1:+.2%})",
            f"KL divergence: mean {self.kl_mean:.5f}, 99th percentile {self.kl_p99:.5f}",
            f"top-1 agreement: {self.top1_agreement:.2%}",
        ]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def default_text() -> str:
    return (resources.files("askgpt.convert") / "data" / "reference.txt").read_text(encoding="utf-8")


def windows(tokens: list[int], size: int) -> list[list[int]]:
    """Consecutive windows of ``size`` tokens (the last may be shorter, if it has 2 or more)."""
    return [tokens[i:i + size] for i in range(0, len(tokens), size) if len(tokens[i:i + size]) >= 2]


def compare(tokens: list[int], model: Scorer, reference: Scorer, *, window: int, model_name: str,
            reference_name: str, progress: Callable[[int, int], None] | None = None) -> QualityReport:
    kls: list[np.ndarray] = []
    nll_model = nll_ref = 0.0
    agree = scored = 0
    parts = windows(tokens, window)
    for k, part in enumerate(parts):
        q = model(part)[:-1]  # the last position predicts a token outside the window
        p = reference(part)[:-1]
        target = np.array(part[1:])
        rows = np.arange(len(target))
        nll_model -= float(q[rows, target].sum())
        nll_ref -= float(p[rows, target].sum())
        kls.append((np.exp(p) * (p - q)).sum(axis=1))
        agree += int((p.argmax(axis=1) == q.argmax(axis=1)).sum())
        scored += len(target)
        if progress is not None:
            progress(k + 1, len(parts))
    if not scored:
        raise UsageError("the text is too short to compare the models on")
    kl = np.concatenate(kls)
    return QualityReport(
        model_name, reference_name, scored, math.exp(nll_model / scored), math.exp(nll_ref / scored),
        float(kl.mean()), float(np.percentile(kl, 99)), agree / scored,
    )


def read_text(path: str | None) -> str:
    if path is None:
        return default_text()
    from askgpt.runtime.documents.inputs import read_document

    return read_document(path).text


def check_same_vocabulary(a: Path, b: Path) -> None:
    """Reports compare distributions token by token, so the vocabularies must be one."""
    from askgpt.runtime.models.gguf import string_array

    if string_array(a, "tokenizer.ggml.tokens") != string_array(b, "tokenizer.ggml.tokens"):
        raise UsageError(f"{a.name} and {b.name} have different vocabularies; a report compares models "
                         "of one vocabulary (a model and its own quantizations)")
