"""Ask a model one question: the facade the CLI (and later the chat loop) calls.

``ask(engine, request, config)`` formats the prompt with the model's chat
template, checks that it fits the context (never truncating), and returns an
`Answer`: an iterator of text pieces streamed as the model produces them,
with `Stats` once it is done.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from askgpt.runtime.engine.base import MEDIA_CLOSE, MEDIA_OPEN, Engine, PromptPart, TokenIds
from askgpt.runtime.engine.sampling import LoopDetector, SamplingConfig
from askgpt.runtime.errors import ContextOverflowError, InferenceError, UsageError
from askgpt.runtime.prompting.request import Markup, Request
from askgpt.runtime.prompting.template import format_prompt


class StopReason(str, Enum):
    END = "end"  # the model ended its answer
    LENGTH = "length"  # -n/--max-tokens reached
    STOP = "stop"  # a stop string appeared (plain completion prompts)
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
    """The prompt as the engine gets it: runs of token ids and of embedding rows."""

    text: str
    parts: tuple[PromptPart, ...]
    stop: tuple[str, ...] = ()

    @classmethod
    def from_tokens(cls, text: str, tokens: tuple[int, ...], stop: tuple[str, ...] = ()) -> PreparedPrompt:
        return cls(text, (TokenIds(tokens),), stop)

    @property
    def n_tokens(self) -> int:
        """Context positions the prompt takes (an embedding row takes one, like a token)."""
        return sum(len(p.ids) if isinstance(p, TokenIds) else len(p) for p in self.parts)

    @property
    def tokens(self) -> tuple[int, ...]:
        """The token ids of a text-only prompt."""
        if len(self.parts) != 1 or not isinstance(self.parts[0], TokenIds):
            raise ValueError("the prompt holds embedding rows")
        return self.parts[0].ids


class StopFilter:
    """Cuts streamed text at the first stop string.

    A stop string may arrive split over several pieces, so any tail that could
    be the start of one is held back until the next piece settles it.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text that is safe to emit now, and whether a stop string was hit."""
        text = self._held + piece
        hits = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return text[: min(hits)], True
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:k]):
                    keep = k
                    break
        self._held = text[len(text) - keep:]
        return text[: len(text) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


def answer_reserve(max_tokens: int, n_ctx: int) -> int:
    """Room the prompt must leave for the answer. A longer answer goes on past the
    window by context shift (the engine drops the older half of the answer), so
    at most half the window is held back for it."""
    return min(max_tokens, n_ctx // 2)


def check_fits(n_prompt: int, *, n_ctx: int, max_tokens: int) -> None:
    """Raise unless the prompt plus the answer's reserved room fits ``n_ctx``."""
    reserved = answer_reserve(max_tokens, n_ctx)
    fits = n_ctx - reserved
    if n_prompt > fits:
        raise ContextOverflowError(given=n_prompt, fits=fits, n_ctx=n_ctx, reserved=reserved)


def control_pattern(engine: Engine) -> re.Pattern[str] | None:
    """Matches the spellings of the engine's control tokens, longest first (as llama.cpp's
    tokenizer partitions text); None when it has none."""
    texts = sorted((t for t in engine.control_texts if t), key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(t) for t in texts) + ")") if texts else None


class _Encoder:
    """Token ids for a rendered prompt, where only the template's markup may hold control
    tokens. Text between two control tokens (the template's plain text and the content
    inside it) is tokenized as one run without control tokens: the same ids the model's
    tokenizer gives a whole rendered prompt, except that nothing in the content can
    become ``<|im_end|>``."""

    def __init__(self, engine: Engine, add_bos: bool) -> None:
        self._engine = engine
        self._controls = control_pattern(engine)
        self._bos = add_bos
        self._run: list[str] = []
        self.parts: list[PromptPart] = []

    def _ids(self, ids: list[int]) -> None:
        self._bos = False
        if not ids:
            return
        last = self.parts[-1] if self.parts else None
        if isinstance(last, TokenIds):
            self.parts[-1] = TokenIds(last.ids + tuple(ids))
        else:
            self.parts.append(TokenIds(tuple(ids)))

    def flush(self) -> None:
        text = "".join(self._run)
        self._run.clear()
        if text:
            self._ids(self._engine.tokenize(text, add_bos=self._bos, special=False))

    def control(self, text: str) -> None:
        self.flush()
        self._ids(self._engine.tokenize(text, add_bos=self._bos, special=True))

    def markup(self, text: str) -> None:
        if self._controls is None:
            self._run.append(text)
            return
        for i, chunk in enumerate(self._controls.split(text)):
            if i % 2:
                self.control(chunk)
            elif chunk:
                self._run.append(chunk)

    def content(self, text: str) -> None:
        self._run.append(text)

    def rows(self, segments: tuple[PromptPart, ...]) -> None:
        self.flush()
        if self._bos:  # an image before any text: the BOS token still comes first
            self._ids(self._engine.tokenize("", add_bos=True, special=False))
        for segment in segments:
            if isinstance(segment, TokenIds):
                self._ids(list(segment.ids))
            else:
                self.parts.append(segment)


