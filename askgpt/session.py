"""The one owner of a question's life: options resolved and checked, inputs read, images
encoded, long documents handled, the exchange logged.

`askgpt ask`, `askgpt chat` and the Python API (`Assistant`) all go through here, so they
resolve options, read images and log the same way; the CLI only parses and renders. What
a user should be told on the way (a warning, a spinner, a progress bar) goes to a
`Notifier`: the CLI's writes to stderr, the Python API's (`Quiet`) keeps the warnings on
the `Response`. Nothing here prints.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from askgpt.chat_session import ChatSession
from askgpt.conversation import exchange_of, fit_history, not_replayed, turns_of
from askgpt.response import Response
from askgpt.runtime.choices import choice
from askgpt.runtime.documents.inputs import Inputs, collect_inputs, examples_of
from askgpt.runtime.documents.strategies import (
    COPY_LOGIT,
    LongContext,
    LongContextConfig,
    Progress,
    Retrieval,
    Strategy,
)
from askgpt.runtime.engine.base import Engine, EngineConfig
from askgpt.runtime.engine.capabilities import image_urls_refused
from askgpt.runtime.engine.kinds import EngineFactory, is_local, load_engine
from askgpt.runtime.engine.kv import KvType
from askgpt.runtime.errors import InputNotFoundError, ModelNotFoundError, UsageError
from askgpt.runtime.icl.options import IclOptions, IclPlan, label_answer, plan_request
from askgpt.runtime.models.registry import ModelRef, find_mmproj
from askgpt.runtime.prompting.generate import Answer, GenerationConfig, prepare, shown
from askgpt.runtime.prompting.request import Example, ImageBlock, Request, Turn
from askgpt.runtime.prompting.structured import ANY_OBJECT, constrain, load_schema
from askgpt.runtime.store.log import Attachment, ConversationLog, LogError, new_conversation_id
from askgpt.runtime.store.settings import (
    ENV_OVERRIDES,
    Settings,
    context_size,
    engine_config,
    generation_config,
    model_ref,
    system_prompt,
    vector_cache_folder,
)
from askgpt.runtime.store.templates import Template, TemplateStore, apply_template, template_words

if TYPE_CHECKING:
    from askgpt.vision.images import LoadedImage
    from askgpt.vision.pipeline import ImageReport, VisionConfig


class Notifier(Protocol):
    """Where the session tells a user what is happening (the CLI: stderr)."""

    def warn(self, text: str) -> None: ...

    def status(self, text: str) -> AbstractContextManager[object]: ...

    def progress(self) -> AbstractContextManager[Progress | None]: ...


class Quiet:
    """The Python API's notifier: warnings kept (a `Response`'s ``warnings``), nothing shown."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def status(self, text: str) -> AbstractContextManager[object]:
        return nullcontext()

    def progress(self) -> AbstractContextManager[Progress | None]:
        return nullcontext(None)


@dataclass(frozen=True)
class LoadOptions:
    """Which model, and how to load it. ``None`` means "use the configured default"."""

    model: str | None = None
    endpoint: str | None = None  # --endpoint: an OpenAI-compatible server instead of a local model
    ctx: int | None = None
    threads: int | None = None
    batch: int | None = None
    gpu_layers: int | None = None
    kv_type: str | None = None
    prefix_cache: bool = True  # --no-cache turns it off for one call
    mmproj: str | None = None  # --mmproj: the model's vision projector


