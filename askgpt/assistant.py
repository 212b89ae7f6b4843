"""The Python API: `from askgpt import Assistant`.

    from askgpt import Assistant

    with Assistant() as a:                      # the built-in model, or model="NAME|PATH"
        r = a.ask("What is BPE?", files=["notes.md"], examples=["cat => chat"])
        for piece in r:                         # streamed as the model writes
            print(piece, end="")
        print(r.usage)                          # token counts and timings
        data = a.ask("A city and its country", schema={"city": "string", "country": "string"}).json()
        r = a.ask("The soup was cold.", labels=["positive", "negative"], calibrate=True)
        r.text(), r.scores.probabilities        # the label, and each label's probability
        a.ask("I loved it.", labels="auto", examples="pool.jsonl", shots=4, select="similar")
        chat = a.chat(system="Be terse.")
        chat.ask("My name is Ada.").text()
        chat.ask("What is my name?").text()     # the earlier turn is in the model's context

`askgpt ask` is a thin layer over the same object: it builds an `Assistant` from
its options, loads the model through it, encodes images with `image_blocks` and
answers with `respond`, the method `ask` itself ends in; the chat commands share
the `ChatSession` that `chat` wraps. Errors are the typed `AskgptError`s of
runtime.errors. Nothing is printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from askgpt.chat_session import ChatSession
from askgpt.runtime.documents.inputs import load_examples, read_document
from askgpt.runtime.documents.strategies import LongContext, LongContextConfig, LongContextReport, Progress, Strategy
from askgpt.runtime.engine.base import Engine, EngineConfig
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import UsageError
from askgpt.runtime.icl.answers import LabelAnswer, ServedLabelAnswer
from askgpt.runtime.icl.labels import LabelScores
from askgpt.runtime.icl.options import IclOptions, label_answer, plan_request
from askgpt.runtime.icl.selection import Select
from askgpt.runtime.models.registry import ModelRef, find_mmproj
from askgpt.runtime.prompting.generate import Answer, GenerationConfig, Stats
from askgpt.runtime.prompting.request import Example, ImageBlock, Request, parse_example
from askgpt.runtime.prompting.structured import check_json, constrain, load_schema
from askgpt.runtime.store.settings import Settings, context_size, engine_config, load_settings, model_ref, system_prompt

if TYPE_CHECKING:
    from askgpt.vision.images import LoadedImage
    from askgpt.vision.pipeline import ImageReport, VisionConfig


class Response:
    """One answer: iterate for the text as it is generated (once), or call `text()`."""

    def __init__(self, answer: Answer, *, on_done: Any = None, report: LongContextReport | None = None) -> None:
        self._answer = answer
        self.report = report  # what a long-document strategy did (None: the documents fitted)
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

    @property
    def answer(self) -> Answer:
        """The runtime's streamed answer underneath (for logging and rendering)."""
        return self._answer

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The labels the answer was restricted to (``labels=``), None for a free answer."""
        return self._answer.labels if isinstance(self._answer, LabelAnswer | ServedLabelAnswer) else None

    @property
    def scores(self) -> LabelScores | None:
        """Each label's score, once the answer is read (``labels=`` on a local model)."""
        return self._answer.scores if isinstance(self._answer, LabelAnswer | ServedLabelAnswer) else None

    @property
    def note(self) -> str | None:
        """What a user should be told about how the answer was made: a served model's labels
        come from a grammar, not from log-probabilities."""
        return self._answer.note if isinstance(self._answer, ServedLabelAnswer) else None

    def __str__(self) -> str:
        return self.text()


Schema = dict[str, Any] | str


