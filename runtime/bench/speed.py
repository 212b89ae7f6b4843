"""`askgpt bench speed`: askgpt's own generation path against raw llama-cpp-python.

Both run on one loaded model (same weights, threads and batch size), interleaved
round by round so that machine noise falls on both alike. askgpt's side is
exactly what the CLI runs (chat template, sampling, repetition guard, stop
strings, detokenising); the raw side is `runtime.engine.llama.tools.raw_speed`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from askgpt.runtime.engine.base import Engine, TokenIds
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.prompting.generate import GenerationConfig, ask, prepare
from askgpt.runtime.prompting.request import Request
from askgpt.runtime.system import peak_rss_mb

RawSpeed = Callable[[Engine, list[int], int], tuple[float, float, int]]

PROMPT = ("Write a long, detailed story about a lighthouse keeper who finds a message in a bottle. "
          "Describe the sea, the weather, the keeper's daily routine and what the message says. ") * 8


@dataclass(frozen=True)
class SpeedResult:
    prompt_tokens: int
    askgpt_prefill: float  # tokens/s, medians over the rounds
    raw_prefill: float
    askgpt_decode: float
    raw_decode: float
    first_token_seconds: float  # a one-line prompt, through askgpt
    load_seconds: float
    peak_rss_mb: float
    rounds: int

    def lines(self) -> list[str]:
        return [
            f"prompt: {self.prompt_tokens} tokens, {self.rounds} interleaved rounds (medians)",
            f"prefill: askgpt {self.askgpt_prefill:.1f} tokens/s, raw llama-cpp-python {self.raw_prefill:.1f} "
            f"tokens/s, ratio {self.askgpt_prefill / self.raw_prefill:.3f}",
            f"decode:  askgpt {self.askgpt_decode:.1f} tokens/s, raw llama-cpp-python {self.raw_decode:.1f} "
            f"tokens/s, ratio {self.askgpt_decode / self.raw_decode:.3f}",
            f"time to first token (one-line prompt): {self.first_token_seconds:.3f} s",
            f"model load: {self.load_seconds:.2f} s | peak RSS: {self.peak_rss_mb:,.0f} MB",
        ]

    def to_json(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def run_speed(engine: Engine, raw: RawSpeed, *, rounds: int, n_decode: int, load_seconds: float,
              progress: Callable[[int, int], None] | None = None) -> SpeedResult:
    request = Request(PROMPT)
    greedy = GenerationConfig(n_decode + 1, SamplingConfig(temperature=0))
    ids = [t for part in prepare(engine, request, greedy).parts if isinstance(part, TokenIds) for t in part.ids]
    ours_p, ours_d, raw_p, raw_d = [], [], [], []
    for k in range(rounds):
        if progress is not None:
            progress(k, rounds)
        prefill, decode, n = raw(engine, ids, n_decode)  # it clears the cache first and after
        raw_p.append(len(ids) / prefill)
        raw_d.append(n / decode)
        answer = ask(engine, request, greedy)
        answer.text()
        stats = answer.stats
        assert stats is not None
        ours_p.append(stats.prompt_tokens / stats.prompt_seconds)
        if stats.tokens_per_second > 0:
            ours_d.append(stats.tokens_per_second)
        raw(engine, ids[:1], 0)  # clears the cache: the next askgpt round reads the whole prompt again
    if progress is not None:
        progress(rounds, rounds)
    start = time.perf_counter()
    first = ask(engine, Request("Say hi."), GenerationConfig(1, SamplingConfig(temperature=0)))
    first.text()
    ttft = time.perf_counter() - start
    return SpeedResult(len(ids), statistics.median(ours_p), statistics.median(raw_p),
                       statistics.median(ours_d) if ours_d else 0.0, statistics.median(raw_d), ttft,
                       load_seconds, peak_rss_mb(), rounds)