@dataclass(frozen=True)
class AskOptions:
    """One question's options, as `askgpt ask` takes them. ``None`` means "use the
    configured default"."""

    prompt_words: tuple[str, ...] = ()
    model: str | None = None
    endpoint: str | None = None
    system: str | None = None
    files: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    examples_file: str | None = None
    example_values: tuple[Example, ...] = ()  # ready-made examples (the Python API's pairs)
    images: tuple[str, ...] = ()
    ocr: str = "auto"
    image_mode: str | None = None
    encoder: str | None = None  # --encoder: auto|builtin|clip|NAME
    mmproj: str | None = None  # --mmproj: the model's vision projector
    share_location: bool = False  # --share-location: a photo's GPS position to a served model too
    strategy: str = "auto"
    read_tokens: int = 1024
    retrieval: str | None = None  # --retrieval bm25|semantic|hybrid; None: the config's, else automatic
    cite: bool | None = None  # --cite/--no-cite: the evidence after the answer; None: the config's
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    lookup: int | None = None
    ctx: int | None = None
    threads: int | None = None
    batch: int | None = None
    gpu_layers: int | None = None
    kv_type: str | None = None
    prefix_cache: bool = True  # --no-cache turns it off for one call
    continue_last: bool = False  # -c: continue the latest conversation
    conversation_id: str | None = None  # --cid ID: continue that one
    log: bool = True  # --no-log skips logging this exchange
    template: str | None = None  # -T NAME: a saved task description and examples
    json_object: bool = False  # --json: the answer is a JSON object
    schema: str | None = None  # --schema FILE|JSON: ... matching this schema
    extract: bool = False  # -x: print only the answer's first fenced code block
    stream: bool = True
    stats: bool = False
    debug: bool = False  # also show llama.cpp's own log lines
    show_prompt: bool = False  # --show-prompt: print the prompt the model would get, run nothing
    labels: str | tuple[str, ...] | None = None  # --labels A,B,...|auto: the answer is one of them
    calibrate: bool = False  # --calibrate: correct the label probabilities (Zhao et al. 2021)
    shots: int | None = None  # --shots K: draw K of the examples per input
    select: str | None = None  # --select random|similar|diverse: how

    @property
    def load(self) -> LoadOptions:
        return LoadOptions(self.model, self.endpoint, self.ctx, self.threads, self.batch, self.gpu_layers,
                           self.kv_type, self.prefix_cache, self.mmproj)


@dataclass(frozen=True)
class ChatOptions:
    """`askgpt chat`'s options: the prompt options of `AskOptions` that make sense for a
    conversation (each question is a turn)."""

    model: str | None = None
    endpoint: str | None = None
    system: str | None = None
    examples: tuple[str, ...] = ()
    examples_file: str | None = None
    files: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    ctx: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    template: str | None = None  # -T NAME: its system prompt, examples and wording of each question
    json_object: bool = False  # --json: every answer is a JSON object
    schema: str | None = None  # --schema FILE|JSON: ... matching this schema
    stats: bool = False  # --stats: token counts and speed after each answer
    log: bool = True
    retrieval: str | None = None  # as AskOptions'
    cite: bool | None = None  # as AskOptions'

    @property
    def load(self) -> LoadOptions:
        return LoadOptions(self.model, self.endpoint, self.ctx)


def resolve_ref(settings: Settings, model: str | None, endpoint: str | None) -> ModelRef:
    """The model named by -m/--endpoint (or the default), whose error says where a
    default model's name came from."""
    try:
        return model_ref(settings, model, endpoint)
    except ModelNotFoundError as exc:
        configured = settings.defaults.model
        if model is not None or configured is None or endpoint or settings.defaults.endpoint:
            raise
        where = (f"${ENV_OVERRIDES['model']}" if "model" in settings.from_env
                 else f"the model key of {settings.paths.config_file}")
        raise ModelNotFoundError(f"{exc.message} (the default model, set by {where})", hint=exc.hint) from exc


def check_kv_type(value: str) -> str:
    return choice(KvType, value, "--kv-type", case_sensitive=True).value


def check_strategy(value: str | Strategy) -> Strategy:
    return choice(Strategy, value, "--strategy")