class Assistant:
    """A model loaded on first use and kept for every later question; close it (or
    use ``with``) to free its memory."""

    def __init__(self, model: str | None = None, *, endpoint: str | None = None, ctx: int | None = None,
                 settings: Settings | None = None, engine_factory: EngineFactory | None = None,
                 ref: ModelRef | None = None, load: EngineConfig | None = None) -> None:
        """``model``/``endpoint`` name the model as -m/--endpoint do; ``ref`` and ``load``
        (the CLI's) give it already resolved, with every load setting."""
        import os

        if ctx is not None:
            context_size(ctx, what="ctx")  # 0, or at least 256: checked before anything loads
        self._settings = settings or load_settings(os.environ)
        self._ref: ModelRef = ref or model_ref(self._settings, model, endpoint)
        self._load = load or engine_config(self._settings, self._ref, ctx=ctx)
        self._factory = engine_factory
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The loaded model (loaded now, on first use)."""
        if self._engine is None:
            factory = self._factory
            if factory is None:
                from askgpt.runtime.engine.kinds import load_engine

                factory = load_engine
            self._engine = factory(self._ref, self._load)
        return self._engine

    def ask(self, prompt: str, *, images: Sequence[str] = (), files: Sequence[str] = (),
            examples: Sequence[str | tuple[str, str]] | str = (), system: str | None = None,
            schema: Schema | None = None, max_tokens: int | None = None, temperature: float | None = None,
            strategy: str = "auto", labels: Sequence[str] | str | None = None, calibrate: bool = False,
            shots: int | None = None, select: str | Select | None = None, seed: int | None = None) -> Response:
        """Ask one question. ``files`` are documents (longer ones go through ``strategy``,
        as `askgpt --strategy`); ``examples`` are "IN => OUT" strings or (in, out) pairs, or
        the path of a JSONL file of them; ``schema`` constrains the answer to JSON (a dict, a
        JSON schema or shorthand text).

        In-context learning, as `askgpt --labels/--calibrate/--shots/--select/--seed`:
        ``labels`` (a list, "A,B", or "auto" for the examples' outputs) restricts the answer
        to one label, chosen by the model's log-probabilities (`Response.scores`);
        ``calibrate`` corrects them with content-free inputs; ``shots`` draws that many of the
        examples per question by ``select`` (random|similar|diverse), repeatable by ``seed``."""
        icl = IclOptions.of(labels=labels, calibrate=calibrate, shots=shots, select=select, seed=seed).check()
        if icl.labels is not None and schema is not None:
            raise UsageError("labels answer with a label; they do not go with schema")
        request = Request(prompt, documents=tuple(read_document(f) for f in files),
                          system=self._system(system), examples=_examples(examples))
        chosen = plan_request(request, icl)
        request = chosen.request
        if chosen.labels is not None:
            if images:
                from askgpt.vision.pipeline import load_images

                request = replace(request, images=self.image_blocks(load_images(images, None))[0])
            return self.choose(request, chosen.labels, calibrate=calibrate,
                               config=self._config(max_tokens, temperature))
        request, config = self._structured(request, self._config(max_tokens, temperature), schema)
        if images:
            from askgpt.vision.pipeline import load_images

            blocks, _reports = self.image_blocks(load_images(images, None))
            request = replace(request, images=blocks)
        try:
            chosen = Strategy(strategy)
        except ValueError:
            raise UsageError(f"strategy must be one of {', '.join(s.value for s in Strategy)}") from None
        return self.respond(request, config, LongContextConfig(strategy=chosen))

    def respond(self, request: Request, config: GenerationConfig, long_context: LongContextConfig | None = None,
                *, progress: Progress | None = None) -> Response:
        """Answer a built `Request` (documents longer than the model reads well go through
        the long-document strategies); what `ask` and `askgpt ask` both end in."""
        context = LongContext(self.engine, long_context or LongContextConfig(), progress=progress)
        answer, report = context.answer(request, config)
        return Response(answer, report=report)

    def choose(self, request: Request, labels: Sequence[str], *, calibrate: bool = False,
               config: GenerationConfig | None = None) -> Response:
        """Answer a built `Request` with one of ``labels`` (what `ask(labels=...)` and
        `askgpt --labels` end in): by the labels' log-probabilities, or for a served model
        by a grammar (`Response.note` says so)."""
        return Response(label_answer(self.engine, request, labels, config, calibrate=calibrate))

    def image_blocks(self, images: Sequence[LoadedImage], vision: VisionConfig | None = None, *,
                     mmproj: str | None = None, notify: Callable[[str], None] | None = None,
                     ) -> tuple[tuple[ImageBlock, ...], list[ImageReport]]:
        """Images as this model gets them (`image_blocks`)."""
        return image_blocks(self.engine, self._ref, self._settings, images, vision, mmproj=mmproj, notify=notify)

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

def image_blocks(engine: Engine, ref: ModelRef, settings: Settings, images: Sequence[LoadedImage],
                 vision: VisionConfig | None = None, *, mmproj: str | None = None,
                 notify: Callable[[str], None] | None = None) -> tuple[tuple[ImageBlock, ...], list[ImageReport]]:
    """Images as ``engine``'s model gets them: through its own vision projector (``mmproj``,
    else the one registered with it or beside it), else the chosen image encoder."""
    from askgpt.vision.pipeline import ImagePipeline, VisionConfig, target_model

    config = vision or VisionConfig(encoder=settings.defaults.encoder)
    projector = find_mmproj(ref, mmproj)
    if projector is not None and ref.endpoint is None and hasattr(engine, "open_vision"):
        from askgpt.runtime.engine.guard import ensure_projector_loads_safely

        # mtmd reads the projector in this process: its first use is tried in a child first.
        ensure_projector_loads_safely(projector, ref.path, settings.paths.cache_dir)
    target = target_model(engine, ref.path, projector, threads=config.threads)
    pipeline = ImagePipeline(config, settings.paths.cache_dir, notify=notify, data_dir=settings.paths.data_dir)
    blocks, reports = pipeline.encode(images, target)
    return tuple(blocks), reports


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


def _examples(examples: Sequence[str | tuple[str, str]] | str) -> tuple[Example, ...]:
    if isinstance(examples, str):  # a JSONL file, as --examples
        return load_examples(examples)
    return tuple(parse_example(e) if isinstance(e, str) else Example(*e) for e in examples)
