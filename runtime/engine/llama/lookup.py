"""Prompt-lookup decoding: speculative decoding whose draft is the text that followed the
latest earlier occurrence of the last few tokens (quotes from a document, code being
edited). Greedy only; the tokens are those of plain greedy decoding."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from askgpt.runtime.engine.llama.native import NativeModel
from askgpt.runtime.engine.sampling import SamplingConfig


def lookup_draft(history: Any, pending: int, limit: int) -> list[int]:
    """The tokens that followed the latest earlier occurrence of the last 3 (else 2)
    tokens of ``history + [pending]``, at most ``limit``; [] when there is none."""
    import numpy as np

    seq = np.append(history, pending)
    for n in (3, 2):
        if len(seq) <= n:
            continue
        # Every n-gram except the final one, which is the pattern itself.
        windows = np.lib.stride_tricks.sliding_window_view(seq[:-1], n)
        hits = np.flatnonzero((windows == seq[-n:]).all(axis=1))
        if hits.size:
            start = int(hits[-1]) + n
            return [int(t) for t in seq[start:start + limit]]
    return []


class PromptLookup:
    """The decoder, and its counters over an engine's life: guessed tokens, and how many
    of them were kept (``askgpt ask --stats`` shows them)."""

    def __init__(self) -> None:
        self.guessed = 0
        self.kept = 0

    def decode(self, native: NativeModel, sampling: SamplingConfig, *, n_ctx: int, pending: int | None,
               shift: Callable[[], bool]) -> Generator[int, None, None]:
        """Greedy decoding with prompt lookup, after a prompt the cache holds.

        Each step evaluates the unread token and the guessed continuation in one batch,
        then samples position by position with the same llama.cpp sampler chain as the
        plain path (repeat penalty, then greedy), keeping guesses while they equal what
        was sampled. The first mismatch is itself the next token; the positions after it
        leave the cache. So the tokens are those of plain greedy decoding, up to the
        last bits of the batched arithmetic. ``pending``: the prompt's unread last token,
        or None when the prompt was read whole (its logits are ready). ``shift``: the
        engine's context shift, for when the window is full (False: stop)."""
        llm = native.llm
        sampler = native.greedy_sampler(sampling.repeat_penalty)
        budget = min(2, sampling.lookup_tokens)
        try:
            if pending is None:
                token = sampler.sample(-1)
                if native.is_eog(token):
                    return
                yield token
                pending = token
            while True:
                room = n_ctx - 1 - llm.n_tokens
                if room < 1:  # the window is full: as the plain path does, shift and restart sampling
                    if not shift():
                        return
                    sampler.close()
                    sampler = native.greedy_sampler(sampling.repeat_penalty)
                    continue
                draft = lookup_draft(llm.input_ids[: llm.n_tokens], pending, budget)[: room - 1]
                batch = [pending, *draft]
                start = llm.n_tokens
                native.decode_tokens(batch)
                self.guessed += len(draft)
                for i in range(len(batch)):
                    token = sampler.sample(i)
                    guessed = i < len(draft) and token == draft[i]
                    self.kept += guessed
                    if not guessed:  # positions after this one were read for wrong guesses
                        native.truncate(start + i + 1)
                    if native.is_eog(token):
                        return
                    yield token
                    if not guessed:
                        pending = token
                        break
                # Checking a guess costs most of a step on a CPU (8 guesses: 4.6x one token's
                # time on the built-in model), so the guess length follows how well guessing
                # goes: doubled after a step that kept every guess, halved after a miss.
                kept = llm.n_tokens - start - 1
                budget = min(budget * 2, sampling.lookup_tokens) if kept == len(draft) else max(1, budget // 2)
        finally:
            sampler.close()