def check_retrieval(value: str | Retrieval | None, settings: Settings) -> Retrieval | None:
    """--retrieval, else the config's ``retrieval``; None leaves the choice to the strategies
    (hybrid where the embedding model is present, else bm25)."""
    if value is not None:
        return choice(Retrieval, value, "--retrieval")
    configured = settings.defaults.retrieval
    return None if configured is None else choice(Retrieval, configured, "the config's retrieval")


def copy_logit(settings: Settings, given: bool | None = None) -> float:
    """The copy bias a retrieved answer is written with: on or off as ``given`` (bench needle's
    --copy-bias/--no-copy-bias), else as the config's ``copy_bias``."""
    return COPY_LOGIT if (settings.defaults.copy_bias if given is None else given) else 0.0


def long_context_config(settings: Settings, retrieval: str | Retrieval | None = None) -> LongContextConfig:
    """What every path that reads documents (ask, chat, the Python API) resolves alike:
    --retrieval (else the config's), where sentence vectors are cached, and the copy bias."""
    return LongContextConfig(retrieval=check_retrieval(retrieval, settings), vector_cache=vector_cache_folder(settings),
                             copy_logit=copy_logit(settings))


def citing(given: bool | None, settings: Settings) -> bool:
    """Whether the evidence the model was given follows the answer: --cite/--no-cite, else the config's."""
    return settings.defaults.cite if given is None else given


def check_vision_options(opts: AskOptions, settings: Settings) -> None:
    """The image options are checked even when no image is given: a typo is not ignored."""
    if opts.ocr == "auto" and opts.image_mode is None and opts.encoder is None:
        return
    # Imported only here: the vision package pulls in numpy.
    from askgpt.vision.clip import choose_encoder
    from askgpt.vision.pipeline import ImageMode, OcrMode, parse_mode

    parse_mode(opts.ocr, OcrMode, "--ocr")
    if opts.image_mode is not None:
        parse_mode(opts.image_mode, ImageMode, "--image-mode")
    if opts.encoder is not None:
        choose_encoder(settings.paths.data_dir, opts.encoder)


def schema_of(opts: AskOptions) -> dict | None:
    if opts.schema is not None:
        return load_schema(opts.schema)
    return dict(ANY_OBJECT) if opts.json_object else None


