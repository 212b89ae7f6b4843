"""Ask a model one question: the facade the CLI (and later the chat loop) calls.

``ask(engine, request, config)`` formats the prompt with the model's chat
template, checks that it fits the context (never truncating), and returns an
`Answer`: an iterator of text pieces streamed as the model produces them,
with `Stats` once it is done.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from .chat import format_prompt
from .engine import Engine, TokenIds
from .errors import ContextOverflowError, UsageError
from .prompt import Request
from .sampling import LoopDetector, SamplingConfig


class StopReason(str, Enum):
    END = "end"  # the model ended its answer
    LENGTH = "length"  # -n/--max-tokens reached
    LOOP = "loop"  # the loop guard saw the output repeating
    INTERRUPTED = "interrupted"  # Ctrl-C, or the caller stopped reading


@dataclass(frozen=True)
class GenerationConfig:
    max_tokens: int = 512
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise UsageError("-n/--max-tokens must be at least 1")


@dataclass(frozen=True)
class Stats:
    prompt_tokens: int
    generated_tokens: int
    prompt_seconds: float  # prompt evaluation, up to the first generated token
    generate_seconds: float  # from the first generated token to the last
    stop_reason: StopReason

    @property
    def tokens_per_second(self) -> float:
        # The first token's time is counted as prompt time, so n-1 intervals remain.
        if self.generated_tokens < 2 or self.generate_seconds <= 0:
            return 0.0
        return (self.generated_tokens - 1) / self.generate_seconds


@dataclass(frozen=True)
class PreparedPrompt:
    text: str
    tokens: tuple[int, ...]


def check_fits(n_prompt: int, *, n_ctx: int, max_tokens: int) -> None:
    """Raise unless the prompt plus room for ``max_tokens`` fits ``n_ctx``."""
    if max_tokens >= n_ctx:
        raise UsageError(
            f"-n/--max-tokens {max_tokens} leaves no room for the input in a {n_ctx}-token context",
            hint="lower -n or raise --ctx",
        )
    fits = n_ctx - max_tokens
    if n_prompt > fits:
        raise ContextOverflowError(given=n_prompt, fits=fits, n_ctx=n_ctx, reserved=max_tokens)


def prepare(engine: Engine, request: Request, config: GenerationConfig) -> PreparedPrompt:
    info = engine.info
    text = format_prompt(info, request)
    # Templates often write the BOS token themselves; adding another would double it.
    add_bos = info.add_bos and not (info.bos_token and text.startswith(info.bos_token))
    tokens = engine.tokenize(text, add_bos=add_bos, special=True)
    check_fits(len(tokens), n_ctx=info.n_ctx, max_tokens=config.max_tokens)
    return PreparedPrompt(text, tuple(tokens))


class Answer:
    """The streamed answer. Iterate once for text pieces; `stats` is set when
    iteration ends, including when it ends early (Ctrl-C)."""

    def __init__(self, engine: Engine, prompt: PreparedPrompt, config: GenerationConfig) -> None:
        self._engine = engine
        self._prompt = prompt
        self._config = config
        self.stats: Stats | None = None

    def __iter__(self) -> Iterator[str]:
        cfg = self._config
        guard = cfg.sampling.loop_guard
        detector = LoopDetector(guard) if guard else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        reason = StopReason.END
        generated = 0
        start = time.perf_counter()
        first: float | None = None
        tokens = self._engine.generate([TokenIds(self._prompt.tokens)], cfg.sampling)
        try:
            for token in tokens:
                if first is None:
                    first = time.perf_counter()
                generated += 1
                piece = decoder.decode(self._engine.token_bytes(token))
                if piece:
                    yield piece
                if detector is not None and detector.push(token):
                    reason = StopReason.LOOP
                    break
                if generated >= cfg.max_tokens:
                    reason = StopReason.LENGTH
                    break
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
        except (KeyboardInterrupt, GeneratorExit):
            reason = StopReason.INTERRUPTED
            raise
        finally:
            tokens.close()
            end = time.perf_counter()
            self.stats = Stats(
                prompt_tokens=len(self._prompt.tokens),
                generated_tokens=generated,
                prompt_seconds=(first or end) - start,
                generate_seconds=end - (first or end),
                stop_reason=reason,
            )

    def text(self) -> str:
        return "".join(self)


def ask(engine: Engine, request: Request, config: GenerationConfig) -> Answer:
    """Prepare (and budget-check) the prompt now; generate lazily as the answer is read."""
    return Answer(engine, prepare(engine, request, config), config)
