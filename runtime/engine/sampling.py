"""Sampling settings and the loop guard that stops a model repeating itself.

Small models fall into loops ("the the the", or one sentence over and over).
Two defences work together: llama.cpp's repeat penalty makes recently used
tokens less likely, and `LoopDetector` stops generation outright once the tail
of the output is the same block of tokens several times in a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoopGuard:
    """When is a repeating tail a loop?

    The tail is a loop when its last ``span`` tokens repeat with some period
    ``p <= max_period`` and ``span >= max(min_repeats * p, min_span)``: at least
    ``min_repeats`` back-to-back copies of the unit, and never fewer than
    ``min_span`` tokens, so a short legitimate repeat ("- - -") is left alone.
    """

    max_period: int = 64
    min_repeats: int = 4
    min_span: int = 32

    def __post_init__(self) -> None:
        if self.max_period < 1 or self.min_repeats < 2 or self.min_span < 1:
            raise ValueError("loop guard needs max_period >= 1, min_repeats >= 2, min_span >= 1")


@dataclass(frozen=True)
class CopyBias:
    """Favour the tokens of a text the answer copies from (a question's evidence).

    The built-in model finds the right sentence but miscopies a rare name ("Lough Corrib" as
    "Lough Correg"): the document's own spelling loses a near-tie by a fraction of a logit.
    ``logit`` is added to every token of ``text``'s words (with and without their leading
    space), so such ties go to the document; it is far too small to make the model copy
    text that does not answer."""

    text: str
    logit: float

    def __post_init__(self) -> None:
        if self.logit < 0:
            raise ValueError("copy bias must be >= 0")


@dataclass(frozen=True)
class SamplingConfig:
    """Token sampling. ``temperature == 0`` is greedy (deterministic)."""

    temperature: float = 0.2
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    # > 1 penalises tokens seen in the last `repeat_last_n` tokens (set on the engine).
    repeat_penalty: float = 1.05
    seed: int | None = None
    loop_guard: LoopGuard | None = field(default_factory=LoopGuard)
    # Prompt-lookup decoding: up to this many tokens guessed from earlier text (where the
    # answer copies the input) and checked in one batch; greedy sampling only; 0 = off.
    lookup_tokens: int = 0
    # A JSON schema (as JSON text) the answer must match: llama.cpp samples under the
    # grammar made from it. None: free text.
    json_schema: str | None = None
    # Tokens of a text favoured by a small logit (see CopyBias). Engines that cannot see
    # logits (a served model) sample without it.
    copy_bias: CopyBias | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.repeat_penalty <= 0:
            raise ValueError("repeat penalty must be > 0")
        if self.lookup_tokens < 0:
            raise ValueError("lookup tokens must be >= 0")


class LoopDetector:
    """Incremental loop detection over a stream of token ids.

    For every candidate period p it keeps ``run[p]``: how many of the most
    recent tokens equal the token p places before them. A tail of length L
    that repeats with period p gives ``run[p] == L - p``, so each new token
    costs O(max_period) and no rescans of the history.
    """

    def __init__(self, guard: LoopGuard) -> None:
        self._guard = guard
        self._tail: list[int] = []  # the last max_period tokens
        self._run = [0] * (guard.max_period + 1)  # index = period

    def push(self, token: int) -> bool:
        """Add one token; True when the output has fallen into a loop."""
        g = self._guard
        tail = self._tail
        looped = False
        for p in range(1, g.max_period + 1):
            if len(tail) >= p and tail[-p] == token:
                self._run[p] += 1
                needed = max(g.min_repeats * p, g.min_span) - p
                if self._run[p] >= needed:
                    looped = True
            else:
                self._run[p] = 0
        tail.append(token)
        if len(tail) > g.max_period:
            del tail[0]
        return looped