class Session:
    """A model (loaded on first use, kept for every later question) and the user's settings."""

    def __init__(self, settings: Settings, load: LoadOptions = LoadOptions(), *,
                 engine_factory: EngineFactory | None = None, notifier: Notifier | None = None,
                 native_log: Callable[[str], None] | None = None, ref: ModelRef | None = None,
                 config: EngineConfig | None = None) -> None:
        """``load`` names the model and how to load it, each option checked now, before
        anything is read or loaded; ``ref`` and ``config`` give them already resolved."""
        if load.ctx is not None:
            context_size(load.ctx)
        self.settings = settings
        self.options = load
        self.notifier: Notifier = notifier or Quiet()
        kv = check_kv_type(load.kv_type or settings.defaults.kv_type)
        self.ref = ref or resolve_ref(settings, load.model, load.endpoint)
        if load.mmproj:
            find_mmproj(self.ref, load.mmproj, local=is_local(self.ref))  # a missing file fails now, image or not
        self.engine_config = config or engine_config(
            settings, self.ref, ctx=load.ctx, threads=load.threads, batch=load.batch, gpu_layers=load.gpu_layers,
            kv_type=kv, native_log=native_log, prefix_cache=load.prefix_cache)
        self._factory = engine_factory or load_engine
        self._engine: Engine | None = None
        self.load_seconds = 0.0

    @property
    def engine(self) -> Engine:
        """The loaded model (loaded now, on first use, under a "Loading" status)."""
        if self._engine is None:
            started = time.perf_counter()
            with self.notifier.status(f"Loading {self.ref.name}…"):
                self._engine = self._factory(self.ref, self.engine_config)
            self.load_seconds = time.perf_counter() - started
        return self._engine

    def switch(self, model: str) -> None:
        """Another model for the questions that follow (chat's /model): loaded now, and the
        old one closed only once the new one has loaded."""
        ref = model_ref(self.settings, model, self.options.endpoint)
        config = engine_config(self.settings, ref, ctx=self.options.ctx)
        with self.notifier.status(f"Loading {ref.name}…"):
            engine = self._factory(ref, config)
        self.close()
        self.ref, self.engine_config, self._engine = ref, config, engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def respond(self, request: Request, config: GenerationConfig, long_context: LongContextConfig | None = None,
                *, progress: Progress | None = None) -> Response:
        """Answer a built `Request`; documents longer than the model reads well go through
        the long-document strategies."""
        long_context = long_context or long_context_config(self.settings)
        context = LongContext(self.engine, long_context, progress=progress,
                              notify=self.notifier.warn)
        answer, report = context.answer(request, config)
        return Response(answer, report=report)

    def choose(self, request: Request, labels: Sequence[str], *, calibrate: bool = False,
               config: GenerationConfig | None = None) -> Response:
        """Answer a built `Request` with one of ``labels``: by the labels' log-probabilities,
        or for a served model by a grammar (`Response.note` says so)."""
        return Response(label_answer(self.engine, request, labels, config, calibrate=calibrate))

    def image_blocks(self, images: Sequence[LoadedImage], vision: VisionConfig | None = None, *,
                     mmproj: str | None = None, question: str | None = None,
                     ) -> tuple[tuple[ImageBlock, ...], list[ImageReport]]:
        """Images as this model gets them: through its own vision projector (``mmproj``,
        else the one registered with it or beside it), else the chosen image encoder."""
        from askgpt.runtime.engine.guard import ensure_projector_loads_safely
        from askgpt.vision.pipeline import ImagePipeline, VisionConfig, target_model

        engine = self.engine
        config = vision or VisionConfig(encoder=self.settings.defaults.encoder)
        projector = find_mmproj(self.ref, mmproj, local=is_local(self.ref))
        cache_dir = self.settings.paths.cache_dir
        if projector is not None and is_local(self.ref):
            # mtmd reads the projector in this process: its first use is tried in a child first.
            ensure_projector_loads_safely(projector, self.ref.path, cache_dir)
        target = target_model(engine, self.ref.path, projector, threads=config.threads)
        pipeline = ImagePipeline(config, cache_dir, notify=self.notifier.warn, data_dir=self.settings.paths.data_dir)
        blocks, reports = pipeline.encode(images, target, question=question)
        return tuple(blocks), reports

    def question(self, opts: AskOptions, *, stdin: BinaryIO | None = None, stdin_is_terminal: bool = True,
                 ) -> Question:
        """One question, read and checked, its images encoded and its earlier turns replayed:
        ready to be shown (`Question.prompt_text`) or answered (`Question.answer`). Close it."""
        return Question.build(self, opts, stdin if stdin is not None else io.BytesIO(), stdin_is_terminal)


def _template(session: Session, opts: AskOptions) -> Template | None:
    return TemplateStore(session.settings.paths.templates_dir).get(opts.template) if opts.template else None


def _icl(opts: AskOptions, template: Template | None) -> IclOptions:
    icl = IclOptions.of(labels=opts.labels, calibrate=opts.calibrate, shots=opts.shots, select=opts.select,
                        seed=opts.seed)
    if template is not None:
        icl = icl.over(template.labels, template.shots, template.select)
    icl.check()
    if icl.labels is not None and (opts.json_object or opts.schema is not None or opts.extract):
        raise UsageError("--labels answers with a label; it does not go with --json, --schema or -x")
    return icl


