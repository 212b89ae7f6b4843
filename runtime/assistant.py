"""The Python API: `from askgpt import Assistant`.

    from askgpt import Assistant

    with Assistant() as a:                      # the built-in model, or model="NAME|PATH"
        r = a.ask("What is BPE?", files=["notes.md"], examples=["cat => chat"])
        for piece in r:                         # streamed as the model writes
            print(piece, end="")
        print(r.usage)                          # token counts and timings
        data = a.ask("A city and its country", schema={"city": "string", "country": "string"}).json()
        chat = a.chat(system="Be terse.")
        chat.ask("My name is Ada.").text()
        chat.ask("What is my name?").text()     # the earlier turn is in the model's context

It runs the same runtime objects as the CLI: the engine seam, prompt building and
few-shot examples, the long-document strategies, the image pipeline, the
chat session and structured output. Errors are the typed `AskgptError`s of
runtime.errors. Nothing is printed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from .ask import Answer, GenerationConfig, Stats
from .chat_session import ChatSession
from .engine import Engine, EngineFactory
from .errors import UsageError
from .inputs import read_document
from .longdoc import LongContext, LongContextConfig, Strategy
from .models import ModelRef, find_mmproj
from .prompt import Example, ImageBlock, Request, parse_example
from .sampling import SamplingConfig
from .settings import Settings, engine_config, load_settings, model_ref, system_prompt
from .structured import check_json, constrain, load_schema


class Response:
    """One answer: iterate for the text as it is generated (once), or call `text()`."""

    def __init__(self, answer: Answer, *, on_done: Any = None) -> None:
        self._answer = answer
        self._pieces: list[str] = []
        self._done = False
        self._on_done = on_done

    def __iter__(self) -> Iterator[str]:
        if self._done:
            yield from self._pieces
            return
        try:
            for piece in self._answer:
                self._pieces.append(piece)
                yield piece
        finally:
            self._done = True
            if self._on_done is not None:
                self._on_done(self._answer)

    def text(self) -> str:
        for _ in self:
            pass
        return "".join(self._pieces)

    def json(self) -> Any:
        """The answer parsed as JSON (`StructuredOutputError` if it is not)."""
        return check_json(self.text())

    @property
    def usage(self) -> Stats | None:
        """Token counts, timings and why generation stopped; None until it has ended."""
        return self._answer.stats

    def __str__(self) -> str:
        return self.text()


Schema = dict[str, Any] | str


class Assistant:
    """A model loaded on first use and kept for every later question; close it (or
    use ``with``) to free its memory."""

    def __init__(self, model: str | None = None, *, endpoint: str | None = None, ctx: int | None = None,
                 settings: Settings | None = None, engine_factory: EngineFactory | None = None) -> None:
        import os

        self._settings = settings or load_settings(os.environ)
        self._ref: ModelRef = model_ref(self._settings, model, endpoint)
        self._ctx = ctx
        self._factory = engine_factory
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            factory = self._factory
            if factory is None:
                from .engine import load_engine

                factory = load_engine
            self._engine = factory(self._ref, engine_config(self._settings, self._ref, ctx=self._ctx))
        return self._engine

    def ask(self, prompt: str, *, images: Sequence[str] = (), files: Sequence[str] = (),
            examples: Sequence[str | tuple[str, str]] = (), system: str | None = None,
            schema: Schema | None = None, max_tokens: int | None = None, temperature: float | None = None,
            strategy: str = "auto") -> Response:
        """Ask one question. ``files`` are documents (longer ones go through ``strategy``,
        as `askgpt --strategy`); ``examples`` are "IN => OUT" strings or (in, out) pairs;
        ``schema`` constrains the answer to JSON (a dict, a JSON schema or shorthand text)."""
        request = Request(prompt, documents=tuple(read_document(f) for f in files),
                          system=self._system(system), examples=_examples(examples))
        request, config = self._structured(request, self._config(max_tokens, temperature), schema)
        if images:
            request = replace(request, images=self._images(images))
        try:
            chosen = Strategy(strategy)
        except ValueError:
            raise UsageError(f"strategy must be one of {', '.join(s.value for s in Strategy)}") from None
        answer, _report = LongContext(self.engine, LongContextConfig(strategy=chosen)).answer(request, config)
        return Response(answer)

    def chat(self, *, system: str | None = None, examples: Sequence[str | tuple[str, str]] = (),
             max_tokens: int | None = None, temperature: float | None = None) -> Chat:
        """A conversation: each `Chat.ask` sees the earlier turns (kept in the model's cache)."""
        session = ChatSession(self.engine, self._config(max_tokens, temperature), system=self._system(system),
                              examples=list(_examples(examples)))
        return Chat(session)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _system(self, system: str | None) -> str | None:
        return system_prompt(self._settings, system)

    def _config(self, max_tokens: int | None, temperature: float | None) -> GenerationConfig:
        d = self._settings.defaults
        return GenerationConfig(max_tokens or d.max_tokens, SamplingConfig(
            temperature=d.temperature if temperature is None else temperature, repeat_penalty=d.repeat_penalty))

    @staticmethod
    def _structured(request: Request, config: GenerationConfig,
                    schema: Schema | None) -> tuple[Request, GenerationConfig]:
        if schema is None:
            return request, config
        import json

        return constrain(request, config, load_schema(schema if isinstance(schema, str) else json.dumps(schema)))

    def _images(self, paths: Sequence[str]) -> tuple[ImageBlock, ...]:
        from askgpt.vision.pipeline import ImagePipeline, VisionConfig, load_images, target_model

        config = VisionConfig(encoder=self._settings.defaults.encoder)
        target = target_model(self.engine, self._ref.path, find_mmproj(self._ref, None), threads=config.threads)
        pipeline = ImagePipeline(config, self._settings.paths.cache_dir, data_dir=self._settings.paths.data_dir)
        blocks, _reports = pipeline.encode(load_images(paths, None), target)
        return tuple(blocks)


class Chat:
    """A conversation on an `Assistant`'s model (`Assistant.chat`)."""

    def __init__(self, session: ChatSession) -> None:
        self._session = session

    def ask(self, prompt: str, *, files: Sequence[str] = ()) -> Response:
        session = self._session
        session.documents.extend(read_document(f) for f in files)
        request = session.request(prompt)
        return Response(session.ask(request), on_done=lambda answer: session.finish(request, answer))

    @property
    def turns(self) -> int:
        return len(self._session.history)


def _examples(examples: Sequence[str | tuple[str, str]]) -> tuple[Example, ...]:
    return tuple(parse_example(e) if isinstance(e, str) else Example(*e) for e in examples)