def render(engine: Engine, request: Request) -> PreparedPrompt:
    """The prompt as the engine gets it, without the context check (`prepare` adds it)."""
    info = engine.info
    formatted = format_prompt(info, request)
    first = formatted.pieces[0] if formatted.pieces else None
    # Templates often write the BOS token themselves; adding another would double it.
    add_bos = info.add_bos and not (info.bos_token and isinstance(first, Markup)
                                    and first.text.startswith(info.bos_token))
    encoder = _Encoder(engine, add_bos)
    placed: set[int] = set()
    for piece in formatted.pieces:
        if isinstance(piece, Markup):
            encoder.markup(piece.text)
        elif isinstance(piece, str):
            encoder.content(piece)
        else:
            image = request.images[piece.index] if piece.index < len(request.images) else None
            if image is None or piece.index in placed:
                raise InferenceError("the model's chat template repeats or invents an image")
            placed.add(piece.index)
            encoder.rows(image.segments)
            if image.data_url:
                # Only askgpt writes this, from the image's validated pixels; a served
                # model's engine reads it back out as the image (runtime.engine.served).
                encoder.control(MEDIA_OPEN + image.data_url + MEDIA_CLOSE)
    encoder.flush()
    missing = [i for i, im in enumerate(request.images) if (im.segments or im.data_url) and i not in placed]
    if missing:
        raise InferenceError("the model's chat template dropped an image")
    return PreparedPrompt(formatted.text, tuple(encoder.parts), formatted.stop)


def shown(engine: Engine, prompt: PreparedPrompt) -> str:
    """The prompt as the engine gets it, read back from its ids (--show-prompt): control
    tokens as themselves; text that only spells one (a document's ``<|im_end|>``) with a
    backslash before it, so the two cannot be told apart only by looking; embedding rows
    as ``[N embedding rows]``."""
    controls = control_pattern(engine)
    ids = {tokens[0]: text for text in engine.control_texts
           if len(tokens := engine.tokenize(text, special=True)) == 1}
    out: list[str] = []
    run = bytearray()

    def flush() -> None:
        text = run.decode("utf-8", errors="replace")
        out.append(controls.sub(lambda m: "\\" + m.group(0), text) if controls else text)
        run.clear()

    for part in prompt.parts:
        if not isinstance(part, TokenIds):
            flush()
            out.append(f"[{len(part)} embedding rows]")
            continue
        for token in part.ids:
            if token in ids:
                flush()
                out.append(ids[token])
            else:
                run += engine.token_bytes(token)
    flush()
    return "".join(out)


def prepare(engine: Engine, request: Request, config: GenerationConfig) -> PreparedPrompt:
    prompt = render(engine, request)
    check_fits(prompt.n_tokens, n_ctx=engine.info.n_ctx, max_tokens=config.max_tokens)
    return prompt


class Answer:
    """The streamed answer. Iterate once for text pieces; `stats` is set when
    iteration ends, including when it ends early (Ctrl-C)."""

    def __init__(self, engine: Engine, prompt: PreparedPrompt, config: GenerationConfig) -> None:
        self._engine = engine
        self._prompt = prompt
        self._config = config
        self.stats: Stats | None = None
        self._emitted: list[str] = []

    def __iter__(self) -> Iterator[str]:
        cfg = self._config
        guard = cfg.sampling.loop_guard
        detector = LoopDetector(guard) if guard else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopFilter(self._prompt.stop)
        reason = StopReason.END
        generated = 0
        start = time.perf_counter()
        first: float | None = None
        tokens = self._engine.generate(self._prompt.parts, cfg.sampling)
        try:
            for token in tokens:
                if first is None:
                    first = time.perf_counter()
                generated += 1
                piece, stopped = stops.feed(decoder.decode(self._engine.token_bytes(token)))
                if piece:
                    self._emitted.append(piece)
                    yield piece
                if stopped:
                    reason = StopReason.STOP
                    break
                if detector is not None and detector.push(token):
                    reason = StopReason.LOOP
                    break
                if generated >= cfg.max_tokens:
                    reason = StopReason.LENGTH
                    break
            if reason is not StopReason.STOP:
                tail, _ = stops.feed(decoder.decode(b"", final=True))
                tail += stops.flush()
                if tail:
                    self._emitted.append(tail)
                    yield tail
        except (KeyboardInterrupt, GeneratorExit):
            reason = StopReason.INTERRUPTED
            raise
        finally:
            tokens.close()
            end = time.perf_counter()
            self.stats = Stats(
                prompt_tokens=self._prompt.n_tokens,
                generated_tokens=generated,
                prompt_seconds=(first or end) - start,
                generate_seconds=end - (first or end),
                stop_reason=reason,
            )

    def text(self) -> str:
        return "".join(self)

    @property
    def emitted(self) -> str:
        """What iteration has yielded so far (all of it once it has ended)."""
        return "".join(self._emitted)


def ask(engine: Engine, request: Request, config: GenerationConfig) -> Answer:
    """Prepare (and budget-check) the prompt now; generate lazily as the answer is read."""
    return Answer(engine, prepare(engine, request, config), config)