class Question:
    """One ask, prepared by a `Session`: what `askgpt ask` renders and `Assistant.ask` returns."""

    def __init__(self, session: Session, opts: AskOptions, inputs: Inputs, plan: IclPlan, strategy: Strategy,
                 retrieval: Retrieval | None = None) -> None:
        self.session, self.opts, self.plan = session, opts, plan
        self.cite = citing(opts.cite, session.settings)
        self._inputs = inputs
        notifier = session.notifier
        self.log = ConversationLogger.for_ask(opts, session.settings, notifier, plan)
        request = replace(inputs.request, history=self.log.turns())
        self.vision = VisionStep(opts, session, inputs.stdin_image) if opts.images else None
        self.config = generation_config(session.settings, max_tokens=opts.max_tokens, temperature=opts.temperature,
                                        seed=opts.seed, lookup=opts.lookup)
        self.schema = schema_of(opts)
        if self.schema is not None:
            request, self.config = constrain(request, self.config, self.schema)
        self.long_context = replace(long_context_config(session.settings, retrieval), strategy=strategy,
                                    read_tokens=opts.read_tokens)
        engine = session.engine
        info = engine.info
        if request.history:
            request, dropped = fit_history(engine, request)
            if dropped:
                notifier.warn(f"left out the {dropped} oldest turn(s) of the conversation to fit the context")
        if info.n_ctx > info.n_ctx_train > 0:
            notifier.warn(f"--ctx {info.n_ctx} is past the {info.n_ctx_train} tokens {session.ref.name} was "
                          "trained on; answers may degrade")
        if self.vision is not None:
            request = replace(request, images=self.vision.blocks(request.instruction))
        self.request = request
        self.response: Response | None = None

    @classmethod
    def build(cls, session: Session, opts: AskOptions, stdin: BinaryIO, stdin_is_terminal: bool) -> Question:
        # Every option is checked before anything is read or loaded, used or not.
        settings = session.settings
        strategy = check_strategy(opts.strategy)
        retrieval = check_retrieval(opts.retrieval, settings)
        if not opts.images:
            check_vision_options(opts, settings)
        template = _template(session, opts)
        icl = _icl(opts, template)
        words = opts.prompt_words
        if template is not None:
            words, template = template_words(template, words)
        inputs = collect_inputs(
            prompt_words=words, files=opts.files, stdin=stdin, stdin_is_terminal=stdin_is_terminal,
            system=system_prompt(settings, opts.system), example_args=opts.examples,
            examples_file=opts.examples_file, image_args=opts.images)
        try:
            request = inputs.request
            if opts.example_values:
                request = replace(request, examples=(*request.examples, *opts.example_values))
            if template is not None:
                request = apply_template(template, request, system_given=opts.system is not None)
            plan = plan_request(request, icl)
            if plan.labels_from_examples and plan.labels is not None:
                session.notifier.warn(f"labels from the examples: {', '.join(plan.labels)}")
            return cls(session, opts, replace(inputs, request=plan.request), plan, strategy, retrieval)
        except BaseException:
            inputs.cleanup()
            raise

    def prompt_text(self) -> str:
        """--show-prompt: the prompt exactly as the model would get it, control tokens and all
        (documents longer than --read-tokens as the strategy would cut them)."""
        quiet = NoGeneration(self.session.engine)
        context = LongContext(quiet, self.long_context)  # type: ignore[arg-type]
        _, report = context.answer(self.request, self.config)  # builds and checks the prompt; generates nothing
        if report is not None and report.strategy is not Strategy.STUFF:
            self.session.notifier.warn(report.line())
        final = context.last_request or self.request
        return shown(quiet, prepare(quiet, final, self.config))  # type: ignore[arg-type]

    def answer(self) -> Response:
        """The answer, streamed when read; the exchange is logged once it has ended (also when
        the reader stops early, as Ctrl-C or a closed pipe do)."""
        session, labels = self.session, self.plan.labels
        if labels is not None:
            # The whole request is scored (no long-document strategy): a label needs the input itself.
            response = session.choose(self.request, labels, calibrate=self.plan.calibrate, config=self.config)
        else:
            with session.notifier.progress() as progress:
                response = session.respond(self.request, self.config, self.long_context, progress=progress)
        report = response.report
        if report is not None and report.strategy is not Strategy.STUFF:
            session.notifier.warn(report.line())
        if response.note:
            session.notifier.warn(response.note)
        attachments = self.vision.attachments() if self.vision is not None else ()
        response = Response(response.answer, report=report, cite=self.cite,
                            on_done=lambda answer: self._done(answer, attachments))
        self.response = response
        return response

    def _done(self, answer: Answer, attachments: tuple[Attachment, ...]) -> None:
        self.log.record(self.session.ref, self.request, answer, self.config, attachments)
        if image_urls_refused(self.session.engine):  # a served model that takes no images
            self.session.notifier.warn("the server did not take the images themselves; the model got what "
                                       "askgpt's encoders found in them")

    def close(self) -> None:
        self._inputs.cleanup()


class NoGeneration:
    """The engine for --show-prompt: everything but generating, which would be a model run."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def generate(self, prompt: object, sampling: object) -> Iterator[int]:
        raise UsageError("with this strategy the prompt is made of the model's own notes on each part of "
                         "the documents, so --show-prompt cannot show it without running the model",
                         hint="use --strategy retrieve, map-reduce or stuff, or a larger --read-tokens")


class ConversationLogger:
    """The conversation log for one ask: earlier turns in (-c/--cid), this exchange out.
    The log never stops an answer: a failure to read or write it is a warning."""

    def __init__(self, settings: Settings, notifier: Notifier, *, log: bool = True, continue_last: bool = False,
                 conversation_id: str | None = None, attached: Sequence[str] = (), plan: IclPlan | None = None,
                 ) -> None:
        self._log = ConversationLog(settings.paths.log_file)
        self._plan = plan
        self._notifier = notifier
        self._write = log and settings.defaults.log
        self._continue = continue_last or conversation_id is not None
        self._asked_id = conversation_id
        # What this ask attaches again needs no warning that it is not replayed.
        self._attached = {*attached, *(Path(g).name for g in attached)}
        self.id = new_conversation_id()

    @classmethod
    def for_ask(cls, opts: AskOptions, settings: Settings, notifier: Notifier, plan: IclPlan) -> ConversationLogger:
        return cls(settings, notifier, log=opts.log, continue_last=opts.continue_last,
                   conversation_id=opts.conversation_id, attached=(*opts.files, *opts.images), plan=plan)

    def turns(self) -> tuple[Turn, ...]:
        if not self._continue:
            return ()
        try:
            cid = self._asked_id or self._log.latest_conversation()
            if cid is None:
                self._notifier.warn("no earlier conversation in the log: starting a new one")
                return ()
            exchanges = self._log.conversation(cid)
        except LogError as exc:
            self._notifier.warn(f"{exc.message}; answering without the earlier turns")
            return ()
        if not exchanges:
            raise InputNotFoundError(f"no conversation {cid!r} in the log", hint="askgpt logs lists them")
        self.id = cid
        left = [name for name in not_replayed(exchanges) if name not in self._attached]
        if left:
            self._notifier.warn(f"the earlier turns' attachments are not sent again (the log keeps their names, "
                                f"not their contents): {', '.join(left)}; give them again (-f, -i) to ask about them")
        return turns_of(exchanges)

    def record_turn(self, ref: ModelRef, request: Request, answer: Answer, config: GenerationConfig) -> None:
        """One turn of `askgpt chat`."""
        self._record(ref, request, answer, {"temperature": config.sampling.temperature, "chat": True}, (), "turn")

    def record(self, ref: ModelRef, request: Request, answer: Answer, config: GenerationConfig,
               images: tuple[Attachment, ...] = ()) -> None:
        options: dict[str, object] = {"temperature": config.sampling.temperature, "max_tokens": config.max_tokens,
                                      "seed": config.sampling.seed, "lookup_tokens": config.sampling.lookup_tokens}
        if self._continue:  # how many earlier turns the model got (`askgpt logs show` lists them)
            options["replayed_turns"] = len(request.history)
        if self._plan is not None and self._plan.labels is not None:
            options["labels"] = list(self._plan.labels)
            options["calibrate"] = self._plan.calibrate
        if self._plan is not None and self._plan.shots is not None:
            options.update(shots=self._plan.shots, select=self._plan.select, example_seed=self._plan.seed)
        self._record(ref, request, answer, options, images, "exchange")

    def _record(self, ref: ModelRef, request: Request, answer: Answer, options: dict[str, object],
                images: tuple[Attachment, ...], what: str) -> None:
        if not self._write or answer.stats is None:  # answer.stats None: never started, nothing answered
            return
        try:
            self._log.record(exchange_of(self.id, ref, request, answer, options=options, images=images))
        except (LogError, OSError) as exc:
            self._notifier.warn(f"{getattr(exc, 'message', exc)}; this {what} was not logged")

    def new_conversation(self) -> None:
        self.id = new_conversation_id()


class VisionStep:
    """Images for one ask: loaded and checked before the model loads (a bad file fails
    fast), encoded once the model is known (the projector depends on it)."""

    def __init__(self, opts: AskOptions, session: Session, stdin_image: bytes | None) -> None:
        # Imported here: numpy, Pillow and onnxruntime load only when an image is given.
        from askgpt.vision.pipeline import ImageMode, OcrMode, VisionConfig, load_images, parse_mode

        self._config = VisionConfig(
            ocr=parse_mode(opts.ocr, OcrMode, "--ocr"),  # type: ignore[arg-type]
            mode=parse_mode(opts.image_mode, ImageMode, "--image-mode") if opts.image_mode  # type: ignore[arg-type]
            else VisionConfig().mode,
            encoder=opts.encoder or session.settings.defaults.encoder,
            share_location=opts.share_location,
        )
        self._mmproj = opts.mmproj
        self._session = session
        self._images = load_images(opts.images, stdin_image)
        self.reports: list[ImageReport] = []

    def blocks(self, question: str | None = None) -> tuple[ImageBlock, ...]:
        with self._session.notifier.status("Looking at the images…"):
            blocks, self.reports = self._session.image_blocks(self._images, self._config, mmproj=self._mmproj,
                                                              question=question)
        return blocks

    def attachments(self) -> tuple[Attachment, ...]:
        return tuple(Attachment(im.source, _size(im.source), im.sha256) for im in self._images)

    def stats_lines(self) -> list[str]:
        return [f"image {r.source}: encode {r.encode_seconds:.3f}s | ocr {r.ocr_seconds:.3f}s | "
                f"{r.rows} embedding rows" for r in self.reports]


def _size(source: str) -> int:
    try:
        return os.stat(source).st_size
    except OSError:  # stdin
        return 0


def open_chat(session: Session, opts: ChatOptions) -> ChatSession:
    """A conversation on ``session``'s model with ``opts``' system prompt, examples, template
    and output constraint, every option checked before the model loads."""
    settings = session.settings
    template = TemplateStore(settings.paths.templates_dir).get(opts.template) if opts.template else None
    schema = schema_of(AskOptions(schema=opts.schema, json_object=opts.json_object))
    config = generation_config(settings, max_tokens=opts.max_tokens, temperature=opts.temperature, seed=opts.seed)
    long_context = long_context_config(settings, opts.retrieval)
    examples = [*(template.examples if template is not None else ()), *examples_of(opts.examples, opts.examples_file)]
    system = system_prompt(settings, opts.system)
    if template is not None and opts.system is None and template.system is not None:
        system = template.system
    chat = ChatSession(session.engine, config, system=system, examples=examples, schema=schema,
                       instruction=template.instruction if template is not None else None,
                       long_context=long_context)
    return chat
